//! Connection tracking and NAT sessions, owned by one worker.
//!
//! A session holds a flow as the inside (a VM) sends it and what its
//! source becomes on the public side. Both directions are indexed: the
//! inside key, and the reply key as replies arrive at the public address.
//! Public ports come from endpoint-independent mappings (the same inside
//! endpoint keeps its public port whatever it talks to), allocated from a
//! per-(address, protocol) pool with port preservation, and freed with the
//! mapping's last session.
//!
//! Expiry is a timing wheel of one-second slots. Traffic only moves a
//! session's `expires` forward; the session stays in its slot and is
//! re-queued when the slot comes round (no per-packet list work). When a
//! state change shortens the timeout (FIN, RST), the session moves.
//! Sweeping is bounded per call, so a mass expiry never stalls a batch.
//!
//! Nothing here allocates once the tables are reserved, except the first
//! use of a public address and protocol (its port pool).
mod hugepages;
mod index;
mod key;
mod ports;
mod saved;
mod shares;
mod state;

use crate::table::TenantId;
pub use key::{FlowKey, ICMP, PUBLIC, TCP, UDP};
pub use ports::{Mapped, PortPool};
pub use saved::{Resumed, Saved, SessionFile, Writer};
use shares::Shares;
pub use shares::{ShareLimits, DEFAULT_NEW_PER_SECOND};
pub use state::{initial, next, State, Timeouts, ACK, FIN, RST, SYN};

use allocator_api2::vec::Vec as HugeVec;
use hashbrown::{DefaultHashBuilder, HashMap};
use hugepages::HugePages;
use index::FlowIndex;
use std::mem;
use std::net::Ipv4Addr;

/// Which way a packet goes relative to the session's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the inside, as the session was opened.
    Orig,
    /// The answer, arriving on the public side.
    Reply,
}

pub type SessionId = u32;
const NIL: u32 = u32::MAX;
/// Wheel size in one-second slots; longer timeouts go round again.
const SLOTS: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Sessions this worker may hold; beyond it new flows are dropped and
    /// counted, existing ones keep working.
    pub max_sessions: u32,
    pub timeouts: Timeouts,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_sessions: 65_536,
            timeouts: Timeouts::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The flow as the inside sends it.
    pub inside: FlowKey,
    /// The inside source's address and port on the public side (for ICMP
    /// echo, the identifier).
    pub nat_ip: Ipv4Addr,
    pub nat_port: u16,
    pub state: State,
    live: bool,
    /// Opened by a packet from the public side (static NAT, port
    /// forwarding): its first packet went in the Reply direction.
    pub inbound: bool,
    /// Routed inside the tenant without translation (a flow that tier
    /// ACLs let through): its reply comes back in the tenant's zone.
    pub routed: bool,
    /// To one of our own public addresses: its packets come back in
    /// through reverse NAT (decided when it opened, as Linux's conntrack
    /// keeps a connection's NAT decision).
    pub hairpin: bool,
    /// Its public port came from a source-NAT pool (`setup_snat`).
    allocated: bool,
    /// The tables generation under which the full path last sent this
    /// session's inside packets out of the uplink (0: never); while it
    /// holds, the NAT shortcut may repeat that (`pipeline::nat::shortcut`).
    pub shortcut_gen: u32,
    /// Which directions a worker offloaded to the fast path
    /// (`pipeline::offer`): bit 0 Orig, bit 1 Reply, under the tables in
    /// force; bits 2 and 3: the direction was offered once under them,
    /// and is offloaded at its next offer; bits 4 and 5: offloaded under
    /// earlier tables (its entry is inert, but is withdrawn when the
    /// session goes). (Their ports follow from the tables; one byte keeps
    /// a session in budget.)
    pub offloaded: u8,
    /// Second (of the worker's clock) at which it dies without traffic.
    pub expires: u32,
    /// The wheel slot it is queued in, and its neighbours there.
    slot: u16,
    prev: u32,
    next: u32,
}

/// `Session::offloaded`'s bits of entries, current or under earlier tables.
const OFFLOADED_EVER: u8 = 0b11_0011;

impl Dir {
    /// Its bit in `Session::offloaded`.
    pub fn bit(self) -> u8 {
        match self {
            Dir::Orig => 1,
            Dir::Reply => 2,
        }
    }
}

