//! Flow offload, the workers' side: after a batch, each packet a worker
//! routed or translated on its own whose flow is established is offered
//! to the fast path as what the worker did to it: its headers before the
//! pipeline against its headers after (the inner ones, if it
//! encapsulated or decapsulated it), as the steering program is to
//! repeat them on the flow's later packets (`ebpf/src/bpf/lib/flows.h`).
//! Conntrack keeps authority: a session notes which directions are
//! offloaded, and when it closes or goes they are withdrawn
//! (`Conntrack::take_withdrawn`); at expiry it asks the fast path when
//! it last forwarded them.
//!
//! Offered only: IPv4 without options, TCP or UDP, not a fragment, TTL
//! above 1 and taken down by one (routed), TCP without SYN, FIN or RST,
//! of a session in the direction's key (TCP established; not
//! hairpinned), or routed untranslated without a session (a tenant
//! without ACLs, or a flow its rules pass statelessly). A frame handed in
//! by another worker is never offered (this worker did not see it whole),
//! nor one cut into fragments for the overlay.
use super::Verdict;
use crate::conntrack::{Conntrack, Dir, Session, SessionId, State, TCP, UDP};
use crate::frame::{Frame, BATCH_SIZE};
use crate::table::{Location, PortId, Tables};
use crate::wire::{byte, ipv4, transport, u16_at, u32_at};
use crate::wire::{ETH_HEADER_LEN, UDP_HEADER_LEN, VXLAN_OVERHEAD};
use std::net::Ipv4Addr;

/// One direction of a flow as its packets arrive: on `port`, with these
/// addresses and ports (over the overlay, the inner packet's, in VXLAN of
/// VNI `overlay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArrivingFlow {
    pub port: PortId,
    pub overlay: Option<u32>,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// What the worker did around the rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Around {
    Nothing,
    /// Encapsulated toward a VTEP: these outer headers (the VTEP's
    /// template with the flow's source port and the VNI; lengths zero).
    Encap([u8; VXLAN_OVERHEAD]),
    /// It came in VXLAN from VTEP `vtep` (VNI in the flow).
    Decap {
        vtep: Ipv4Addr,
    },
}

/// What a worker did to a packet of `flow`, for the fast path to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub flow: ArrivingFlow,
    /// Destination and source MAC it arrived with (the inner ones over
    /// the overlay).
    pub in_macs: [u8; 12],
    pub out_port: PortId,
    /// Destination and source MAC it left with (inner ones, encapsulated).
    pub out_macs: [u8; 12],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub around: Around,
    /// Longest IPv4 packet (before encapsulation) the worker would send
    /// the same way: an encapsulated one must fit the underlay whole.
    pub max_ip_len: u16,
    /// The tables generation it was decided under.
    pub generation: u32,
}

/// Where offers go and withdrawals come from: the steering program's
/// flow map in xvrd, a record in tests. Called between batches, once per
/// offered direction, closed session or expiring one: never per packet.
pub trait FlowOffload: Send {
    /// The fast path forwards `offer.flow` as `offer` says from now on
    /// (if it can: an output it cannot redirect to, or a packet longer
    /// than the output takes, leaves the flow to the workers).
    fn install(&mut self, offer: &Offer);
    /// `flow` goes to the workers again.
    fn withdraw(&mut self, flow: &ArrivingFlow);
    /// Seconds since the fast path last forwarded a packet of `flow`;
    /// None if it never did or holds no entry for it.
    fn idle_for(&mut self, flow: &ArrivingFlow) -> Option<u32>;
}

/// Ethernet, IPv4 without options, and the TCP header up to its flags.
const HEAD: usize = L4 + transport::field::TCP_FLAGS + 1;
/// A frame's first bytes as kept: room for VXLAN's outer headers too.
const KEPT: usize = VXLAN_OVERHEAD + HEAD;
/// Offsets in an Ethernet frame of IPv4 without options, from the wire
/// views' field names.
const ETHERTYPE: usize = ETH_HEADER_LEN - 2;
const IP: usize = ETH_HEADER_LEN;
const TTL: usize = IP + ipv4::field::TTL;
const PROTO: usize = IP + ipv4::field::PROTOCOL;
const SRC: usize = IP + ipv4::field::SRC_ADDR;
const DST: usize = IP + ipv4::field::DST_ADDR;
const L4: usize = IP + ipv4::field::MIN_HEADER_LEN;
const SPORT: usize = L4 + transport::field::SRC_PORT;
const DPORT: usize = L4 + transport::field::DST_PORT;
const TCP_FLAGS: usize = L4 + transport::field::TCP_FLAGS;
/// The outer UDP source port and VNI in VXLAN's outer headers (the VNI
/// is the VXLAN header's bytes 4 to 6).
const OUTER_SPORT: usize = SPORT;
const OUTER_VNI: usize = L4 + UDP_HEADER_LEN + 4;
/// The shortest frame to offer: its ports are there.
const SHORTEST: usize = DPORT + 2;
/// FIN, SYN, RST.
const OPEN_OR_CLOSE: u8 = 0x07;

