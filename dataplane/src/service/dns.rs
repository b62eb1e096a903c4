//! DNS for each tenant on its gateway addresses (hickory-proto's wire
//! format). Authoritative for its VMs' names in its domain
//! (`NAME.TENANT.internal` by default: A, and PTR for their addresses);
//! every other name under `.internal` is NXDOMAIN, so no tenant ever
//! learns another's names, not even through an upstream. Other names
//! are forwarded to the tenant's upstream resolvers from its gateway
//! address, through the data path and so through its source NAT, and
//! their answers kept in a cache of the tenant's own, for their TTL
//! (negative answers for their SOA's minimum, 5 minutes at most).
//!
//! Forwarded queries carry a random ID from a random port; an answer is
//! taken only from the resolver asked, to that port, with that ID and
//! question. Unanswered ones are asked of the next resolver after
//! `UPSTREAM_TIMEOUT`, then answered SERVFAIL. An answer that came
//! truncated is asked again of the same resolver over TCP.
//!
//! VMs ask over UDP, or over TCP (`gateway_tcp`), which takes answers
//! of any length.
use super::gateway_tcp::{TcpConn, TcpQuery};
use super::udp::{self, End};
use super::upstream_tcp::{self, UpstreamTcp, Via};
use super::Outbox;
use crate::pipeline::{Meta, Stage};
use crate::table::{PortId, PortRole, Tables, TenantId};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub const PORT: u16 = 53;
/// TTL of the VMs' own records: short, as VMs come and go.
const LOCAL_TTL: u32 = 60;
/// Answers a tenant's cache holds; past it the oldest goes.
pub const CACHE_ENTRIES: usize = 4096;
/// Queries a tenant may have waiting for upstreams.
const PENDING_PER_TENANT: usize = 256;
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often expired answers are swept out of the caches.
const CACHE_SWEEP: Duration = Duration::from_secs(10);
/// Longest a negative answer is cached (RFC 2308 suggests 1-3 hours;
/// VMs come and go faster here).
const MAX_NEGATIVE_TTL: u32 = 300;
/// The longest answer sent a VM over UDP: what a 1500-byte frame holds
/// after the IPv4 and UDP headers. Longer ones go truncated (TC).
const MAX_UDP_ANSWER: u16 = 1500 - 20 - 8;
/// What a forwarded query asks upstreams to send at most over UDP.
const EDNS_PAYLOAD: u16 = 1232;
/// The top-level domain of every tenant's own names.
const INTERNAL: &str = "internal.";

/// DNS messages by what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DnsCounters {
    /// Answered from the tenant's own names (NXDOMAIN included).
    pub authoritative: u64,
    pub from_cache: u64,
    pub forwarded: u64,
    /// Upstream answers passed on.
    pub upstream_answers: u64,
    /// Not forwarded: the tenant has no upstream, or too many waiting.
    pub refused: u64,
    /// Every upstream was silent.
    pub servfail: u64,
    /// Truncated upstream answers asked again over TCP, and how many of
    /// those TCP answered.
    pub tcp_retries: u64,
    pub tcp_answers: u64,
    pub malformed: u64,
    /// An upstream answer nothing waited for (late, or forged).
    pub unmatched: u64,
}

impl DnsCounters {
    pub(super) fn add(&mut self, o: &DnsCounters) {
        self.authoritative += o.authoritative;
        self.from_cache += o.from_cache;
        self.forwarded += o.forwarded;
        self.upstream_answers += o.upstream_answers;
        self.refused += o.refused;
        self.servfail += o.servfail;
        self.tcp_retries += o.tcp_retries;
        self.tcp_answers += o.tcp_answers;
        self.malformed += o.malformed;
        self.unmatched += o.unmatched;
    }
}

/// Who asked: where the answer goes.
#[derive(Debug, Clone, Copy)]
struct Client {
    worker: u16,
    port: PortId,
    tenant: TenantId,
    /// The gateway it asked.
    gateway: End,
    id: u16,
    reply: Reply,
}

/// How a client asked.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// From `vm`, taking UDP answers up to `max_payload` bytes.
    Udp {
        vm: End,
        max_payload: u16,
    },
    Tcp(TcpConn),
}

/// A query asked again over TCP: what it waits for.
struct TcpAsk {
    pending: Pending,
    id: u16,
}

/// A forwarded query waiting for its answer.
struct Pending {
    client: Client,
    query: Query,
    /// Upstreams asked so far (the last one is the current).
    tries: usize,
    sent: Instant,
}