impl Session {
    /// Whether the fast path forwards either of its directions.
    #[inline]
    pub fn is_offloaded(&self) -> bool {
        self.offloaded & OFFLOADED_EVER != 0
    }

    /// Whether direction `dir` has an entry in the fast path (current
    /// or inert).
    #[inline]
    pub fn has_entry(&self, dir: Dir) -> bool {
        self.offloaded & (dir.bit() | dir.bit() << 4) != 0
    }

    /// The key of the reply direction, as it arrives on the public side
    /// (or, routed, in the tenant's zone).
    pub fn reply_key(&self) -> FlowKey {
        let inside = &self.inside;
        FlowKey {
            zone: if self.routed { inside.zone } else { PUBLIC },
            proto: inside.proto,
            src: inside.dst,
            dst: self.nat_ip,
            sport: if inside.proto == ICMP {
                self.nat_port
            } else {
                inside.dport
            },
            dport: self.nat_port,
        }
    }
}

/// Packets being fragmented at once, per worker (a bounded table:
/// beyond it later fragments are dropped and counted).
pub const MAX_FRAGMENTED: usize = 4096;
/// Seconds the later fragments of a packet may trail its first.
const FRAGMENT_TIMEOUT: u32 = 2;

/// Identifies the fragments of one IPv4 packet as they arrive on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub zone: TenantId,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub id: u16,
}

/// Which sessions a `sessions` request selects; None matches anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub zone: Option<TenantId>,
    /// The inside source or destination, or the public address.
    pub address: Option<Ipv4Addr>,
    /// Any of the session's ports, inside or public.
    pub port: Option<u16>,
    pub proto: Option<u8>,
}

impl SessionFilter {
    pub fn matches(&self, s: &Session) -> bool {
        let i = &s.inside;
        self.zone.is_none_or(|z| z == i.zone)
            && self.proto.is_none_or(|p| p == i.proto)
            && self
                .address
                .is_none_or(|a| a == i.src || a == i.dst || a == s.nat_ip)
            && self
                .port
                .is_none_or(|p| p == i.sport || p == i.dport || p == s.nat_port)
    }
}

/// Why a new session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// `max_sessions` reached.
    Full,
    /// No free public port for this address and protocol.
    PortsExhausted,
    /// The tenant holds its share of sessions.
    TenantFull,
    /// The tenant opened its share of sessions this second.
    TenantRate,
}

/// Marks an index key as a mapping (inside endpoint -> public port)
/// rather than a flow: the protocol with its high bit set. Mappings are
/// endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1): the same inside
/// endpoint keeps its public port whatever it talks to.
const MAPPING: u8 = 0x80;

/// The index key of the mapping of `inside`'s source endpoint on `nat_ip`.
fn mapping_key(inside: &FlowKey, nat_ip: Ipv4Addr) -> FlowKey {
    FlowKey {
        zone: inside.zone,
        proto: inside.proto | MAPPING,
        src: inside.src,
        dst: nat_ip,
        sport: inside.sport,
        dport: 0,
    }
}

pub struct Conntrack {
    config: Config,
    sessions: HugeVec<Session, HugePages>,
    /// Free sessions, linked through `next`.
    free_head: u32,
    // Keyed by packet fields that a VM chooses, so a keyed hash
    // (foldhash, randomly seeded), not FxHash: no crafted collisions.
    /// One table for three kinds of entries, up to three per session:
    /// its inside key and its reply key -> session id << 1 | (1 for
    /// Reply), and its endpoint's mapping -> the public port.
    index: FlowIndex,
    /// Per (public address, protocol): which ports are taken, and by how
    /// many sessions each.
    pools: HashMap<(Ipv4Addr, u8), PortPool>,
    /// Fragments whose first fragment (the one with ports) was seen:
    /// (zone, source, destination, protocol, IP id) -> (session, expiry).
    frags: HashMap<FragKey, (SessionId, u32), DefaultHashBuilder>,
    /// Head session of each one-second slot.
    wheel: Vec<u32>,
    /// Every slot for a second before this one has been swept.
    swept: u32,
    live: u32,
    /// Each tenant's share of the sessions and fragments.
    shares: Shares,
    /// Where live sessions are saved to outlive the process, if anywhere.
    saved: Option<SessionFile>,
    /// Offloaded sessions that closed or went since `take_withdrawn`:
    /// their flows must leave the fast path.
    withdrawn: Vec<Session>,
}