/// Flow directions a worker installs a second at most: a map write is a
/// syscall (about 1.5 us), so a flood of new flows costs the worker at
/// most a tenth of its time in them; beyond it flows stay with the
/// workers until the next second.
pub const INSTALLS_PER_SECOND: u32 = 50_000;

/// The heads of a batch's frames as they arrived.
pub(crate) struct Arrivals {
    heads: [[u8; KEPT]; BATCH_SIZE],
    /// Each frame's length as it arrived; 0 if not to offer (it came
    /// handed in, or is shorter than a head).
    lens: [usize; BATCH_SIZE],
    /// Installs left this second, and which second it is.
    budget: u32,
    second: u32,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals {
            heads: [[0; KEPT]; BATCH_SIZE],
            lens: [0; BATCH_SIZE],
            budget: INSTALLS_PER_SECOND,
            second: 0,
        }
    }
}

/// `N` bytes of `bytes` from `at`, zeros past its end (a short UDP
/// packet has no more). Copied whole, not byte by byte: a byte loop
/// cost ~3 instructions a byte, 180 a packet of 60 bytes (callgrind).
#[inline]
fn bytes_at<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    let there = bytes.get(at..).unwrap_or_default();
    let n = there.len().min(N);
    if let (Some(to), Some(from)) = (out.get_mut(..n), there.get(..n)) {
        to.copy_from_slice(from);
    }
    out
}

fn addr(head: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32_at(head, at))
}

/// Plain IPv4 (no options) TCP or UDP, not a fragment.
fn plain(head: &[u8]) -> bool {
    u32_at(head, ETHERTYPE) >> 8 == 0x08_0045
        && !ipv4::is_fragment(head.get(IP..).unwrap_or_default())
        && matches!(byte(head, PROTO), TCP | UDP)
}

/// What the pipeline did to a frame besides rewriting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Same,
    Encapsulated,
    Decapsulated,
}

/// A frame's headers before and after the pipeline (the inner ones over
/// the overlay), if it only rewrote it, encapsulated it or decapsulated
/// it; `kept` holds its first bytes as it arrived with `len` bytes.
fn headers<'a>(
    frame: &'a Frame<'_>,
    kept: &'a [u8; KEPT],
    len: usize,
) -> Option<(&'a [u8], &'a [u8], Shape)> {
    let after = frame.data();
    let inner = |bytes: &'a [u8]| bytes.get(VXLAN_OVERHEAD..);
    let n = frame.len();
    if n == len {
        Some((kept.as_slice(), after, Shape::Same))
    } else if n == len + VXLAN_OVERHEAD {
        Some((kept.as_slice(), inner(after)?, Shape::Encapsulated))
    } else if n + VXLAN_OVERHEAD == len && frame.meta.from_vtep.is_some() {
        Some((inner(kept)?, after, Shape::Decapsulated))
    } else {
        None
    }
}

/// What the fast path is to do around the rewrite of a frame of `shape`.
fn around(tables: &Tables, frame: &Frame<'_>, kept: &[u8; KEPT], shape: Shape) -> Option<Around> {
    match shape {
        Shape::Same => Some(Around::Nothing),
        Shape::Encapsulated => {
            let after = frame.data();
            let mut outer = tables.vteps().get(frame.meta.to_vtep)?.template;
            for at in [
                OUTER_SPORT,
                OUTER_SPORT + 1,
                OUTER_VNI,
                OUTER_VNI + 1,
                OUTER_VNI + 2,
            ] {
                *outer.get_mut(at)? = byte(after, at);
            }
            Some(Around::Encap(outer))
        }
        Shape::Decapsulated => Some(Around::Decap {
            vtep: addr(kept, SRC),
        }),
    }
}