/// A cached answer: its records and code, until `expires`.
struct Cached {
    code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    stored: Instant,
    expires: Instant,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<(Name, RecordType), Cached>,
    order: VecDeque<(Name, RecordType)>,
}

/// The names of every tenant's VMs, as one generation of tables has them.
#[derive(Default)]
struct Zones {
    generation: u32,
    /// (tenant, lowercased FQDN) -> address.
    names: HashMap<(TenantId, Name), Ipv4Addr>,
    /// (tenant, address) -> FQDN.
    addresses: HashMap<(TenantId, Ipv4Addr), Name>,
    /// Per tenant: its domain (FQDN, lowercase).
    domains: HashMap<TenantId, Name>,
}

impl Zones {
    fn follow(&mut self, tables: &Tables) {
        if self.generation == tables.generation() {
            return;
        }
        *self = Zones {
            generation: tables.generation(),
            ..Zones::default()
        };
        for (id, _) in tables.tenants().iter().enumerate() {
            let Ok(id) = TenantId::try_from(id) else {
                continue;
            };
            if let Some(domain) = tables.tenant_dns(id).and_then(|d| fqdn(&d.domain)) {
                self.domains.insert(id, domain);
            }
        }
        for (tenant, ip, guest) in tables.guests() {
            let (Some(host), Some(domain)) = (&guest.hostname, self.domains.get(&tenant)) else {
                continue;
            };
            let Some(name) = Name::from_ascii(host)
                .ok()
                .and_then(|n| n.append_domain(domain).ok())
            else {
                continue;
            };
            let name = name.to_lowercase();
            self.names.insert((tenant, name.clone()), ip);
            self.addresses.insert((tenant, ip), name);
        }
    }
}

fn fqdn(domain: &str) -> Option<Name> {
    let mut name = Name::from_ascii(domain).ok()?.to_lowercase();
    name.set_fqdn(true);
    Some(name)
}

#[derive(Default)]
pub struct Dns {
    zones: Zones,
    caches: HashMap<TenantId, Cache>,
    pending: HashMap<(TenantId, u16, u16), Pending>,
    /// Per tenant: how many of `pending` are its.
    waiting_by_tenant: HashMap<TenantId, usize>,
    /// When the caches were last swept of expired answers.
    swept: Option<Instant>,
    /// xorshift64: query IDs and ports (not a secret against a VM that
    /// sees its own queries' NAT ports, only against off-path forgers).
    rng: u64,
    /// Queries asked again of upstreams over TCP.
    tcp: UpstreamTcp<TcpAsk>,
    /// Answers for VMs that asked over TCP, for their connections.
    pub(super) tcp_answers: Vec<(TcpConn, Vec<u8>)>,
    /// What happened since the services last took them, by tenant.
    pub(super) counters: BTreeMap<TenantId, DnsCounters>,
}

impl Dns {
    pub fn new() -> Dns {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        Dns {
            rng: seed | 1,
            ..Dns::default()
        }
    }