/// Withdrawals room reserved up front: more than a batch's closes and an
/// expiry round's (a tenant's flush may grow it, between batches).
const WITHDRAWN_ROOM: usize = 256;

/// Why a saved session was not restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreError {
    /// No room, or the tenant's share is full.
    Full,
    /// Its flow is already tracked (a record saved twice).
    Duplicate,
    /// Its public port is not free in `ports`, or its endpoint is mapped
    /// to another port.
    PortTaken,
}

impl Conntrack {
    /// Reserves room for `config.max_sessions` up front, so setting up a
    /// session never grows a table.
    pub fn new(config: Config) -> Conntrack {
        let max = config.max_sessions as usize;
        Conntrack {
            config,
            sessions: HugeVec::with_capacity_in(max, HugePages),
            free_head: NIL,
            index: FlowIndex::with_capacity(3 * max),
            pools: HashMap::new(),
            frags: HashMap::with_capacity(MAX_FRAGMENTED),
            wheel: vec![NIL; SLOTS as usize],
            swept: 0,
            live: 0,
            shares: Shares::new(config.max_sessions, MAX_FRAGMENTED as u32),
            saved: None,
            withdrawn: Vec::with_capacity(WITHDRAWN_ROOM),
        }
    }

    /// Saves every session from now on in `file` (each live one at once).
    pub fn save_to(&mut self, mut file: SessionFile) {
        for (id, s) in (0..).zip(self.sessions.iter()) {
            match s.live {
                true => file.write(id, s),
                false => file.clear(id),
            }
        }
        self.saved = Some(file);
    }

    /// The file sessions are saved in, if any.
    pub fn session_file(&mut self) -> Option<&mut SessionFile> {
        self.saved.as_mut()
    }

    /// Tracks `s` again as it was saved, with its state's full timeout
    /// from `now`. An allocated public port is taken again from `ports`
    /// (this worker's block of its address's range); the endpoint's
    /// mapping comes back with it.
    pub fn restore(
        &mut self,
        s: &Saved,
        ports: Option<(u16, u16)>,
        now: u32,
    ) -> Result<SessionId, RestoreError> {
        let mut session = self.session_of(s.inside, (s.nat_ip, s.nat_port), s.state, now);
        (session.inbound, session.routed) = (s.inbound, s.routed);
        session.hairpin = s.hairpin;
        if self.index.contains_key(&s.inside) || self.index.contains_key(&session.reply_key()) {
            return Err(RestoreError::Duplicate);
        }
        if self.live >= self.config.max_sessions {
            return Err(RestoreError::Full);
        }
        if s.allocated {
            self.take_port(&s.inside, s.nat_ip, s.nat_port, ports)?;
            session.allocated = true;
        }
        if self.shares.admit(s.inside.zone, now).is_err() {
            self.release_mapping(&session);
            return Err(RestoreError::Full);
        }
        Ok(self.insert(session))
    }

    /// Holds `port` of `nat_ip` for `inside`'s endpoint again: its
    /// mapping, if it has one, names that port; if not, the port is free
    /// in `ports` and becomes its mapping.
    fn take_port(
        &mut self,
        inside: &FlowKey,
        nat_ip: Ipv4Addr,
        port: u16,
        ports: Option<(u16, u16)>,
    ) -> Result<(), RestoreError> {
        let (first, last) = ports.ok_or(RestoreError::PortTaken)?;
        if !(first..=last).contains(&port) {
            return Err(RestoreError::PortTaken);
        }
        let pool = self
            .pools
            .entry((nat_ip, inside.proto))
            .or_insert_with(|| PortPool::new(first, last));
        let mapping = mapping_key(inside, nat_ip);
        match self.index.get(&mapping) {
            Some(mapped) if mapped == u32::from(port) => {}
            Some(_) => return Err(RestoreError::PortTaken),
            None => {
                if pool.allocate(port) != Some(port) {
                    return Err(RestoreError::PortTaken);
                }
                self.index.insert(mapping, u32::from(port));
            }
        }
        pool.hold(port);
        Ok(())
    }