impl Arrivals {
    /// Copies the head of every frame waiting at ingress.
    pub(crate) fn note(&mut self, frames: &[Frame<'_>]) {
        for ((frame, head), len) in frames.iter().zip(&mut self.heads).zip(&mut self.lens) {
            *len = 0;
            if frame.meta.stage != super::Stage::Ingress {
                continue;
            }
            if frame.len() >= SHORTEST {
                // In place, what there is: past a short frame's end the
                // head keeps stale bytes, which nothing reads (a field
                // is read only where the frame's protocol puts it).
                let data = frame.data();
                let n = data.len().min(KEPT);
                if let (Some(to), Some(from)) = (head.get_mut(..n), data.get(..n)) {
                    to.copy_from_slice(from);
                }
                *len = frame.len();
            }
        }
    }

    /// Offers what the pipeline did to each frame that qualifies, within
    /// this second's installs.
    pub(crate) fn offer(
        &mut self,
        tables: &Tables,
        frames: &[Frame<'_>],
        (ct, now): (&mut Conntrack, u32),
        sink: &mut dyn FlowOffload,
    ) {
        if now != self.second {
            self.second = now;
            self.budget = INSTALLS_PER_SECOND;
        }
        let uplink = tables.uplink().map(|(id, _)| id);
        let budget = &mut self.budget;
        for ((frame, kept), &len) in frames.iter().zip(&self.heads).zip(&self.lens) {
            let Verdict::Tx(out_port) = frame.meta.verdict else {
                continue;
            };
            if len == 0 || frame.meta.reply.is_some() || *budget == 0 {
                continue;
            }
            let Some((before, after, shape)) = headers(frame, kept, len) else {
                continue;
            };
            let ttl = byte(before, TTL);
            let routed = ttl > 1 && byte(after, TTL) == ttl - 1;
            let tcp_opens_or_closes =
                byte(before, PROTO) == TCP && byte(before, TCP_FLAGS) & OPEN_OR_CLOSE != 0;
            if !routed || tcp_opens_or_closes || !plain(before) || !plain(after) {
                continue;
            }
            let port_in = frame.meta.in_port;
            let overlay = (shape == Shape::Decapsulated).then(|| u32_at(kept, OUTER_VNI) >> 8);
            let flow = ArrivingFlow {
                port: port_in,
                overlay,
                proto: byte(before, PROTO),
                src: addr(before, SRC),
                dst: addr(before, DST),
                sport: u16_at(before, SPORT),
                dport: u16_at(before, DPORT),
            };
            let out = (addr(after, SRC), addr(after, DST));
            let out_ports = (u16_at(after, SPORT), u16_at(after, DPORT));
            let install = match frame.meta.session {
                Some(found) => offer_session(tables, ct, found, &flow),
                // Routed untranslated with no session: nothing to keep
                // in step but the tables, whose generation it carries.
                None => {
                    let public = overlay.is_none() && Some(port_in) == uplink;
                    let same = (out, out_ports) == ((flow.src, flow.dst), (flow.sport, flow.dport));
                    same && !public
                }
            };
            // Built only now: most frames that reach a worker are of
            // flows offloaded already, or not to offload.
            let Some(around) = install
                .then(|| around(tables, frame, kept, shape))
                .flatten()
            else {
                continue;
            };
            let max_ip_len = match around {
                Around::Encap(_) => tables.overlay_ip_mtu().map_or(0, |m| m.min(0xffff) as u16),
                _ => u16::MAX,
            };
            let offer = Offer {
                flow,
                in_macs: bytes_at(before, 0),
                out_port,
                out_macs: bytes_at(after, 0),
                src: out.0,
                dst: out.1,
                sport: out_ports.0,
                dport: out_ports.1,
                around,
                max_ip_len,
                generation: tables.generation(),
            };
            *budget -= 1;
            sink.install(&offer);
        }
    }
}

/// Whether to install direction `dir` of session `id`: established, not
/// offloaded already, offered before (`Conntrack::offload`), and as the
/// tables place it (`arrival`), so that its withdrawal finds the same
/// entry.
fn offer_session(
    tables: &Tables,
    ct: &mut Conntrack,
    (id, dir): (SessionId, Dir),
    flow: &ArrivingFlow,
) -> bool {
    let Some(s) = ct.session(id) else {
        return false;
    };
    // The common case first: a packet of a flow offloaded already.
    if s.offloaded & dir.bit() != 0 || !established(s) {
        return false;
    }
    if arrival(tables, s, dir) != Some((flow.port, flow.overlay)) {
        return false;
    }
    ct.offload(id, dir)
}

/// The port direction `dir` of session `s` arrives on, and its VNI if it
/// comes over the overlay, as the tables place its ends: the inside VM's
/// port (or the uplink, for a VM behind a VTEP), and for the reply the
/// uplink (translated) or the other VM's port (routed).
fn arrival(tables: &Tables, s: &Session, dir: Dir) -> Option<(PortId, Option<u32>)> {
    let uplink = tables.uplink().map(|(id, _)| id);
    let of_vm = |ip| match tables.host(s.inside.zone, ip)?.location {
        Location::Local(port) => Some((port, None)),
        Location::Remote(_) => Some((uplink?, Some(tables.tenant(s.inside.zone)?.vni))),
    };
    match (dir, s.routed) {
        (Dir::Orig, _) => of_vm(s.inside.src),
        (Dir::Reply, true) => of_vm(s.inside.dst),
        (Dir::Reply, false) => Some((uplink?, None)),
    }
}

fn established(s: &Session) -> bool {
    !s.hairpin && (s.inside.proto != TCP || s.state == State::Established)
}

/// The directions of session `s` that were offloaded, as they arrive.
pub(crate) fn offloaded_flows<'a>(
    tables: &'a Tables,
    s: &'a Session,
) -> impl Iterator<Item = ArrivingFlow> + 'a {
    [(Dir::Orig, s.inside), (Dir::Reply, s.reply_key())]
        .into_iter()
        .filter(|(dir, _)| s.has_entry(*dir))
        .filter_map(|(dir, key)| Some((key, arrival(tables, s, dir)?)))
        .map(|(key, (port, overlay))| ArrivingFlow {
            port,
            overlay,
            proto: key.proto,
            src: key.src,
            dst: key.dst,
            sport: key.sport,
            dport: key.dport,
        })
}