    fn random(&mut self) -> u16 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 16) as u16
    }

    /// A VM's query (a frame that arrived on `meta.in_port`).
    pub(super) fn query(
        &mut self,
        tables: &Tables,
        (meta, worker): (Meta, u16),
        frame: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some((client, query)) = read_query(tables, (meta, worker), frame) else {
            self.note(meta.tenant, |c| &mut c.malformed);
            return;
        };
        self.answer(tables, client, query, now, out);
    }

    /// A VM's query over TCP.
    pub(super) fn query_tcp(
        &mut self,
        tables: &Tables,
        asked: TcpQuery,
        now: Instant,
        out: &mut Outbox,
    ) {
        let read = read_message(&asked.message);
        let gateway = gateway_of(tables, asked.conn.port);
        let (Some((id, query, _)), Some(gateway)) = (read, gateway) else {
            self.note(asked.tenant, |c| &mut c.malformed);
            return;
        };
        let client = Client {
            worker: asked.worker,
            port: asked.conn.port,
            tenant: asked.tenant,
            gateway,
            id,
            reply: Reply::Tcp(asked.conn),
        };
        self.answer(tables, client, query, now, out);
    }

    /// Answers a VM's query: from the tenant's names, its cache, or an
    /// upstream.
    fn answer(
        &mut self,
        tables: &Tables,
        client: Client,
        query: Query,
        now: Instant,
        out: &mut Outbox,
    ) {
        self.zones.follow(tables);
        if let Some(answer) = self.authoritative(&client, &query) {
            self.note(client.tenant, |c| &mut c.authoritative);
            return self.send(&client, answer, out);
        }
        if let Some(answer) = self.cached(&client, &query, now) {
            self.note(client.tenant, |c| &mut c.from_cache);
            return self.send(&client, answer, out);
        }
        self.forward(tables, client, query, now, out);
    }

    /// What the tenant's own names answer, if `query` is about them.
    fn authoritative(&self, client: &Client, query: &Query) -> Option<Message> {
        let name = query.name().to_lowercase();
        let domain = self.zones.domains.get(&client.tenant)?;
        let internal = Name::from_ascii(INTERNAL).ok()?;
        let reverse = name.parse_arpa_name().ok();
        let own = domain.zone_of(&name);
        let (code, answer) = if own || internal.zone_of(&name) {
            let address = self.zones.names.get(&(client.tenant, name.clone()));
            match (address, query.query_type()) {
                (Some(ip), RecordType::A | RecordType::ANY) => {
                    (ResponseCode::NoError, Some(RData::A(A(*ip))))
                }
                (Some(_), _) => (ResponseCode::NoError, None),
                (None, _) if name == *domain => (ResponseCode::NoError, None),
                (None, _) => (ResponseCode::NXDomain, None),
            }
        } else if let Some(ipnet::IpNet::V4(net)) = reverse.filter(|n| n.prefix_len() == 32) {
            let host = self.zones.addresses.get(&(client.tenant, net.addr()));
            match (host, query.query_type()) {
                (Some(host), RecordType::PTR | RecordType::ANY) => {
                    (ResponseCode::NoError, Some(RData::PTR(PTR(host.clone()))))
                }
                (Some(_), _) => (ResponseCode::NoError, None),
                // Private addresses are the tenant's to name: none is
                // asked of the internet.
                (None, _) if net.addr().is_private() => (ResponseCode::NXDomain, None),
                (None, _) => return None,
            }
        } else {
            return None;
        };
        let mut m = response(client, query, code);
        m.metadata.authoritative = true;
        match answer {
            Some(data) => {
                m.add_answer(Record::from_rdata(query.name().clone(), LOCAL_TTL, data));
            }
            None => {
                m.add_authority(soa(domain, self.zones.generation));
            }
        }
        Some(m)
    }

    fn cached(&mut self, client: &Client, query: &Query, now: Instant) -> Option<Message> {
        let cache = self.caches.get(&client.tenant)?;
        let key = (query.name().to_lowercase(), query.query_type());
        let hit = cache.entries.get(&key).filter(|c| c.expires > now)?;
        // TTLs count down from when it was stored.
        let age = u32::try_from(now.duration_since(hit.stored).as_secs()).unwrap_or(u32::MAX);
        let aged = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .cloned()
                .map(|mut r| {
                    r.ttl = r.ttl.saturating_sub(age);
                    r
                })
                .collect()
        };
        let mut m = response(client, query, hit.code);
        m.insert_answers(aged(&hit.answers));
        m.insert_authorities(aged(&hit.authorities));
        Some(m)
    }

    fn forward(
        &mut self,
        tables: &Tables,
        client: Client,
        query: Query,
        now: Instant,
        out: &mut Outbox,
    ) {
        let waiting = self
            .waiting_by_tenant
            .get(&client.tenant)
            .copied()
            .unwrap_or(0);
        let has_upstream = tables
            .tenant_dns(client.tenant)
            .is_some_and(|d| !d.upstreams.is_empty());
        if !has_upstream || waiting >= PENDING_PER_TENANT {
            self.note(client.tenant, |c| &mut c.refused);
            return self.send(
                &client,
                response(&client, &query, ResponseCode::Refused),
                out,
            );
        }
        let pending = Pending {
            client,
            query,
            tries: 0,
            sent: now,
        };
        self.ask_next(tables, pending, now, out);
    }

    /// Asks the next upstream of `pending`'s tenant; with none left,
    /// answers SERVFAIL.
    fn ask_next(&mut self, tables: &Tables, mut pending: Pending, now: Instant, out: &mut Outbox) {
        let client = pending.client;
        let upstream = tables
            .tenant_dns(client.tenant)
            .and_then(|d| d.upstreams.get(pending.tries).copied());
        let Some(upstream) = upstream else {
            self.note(client.tenant, |c| &mut c.servfail);
            let failed = response(&client, &pending.query, ResponseCode::ServFail);
            return self.send(&client, failed, out);
        };
        let (id, port) = loop {
            let (id, port) = (self.random(), self.random() | 0x8000);
            if !self.pending.contains_key(&(client.tenant, port, id)) {
                break (id, port);
            }
        };
        let mut m = upstream_query(id, &pending.query);
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(edns);
        let Ok(bytes) = m.to_vec() else {
            return;
        };
        let from = End {
            port,
            ..client.gateway
        };
        let to = End {
            mac: client.gateway.mac,
            ip: upstream,
            port: PORT,
        };
        let Some(frame) = udp::frame((from, to), &bytes) else {
            return;
        };
        // Routed from the gateway in the tenant's VRF, as a VM's packet
        // to the internet: through its source NAT.
        let mut meta = Meta::new(client.port);
        meta.classify(client.tenant);
        meta.stage = Stage::L3;
        out.push((client.worker, frame, meta));
        pending.tries += 1;
        pending.sent = now;
        self.note(client.tenant, |c| &mut c.forwarded);
        self.hold((client.tenant, port, id), pending);
    }

    /// An upstream's answer, arrived at a gateway address.
    pub(super) fn upstream_answer(
        &mut self,
        tables: &Tables,
        meta: Meta,
        frame: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) {
        let Some(datagram) = udp::read(frame) else {
            self.note(meta.tenant, |c| &mut c.malformed);
            return;
        };
        let Ok(answer) = Message::from_vec(datagram.payload) else {
            self.note(meta.tenant, |c| &mut c.malformed);
            return;
        };
        let key = (meta.tenant, datagram.to.port, answer.metadata.id);
        let matches = self.pending.get(&key).is_some_and(|p| {
            let asked = tables
                .tenant_dns(p.client.tenant)
                .and_then(|d| d.upstreams.get(p.tries.saturating_sub(1)).copied());
            asked == Some(datagram.from.ip) && answers(&answer, &p.query)
        });
        let Some(pending) = matches.then(|| self.release(&key)).flatten() else {
            self.note(meta.tenant, |c| &mut c.unmatched);
            return;
        };
        self.note(pending.client.tenant, |c| &mut c.upstream_answers);
        if answer.metadata.truncation {
            return self.ask_over_tcp(pending, datagram.from.ip, now, out);
        }
        self.pass_on(pending, answer, now, out);
    }

    /// Stores an upstream's answer, and sends it to the client.
    fn pass_on(&mut self, pending: Pending, answer: Message, now: Instant, out: &mut Outbox) {
        let code = answer.metadata.response_code;
        if !answer.metadata.truncation {
            self.store(pending.client.tenant, &pending.query, &answer, now);
        }
        let mut m = response(&pending.client, &pending.query, code);
        m.metadata.truncation = answer.metadata.truncation;
        m.insert_answers(answer.answers);
        m.insert_authorities(answer.authorities);
        self.send(&pending.client, m, out);
    }

    /// Asks `upstream` again over TCP, from the same gateway; if it
    /// cannot be, the client is told the answer was truncated.
    fn ask_over_tcp(
        &mut self,
        pending: Pending,
        upstream: Ipv4Addr,
        now: Instant,
        out: &mut Outbox,
    ) {
        let client = pending.client;
        let (id, port) = (self.random(), self.random() | 0x8000);
        let m = upstream_query(id, &pending.query);
        let via = Via {
            worker: client.worker,
            port: client.port,
            mac: client.gateway.mac,
        };
        let from = (client.tenant, client.gateway.ip, port);
        let ask = TcpAsk { pending, id };
        let asked = match m.to_vec() {
            Ok(bytes) => self.tcp.ask(from, via, upstream, &bytes, ask, now, out),
            Err(_) => Err(ask),
        };
        match asked {
            Ok(()) => self.note(client.tenant, |c| &mut c.tcp_retries),
            Err(ask) => self.truncated(ask.pending, out),
        }
    }

    /// Tells the client its answer did not fit (no TCP answer came).
    fn truncated(&mut self, pending: Pending, out: &mut Outbox) {
        let mut m = response(&pending.client, &pending.query, ResponseCode::NoError);
        m.metadata.truncation = true;
        self.send(&pending.client, m, out);
    }

    /// A TCP segment from an upstream to a gateway address.
    pub(super) fn upstream_tcp(
        &mut self,
        meta: Meta,
        frame: &[u8],
        now: Instant,
        out: &mut Outbox,
    ) {
        let ended = self.tcp.packet(meta.tenant, frame, now, out);
        self.tcp_ended(ended, now, out);
    }

    /// Queries over TCP that ended: answered, or told truncated.
    fn tcp_ended(
        &mut self,
        ended: Vec<upstream_tcp::Ended<TcpAsk>>,
        now: Instant,
        out: &mut Outbox,
    ) {
        for (ask, bytes) in ended {
            let answer = bytes
                .and_then(|b| Message::from_vec(&b).ok())
                .filter(|a| a.metadata.id == ask.id && answers(a, &ask.pending.query));
            match answer {
                Some(answer) => {
                    self.note(ask.pending.client.tenant, |c| &mut c.tcp_answers);
                    self.pass_on(ask.pending, answer, now, out);
                }
                None => self.truncated(ask.pending, out),
            }
        }
    }

    fn store(&mut self, tenant: TenantId, query: &Query, answer: &Message, now: Instant) {
        let code = answer.metadata.response_code;
        let ttl = match code {
            ResponseCode::NoError if !answer.answers.is_empty() => {
                answer.answers.iter().map(|r| r.ttl).min()
            }
            // NXDOMAIN or no data: as long as the zone's SOA says.
            ResponseCode::NoError | ResponseCode::NXDomain => answer
                .authorities
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SOA(soa) => Some(soa.minimum.min(r.ttl).min(MAX_NEGATIVE_TTL)),
                    _ => None,
                })
                .next(),
            _ => None,
        };
        let Some(ttl) = ttl.filter(|t| *t > 0) else {
            return;
        };
        let cache = self.caches.entry(tenant).or_default();
        let key = (query.name().to_lowercase(), query.query_type());
        if cache.entries.len() >= CACHE_ENTRIES && !cache.entries.contains_key(&key) {
            if let Some(oldest) = cache.order.pop_front() {
                cache.entries.remove(&oldest);
            }
        }
        let cached = Cached {
            code,
            answers: answer.answers.clone(),
            authorities: answer.authorities.clone(),
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
        };
        if cache.entries.insert(key.clone(), cached).is_none() {
            cache.order.push_back(key);
        }
    }

    /// Queries no upstream answered in time: the next upstream, or
    /// SERVFAIL. Expired cache entries go.
    pub(super) fn tick(&mut self, tables: &Tables, now: Instant, out: &mut Outbox) {
        let late: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.sent) >= UPSTREAM_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            if let Some(pending) = self.release(&key) {
                self.ask_next(tables, pending, now, out);
            }
        }
        let ended = self.tcp.tick(now, out);
        self.tcp_ended(ended, now, out);
        // A full sweep now and then: expired answers are skipped when
        // asked for, and go here.
        if self
            .swept
            .is_none_or(|t| now.duration_since(t) >= CACHE_SWEEP)
        {
            self.swept = Some(now);
            for cache in self.caches.values_mut() {
                cache.entries.retain(|_, c| c.expires > now);
                let entries = &cache.entries;
                cache.order.retain(|k| entries.contains_key(k));
            }
        }
        // A deleted tenant's cache goes with it.
        self.caches.retain(|t, _| tables.tenant_dns(*t).is_some());
    }

    /// Counts one event of `tenant`'s.
    fn note(&mut self, tenant: TenantId, counter: impl Fn(&mut DnsCounters) -> &mut u64) {
        *counter(self.counters.entry(tenant).or_default()) += 1;
    }

    /// Queries waiting for an upstream, over UDP or TCP.
    pub fn waiting(&self) -> usize {
        self.pending.len() + self.tcp.asked()
    }

    fn hold(&mut self, key: (TenantId, u16, u16), pending: Pending) {
        if self.pending.insert(key, pending).is_none() {
            *self.waiting_by_tenant.entry(key.0).or_default() += 1;
        }
    }

    fn release(&mut self, key: &(TenantId, u16, u16)) -> Option<Pending> {
        let pending = self.pending.remove(key)?;
        if let Some(n) = self.waiting_by_tenant.get_mut(&key.0) {
            *n = n.saturating_sub(1);
        }
        Some(pending)
    }
}