    /// Undoes `take_port` for a session that did not open.
    fn release_mapping(&mut self, s: &Session) {
        if !s.allocated {
            return;
        }
        if let Some(pool) = self.pools.get_mut(&(s.nat_ip, s.inside.proto)) {
            if pool.drop_hold(s.nat_port) {
                self.index.remove(&mapping_key(&s.inside, s.nat_ip));
            }
        }
    }

    /// Each tenant's limits, by tenant id (ids beyond: the defaults).
    pub fn set_share_limits(&mut self, limits: Vec<ShareLimits>) {
        self.shares.set_limits(limits);
    }

    /// The live sessions of tenant `zone`.
    pub fn sessions_of(&self, zone: TenantId) -> u32 {
        self.shares.sessions_of(zone)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.live as usize
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes reserved per session at `max_sessions`: the session and its
    /// share of the index.
    pub fn bytes_per_session(&self) -> usize {
        let max = self.config.max_sessions.max(1) as usize;
        let index = self.index.bytes();
        (index + max * std::mem::size_of::<Session>()) / max
    }

    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(SessionId, Dir)> {
        self.lookup_from(key, self.index.home(key))
    }

    /// Where `key`'s lookup starts; prefetch it with `prefetch_home`, and
    /// look up with `lookup_from`, so a batch's lookups overlap.
    #[inline]
    pub fn home(&self, key: &FlowKey) -> usize {
        self.index.home(key)
    }

    #[inline]
    pub fn prefetch_home(&self, home: usize) {
        self.index.prefetch(home)
    }

    /// Starts loading what `setup_snat` for `inside` to `nat_ip` reads
    /// first: the inside endpoint's mapping (the reply key's slot depends
    /// on the port it allocates; prefetching it as if preserved measured
    /// no better).
    #[inline]
    pub fn prefetch_mapping(&self, inside: &FlowKey, nat_ip: Ipv4Addr) {
        self.index
            .prefetch(self.index.home(&mapping_key(inside, nat_ip)))
    }

    #[inline]
    pub fn lookup_from(&self, key: &FlowKey, home: usize) -> Option<(SessionId, Dir)> {
        let v = self.index.get_from(key, home)?;
        let dir = if v & 1 == 0 { Dir::Orig } else { Dir::Reply };
        Some((v >> 1, dir))
    }

    /// Session `id`; `None` only for an id no session ever had.
    #[inline]
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(id as usize)
    }

    #[inline]
    fn session_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.sessions.get_mut(id as usize)
    }

    /// Starts loading session `id` into the cache, ahead of its use.
    #[inline]
    pub fn prefetch(&self, id: SessionId) {
        #[cfg(target_arch = "x86_64")]
        if let Some(s) = self.sessions.get(id as usize) {
            // SAFETY: prefetch hints on a valid session's first and last
            // bytes; they read nothing. A 48-byte session crosses a cache
            // line every other time: both lines, or the packet waits on
            // the second.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                let first = (s as *const Session).cast::<i8>();
                _mm_prefetch::<_MM_HINT_T0>(first);
                _mm_prefetch::<_MM_HINT_T0>(first.add(std::mem::size_of::<Session>() - 1));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = id;
    }

    /// Live sessions (for dumps and tests).
    pub fn iter(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().filter(|s| s.live)
    }

    /// Opens a source-NAT session for `inside` (whose first packet put it
    /// in `state`), translating its source to `nat_ip` and a port of
    /// `ports`.
    pub fn setup_snat(
        &mut self,
        inside: FlowKey,
        nat_ip: Ipv4Addr,
        ports: (u16, u16),
        state: State,
        now: u32,
    ) -> Result<SessionId, SetupError> {
        self.admit(inside.zone, now)?;
        let pool = self
            .pools
            .entry((nat_ip, inside.proto))
            .or_insert_with(|| PortPool::new(ports.0, ports.1));
        let mapping = mapping_key(&inside, nat_ip);
        let port = match self.index.get(&mapping) {
            Some(port) => port as u16,
            None => {
                let Some(port) = pool.allocate(inside.sport) else {
                    self.shares.closed(inside.zone);
                    return Err(SetupError::PortsExhausted);
                };
                self.index.insert(mapping, u32::from(port));
                port
            }
        };
        pool.hold(port);
        // Room and the tenant's share were checked above, before a port
        // was taken.
        let mut session = self.session_of(inside, (nat_ip, port), state, now);
        session.allocated = true;
        Ok(self.insert(session))
    }

    /// Remembers session `id`'s mapping and the address it sends to, for
    /// filtering that is not by address and port (`mapped`).
    pub fn note_endpoint(&mut self, id: SessionId) {
        let Some(&s) = self.session(id).filter(|s| s.allocated) else {
            return;
        };
        if let Some(pool) = self.pools.get_mut(&(s.nat_ip, s.inside.proto)) {
            let inside = (s.inside.src, s.inside.sport);
            pool.note_endpoint(s.nat_port, inside, s.inside.dst);
        }
    }

    /// The remembered mapping on public `port` of `nat_ip` for `proto`.
    pub fn mapped(&self, nat_ip: Ipv4Addr, proto: u8, port: u16) -> Option<Mapped> {
        self.pools.get(&(nat_ip, proto))?.mapped(port).copied()
    }

    /// Opens a session that a packet from the internet starts on an
    /// existing mapping (`inside`'s endpoint already holds `nat_port`),
    /// as endpoint-independent or address-dependent filtering lets it.
    pub fn setup_snat_inbound(
        &mut self,
        inside: FlowKey,
        (nat_ip, nat_port): (Ipv4Addr, u16),
        state: State,
        now: u32,
    ) -> Result<SessionId, SetupError> {
        let mapping = mapping_key(&inside, nat_ip);
        if self.index.get(&mapping) != Some(u32::from(nat_port)) {
            return Err(SetupError::PortsExhausted);
        }
        self.admit(inside.zone, now)?;
        if let Some(pool) = self.pools.get_mut(&(nat_ip, inside.proto)) {
            pool.hold(nat_port);
        }
        let mut session = self.session_of(inside, (nat_ip, nat_port), state, now);
        session.allocated = true;
        session.inbound = true;
        Ok(self.insert(session))
    }

    /// Opens a session whose public side is fixed by a rule, not
    /// allocated: 1:1 static NAT (`nat_port` = the inside port) or a
    /// port forward. `inbound`: opened by a packet from the public side.
    /// The rules own their public ports (validation keeps them out of
    /// source-NAT ranges), so no mapping is taken.
    pub fn setup_fixed(
        &mut self,
        inside: FlowKey,
        nat_ip: Ipv4Addr,
        nat_port: u16,
        state: State,
        inbound: bool,
        now: u32,
    ) -> Result<SessionId, SetupError> {
        self.open(inside, (nat_ip, nat_port), state, (inbound, false), now)
    }

    /// A session with no port of its own to allocate; `(inbound, routed)`
    /// as in `Session`.
    fn open(
        &mut self,
        inside: FlowKey,
        (nat_ip, nat_port): (Ipv4Addr, u16),
        state: State,
        (inbound, routed): (bool, bool),
        now: u32,
    ) -> Result<SessionId, SetupError> {
        self.admit(inside.zone, now)?;
        Ok(self.open_admitted(inside, (nat_ip, nat_port), state, (inbound, routed), now))
    }

    /// Room for one more session of `zone`: in the table, and in the
    /// tenant's share (which counts it).
    fn admit(&mut self, zone: TenantId, now: u32) -> Result<(), SetupError> {
        if self.live >= self.config.max_sessions {
            return Err(SetupError::Full);
        }
        self.shares.admit(zone, now)
    }

    fn open_admitted(
        &mut self,
        inside: FlowKey,
        nat: (Ipv4Addr, u16),
        state: State,
        (inbound, routed): (bool, bool),
        now: u32,
    ) -> SessionId {
        let mut session = self.session_of(inside, nat, state, now);
        (session.inbound, session.routed) = (inbound, routed);
        self.insert(session)
    }

    /// A new live session of `inside` translated to `nat`, outbound,
    /// untracked by anything yet.
    fn session_of(
        &self,
        inside: FlowKey,
        (nat_ip, nat_port): (Ipv4Addr, u16),
        state: State,
        now: u32,
    ) -> Session {
        Session {
            inside,
            nat_ip,
            nat_port,
            state,
            live: true,
            inbound: false,
            routed: false,
            hairpin: false,
            allocated: false,
            shortcut_gen: 0,
            offloaded: 0,
            expires: now.saturating_add(self.config.timeouts.of_flow(state, &inside)),
            slot: 0,
            prev: NIL,
            next: NIL,
        }
    }

    /// Opens a session for a flow routed inside a tenant untranslated
    /// (between tiers with ACLs), so its later packets and replies pass
    /// without the rules.
    pub fn setup_routed(
        &mut self,
        inside: FlowKey,
        state: State,
        now: u32,
    ) -> Result<SessionId, SetupError> {
        self.open(
            inside,
            (inside.src, inside.sport),
            state,
            (false, true),
            now,
        )
    }

    fn insert(&mut self, session: Session) -> SessionId {
        // The free list's head, or (NIL, which no session has) a new one.
        let id = match self.sessions.get_mut(self.free_head as usize) {
            Some(free) => {
                let id = self.free_head;
                self.free_head = free.next;
                *free = session;
                id
            }
            None => {
                self.sessions.push(session);
                (self.sessions.len() - 1) as SessionId
            }
        };
        self.index.insert(session.inside, id << 1);
        self.index.insert(session.reply_key(), (id << 1) | 1);
        self.link(id);
        self.live += 1;
        if let Some(file) = &mut self.saved {
            file.write(id, &session);
        }
        id
    }

    /// Lets the NAT shortcut repeat session `id`'s way out while the
    /// tables are generation `generation`.
    #[inline]
    pub fn allow_shortcut(&mut self, id: SessionId, generation: u32) {
        if let Some(s) = self.session_mut(id) {
            s.shortcut_gen = generation;
        }
    }

    /// Marks session `id` as hairpinned (see `Session::hairpin`).
    pub fn mark_hairpin(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get_mut(id as usize) {
            s.hairpin = true;
            if let Some(file) = &mut self.saved {
                file.write(id, s);
            }
        }
    }

    /// Accounts a packet of session `id` going `dir`: the next state, and
    /// the timeout from now.
    #[inline]
    pub fn update(&mut self, id: SessionId, dir: Dir, tcp_flags: u8, now: u32) {
        let timeouts = &self.config.timeouts;
        let Some(s) = self.sessions.get_mut(id as usize) else {
            return;
        };
        let old_expires = s.expires;
        // The state machine's Orig is whoever sent the first packet.
        let dir = match (s.inbound, dir) {
            (false, dir) => dir,
            (true, Dir::Orig) => Dir::Reply,
            (true, Dir::Reply) => Dir::Orig,
        };
        let state = next(s.state, dir, tcp_flags);
        if state != s.state {
            s.state = state;
            if let Some(file) = &mut self.saved {
                file.write(id, s);
            }
            // Closing (FIN, RST): the workers see its packets again.
            if s.is_offloaded() && s.inside.proto == TCP && state != State::Established {
                self.withdrawn.push(*s);
                s.offloaded = 0;
            }
        }
        s.expires = now.saturating_add(timeouts.of_flow(s.state, &s.inside));
        // A longer life needs nothing (the sweep re-queues); a shorter one
        // must move to its earlier slot.
        if s.expires < old_expires && s.expires % SLOTS != old_expires % SLOTS {
            self.unlink(id);
            self.link(id);
        }
    }

    /// Remembers that the packet `frag` (whose first fragment belongs to
    /// session `id`) has more fragments to come. Refused (`Full`) if the
    /// table, or (`TenantFull`) the tenant's share of it, is full even
    /// after dropping expired entries.
    pub fn note_fragments(
        &mut self,
        frag: FragKey,
        id: SessionId,
        now: u32,
    ) -> Result<(), SetupError> {
        if self.frags.contains_key(&frag) {
            self.frags.insert(frag, (id, now + FRAGMENT_TIMEOUT));
            return Ok(());
        }
        let room = |ct: &mut Conntrack| {
            ct.frags.len() < MAX_FRAGMENTED && ct.shares.fragment_room(frag.zone)
        };
        if !room(self) {
            // Expired entries still count until swept: sweep, recount.
            self.frags.retain(|_, (_, expires)| *expires > now);
            self.shares
                .count_fragments(self.frags.keys().map(|k| k.zone));
            if self.frags.len() >= MAX_FRAGMENTED {
                return Err(SetupError::Full);
            }
            if !room(self) {
                return Err(SetupError::TenantFull);
            }
        }
        self.frags.insert(frag, (id, now + FRAGMENT_TIMEOUT));
        self.shares.fragment_added(frag.zone);
        Ok(())
    }

    /// The session of a later fragment, if its first was seen lately and
    /// the session still lives.
    pub fn fragment_session(&self, frag: &FragKey, now: u32) -> Option<SessionId> {
        match self.frags.get(frag) {
            Some(&(id, expires)) if expires > now && self.session(id).is_some_and(|s| s.live) => {
                Some(id)
            }
            _ => None,
        }
    }

    /// Sweeps the wheel up to `now`, removing at most `budget` expired
    /// sessions; returns how many it removed.
    pub fn expire(&mut self, now: u32, budget: usize) -> usize {
        self.expire_offloaded(now, budget, |_| None)
    }

    /// `expire`, where an offloaded session that is due lives on if the
    /// fast path forwarded it within its timeout: `idle_for` tells how
    /// many seconds ago it last did (None: never, or not known).
    pub fn expire_offloaded(
        &mut self,
        now: u32,
        budget: usize,
        mut idle_for: impl FnMut(&Session) -> Option<u32>,
    ) -> usize {
        let mut removed = 0;
        while self.swept <= now {
            let slot = (self.swept % SLOTS) as usize;
            let mut id = self
                .wheel
                .get_mut(slot)
                .map_or(NIL, |head| mem::replace(head, NIL));
            while let Some(&(mut s)) = self.session(id) {
                if s.expires <= now && s.is_offloaded() {
                    let timeout = self.config.timeouts.of_flow(s.state, &s.inside);
                    if let Some(idle) = idle_for(&s).filter(|&idle| idle < timeout) {
                        s.expires = now.saturating_sub(idle).saturating_add(timeout);
                        if let Some(live) = self.session_mut(id) {
                            live.expires = s.expires;
                        }
                    }
                }
                if s.expires <= now {
                    if removed == budget {
                        // Put the rest back; carry on next call.
                        self.put_back(slot, id);
                        return removed;
                    }
                    self.remove(id);
                    removed += 1;
                } else {
                    self.link(id);
                }
                id = s.next;
            }
            self.swept += 1;
        }
        removed
    }

    /// The live sessions `filter` selects: copies of the first `limit`,
    /// and how many there are. With `flush`, they are removed too (their
    /// flows' next packets are new flows). A scan of every session: for
    /// the control plane, between batches, never per packet.
    pub fn select(
        &mut self,
        filter: &SessionFilter,
        limit: usize,
        flush: bool,
    ) -> (Vec<Session>, usize) {
        let ids = self.live_ids(|s| filter.matches(s));
        let listed = ids
            .iter()
            .take(limit)
            .filter_map(|&id| self.session(id).copied())
            .collect();
        if flush {
            self.remove_all(&ids);
        }
        (listed, ids.len())
    }

    /// The ids of the live sessions `select` picks (a scan of them all).
    fn live_ids(&self, select: impl Fn(&Session) -> bool) -> Vec<SessionId> {
        (0..)
            .zip(self.sessions.iter())
            .filter(|(_, s)| s.live && select(s))
            .map(|(id, _)| id)
            .collect()
    }

    /// Removes sessions `ids` (live ones) from the wheel and the tables.
    fn remove_all(&mut self, ids: &[SessionId]) {
        for &id in ids {
            self.unlink(id);
            self.remove(id);
        }
    }

    /// Removes every session, NAT mapping and fragment of the tenants in
    /// `zones` (deleted tenants: their ids must hold nothing when they
    /// are given out again). A scan of every session, run by the worker
    /// when the tables change, never per packet. Returns how many
    /// sessions went.
    pub fn flush_zones(&mut self, zones: &[TenantId]) -> usize {
        if zones.is_empty() {
            return 0;
        }
        let ids = self.live_ids(|s| zones.contains(&s.inside.zone));
        self.remove_all(&ids);
        self.frags.retain(|key, _| !zones.contains(&key.zone));
        // Their fragment counts go with them (an id may be given again).
        self.shares
            .count_fragments(self.frags.keys().map(|k| k.zone));
        ids.len()
    }

    /// Notes that direction `dir` of session `id` is offloaded to the
    /// fast path, at its second offer. False if it was already (nothing
    /// to install again), or this was its first.
    pub fn offload(&mut self, id: SessionId, dir: Dir) -> bool {
        let Some(s) = self.session_mut(id) else {
            return false;
        };
        let offered = dir.bit() << 2;
        if s.offloaded & (dir.bit() | offered) == 0 {
            // A flow of one packet (a DNS query, a scan) costs no map
            // write: only its second packet this way offloads it.
            s.offloaded |= offered;
            return false;
        }
        let was = s.offloaded;
        s.offloaded |= dir.bit();
        s.offloaded != was
    }

    /// New tables are in force: every entry in the fast path was installed
    /// under older ones and applies no more (the steering program checks
    /// the generation), so each session's directions are offered again,
    /// and installed at their second packet under the new tables. A scan
    /// of every session, once per commit, never per packet.
    pub fn renew_offloads(&mut self) {
        for s in self
            .sessions
            .iter_mut()
            .filter(|s| s.live && s.offloaded != 0)
        {
            s.offloaded = (s.offloaded & 0b11) << 4 | (s.offloaded & 0b11_0000);
        }
    }

    /// The offloaded sessions that closed or went since the last call:
    /// their flows are to be taken out of the fast path.
    pub fn take_withdrawn(&mut self) -> std::vec::Drain<'_, Session> {
        self.withdrawn.drain(..)
    }

    fn remove(&mut self, id: SessionId) {
        let Some(&s) = self.session(id) else {
            return;
        };
        if s.is_offloaded() {
            self.withdrawn.push(s);
        }
        // Only its own entries (never another session's under the same key).
        self.index.remove_if(&s.inside, id << 1);
        self.index.remove_if(&s.reply_key(), (id << 1) | 1);
        let pool = match !s.allocated || !self.index.contains_key(&mapping_key(&s.inside, s.nat_ip))
        {
            true => None,
            false => self.pools.get_mut(&(s.nat_ip, s.inside.proto)),
        };
        if let Some(pool) = pool {
            // The last session of the mapping frees its port.
            if pool.drop_hold(s.nat_port) {
                self.index.remove(&mapping_key(&s.inside, s.nat_ip));
            }
        }
        self.shares.closed(s.inside.zone);
        if let Some(file) = &mut self.saved {
            file.clear(id);
        }
        let free_head = self.free_head;
        if let Some(s) = self.session_mut(id) {
            s.live = false;
            s.next = free_head;
        }
        self.free_head = id;
        self.live -= 1;
    }

    /// Puts session `id` at the head of the slot of its `expires`.
    fn link(&mut self, id: SessionId) {
        let Some(s) = self.session(id) else {
            return;
        };
        let slot = (s.expires % SLOTS) as usize;
        let Some(head) = self.wheel.get_mut(slot) else {
            return;
        };
        let next = mem::replace(head, id);
        if let Some(next) = self.session_mut(next) {
            next.prev = id;
        }
        if let Some(s) = self.session_mut(id) {
            s.slot = slot as u16;
            s.prev = NIL;
            s.next = next;
        }
    }

    /// Makes session `id` the head of wheel slot `slot` again, with what
    /// followed it.
    fn put_back(&mut self, slot: usize, id: SessionId) {
        if let Some(s) = self.session_mut(id) {
            s.prev = NIL;
        }
        if let Some(head) = self.wheel.get_mut(slot) {
            *head = id;
        }
    }

    /// Takes session `id` out of its slot's list.
    fn unlink(&mut self, id: SessionId) {
        let Some(&Session {
            prev, next, slot, ..
        }) = self.session(id)
        else {
            return;
        };
        match self.session_mut(prev) {
            Some(prev) => prev.next = next,
            // The head of its slot.
            None => {
                if let Some(head) = self.wheel.get_mut(usize::from(slot)) {
                    if *head == id {
                        *head = next;
                    }
                }
            }
        }
        if let Some(next) = self.session_mut(next) {
            next.prev = prev;
        }
    }
}