/// What the services ask an upstream for `query`, with `id`.
fn upstream_query(id: u16, query: &Query) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(query.clone());
    m
}

/// Whether `answer` is a response to `query` (its ID matched by the
/// caller).
fn answers(answer: &Message, query: &Query) -> bool {
    answer.metadata.message_type == MessageType::Response
        && answer
            .queries
            .first()
            .is_some_and(|q| same_question(q, query))
}

/// A DNS message framed for TCP (RFC 1035 4.2.2: its length first);
/// None if it is too long to frame.
pub(super) fn tcp_framed(message: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(message.len()).ok()?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    Some(framed)
}

/// The length the next message read over TCP announces, once its two
/// bytes are here.
pub(super) fn tcp_length(read: &[u8]) -> Option<usize> {
    match read {
        [hi, lo, ..] => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

fn same_question(a: &Query, b: &Query) -> bool {
    a.name().to_lowercase() == b.name().to_lowercase()
        && a.query_type() == b.query_type()
        && a.query_class() == b.query_class()
}

/// A response to `client` for `query`, with `code`.
fn response(client: &Client, query: &Query, code: ResponseCode) -> Message {
    let mut m = Message::response(client.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.metadata.response_code = code;
    m.add_query(query.clone());
    m
}

/// The SOA of a tenant's zone: what negative answers are cached by.
fn soa(domain: &Name, serial: u32) -> Record {
    let host = |label: &str| {
        Name::from_ascii(label)
            .ok()
            .and_then(|n| n.append_domain(domain).ok())
            .unwrap_or_else(|| domain.clone())
    };
    let data = SOA::new(
        host("ns"),
        host("hostmaster"),
        serial,
        3600,
        600,
        86_400,
        LOCAL_TTL,
    );
    Record::from_rdata(domain.clone(), LOCAL_TTL, RData::SOA(data))
}

/// The VM's query and where its answer goes; None if it is not one
/// question of class IN from a VM port.
fn read_query(
    tables: &Tables,
    (meta, worker): (Meta, u16),
    frame: &[u8],
) -> Option<(Client, Query)> {
    let datagram = udp::read(frame)?;
    let (id, query, max_payload) = read_message(datagram.payload)?;
    let client = Client {
        worker,
        port: meta.in_port,
        tenant: meta.tenant,
        gateway: gateway_of(tables, meta.in_port)?,
        id,
        reply: Reply::Udp {
            vm: datagram.from,
            // Never past one Ethernet frame: answers are not fragmented.
            max_payload: max_payload.clamp(512, MAX_UDP_ANSWER),
        },
    };
    Some((client, query))
}

/// Where a VM of `port` asks: its router MAC and gateway, port 53 (None:
/// not a VM port).
fn gateway_of(tables: &Tables, port: PortId) -> Option<End> {
    let p = tables.port(port)?;
    let PortRole::Vm { gateway, .. } = p.role else {
        return None;
    };
    Some(End {
        mac: p.mac,
        ip: gateway.addr(),
        port: PORT,
    })
}

/// A VM's DNS message: its ID, its one question of class IN, and the
/// largest UDP answer it takes; None if it is not a standard query.
fn read_message(bytes: &[u8]) -> Option<(u16, Query, u16)> {
    let message = Message::from_vec(bytes).ok()?;
    let m = &message.metadata;
    if m.message_type != MessageType::Query || m.op_code != OpCode::Query {
        return None;
    }
    let [query] = &message.queries[..] else {
        return None;
    };
    Some((m.id, query.clone(), message.max_payload()))
}

impl Dns {
    /// Sends `answer` to `client`, truncated (TC) if it is too big for
    /// it: over UDP into `out`, over TCP into `tcp_answers`.
    fn send(&mut self, client: &Client, answer: Message, out: &mut Outbox) {
        let max = match client.reply {
            Reply::Udp { max_payload, .. } => usize::from(max_payload),
            Reply::Tcp(_) => usize::from(u16::MAX),
        };
        let Ok(mut bytes) = answer.to_vec() else {
            return;
        };
        if bytes.len() > max {
            let Ok(cut) = answer.truncate().to_vec() else {
                return;
            };
            bytes = cut;
        }
        let vm = match client.reply {
            Reply::Tcp(conn) => return self.tcp_answers.push((conn, bytes)),
            Reply::Udp { vm, .. } => vm,
        };
        let Some(frame) = udp::frame((client.gateway, vm), &bytes) else {
            return;
        };
        let mut meta = Meta::new(client.port);
        meta.classify(client.tenant);
        meta.tx(client.port);
        out.push((client.worker, frame, meta));
    }
}
