//! The pipeline: stages in the style of VPP graph nodes, each a plain
//! function over the whole batch that handles the frames waiting for it.
//! Frames only move forward (ingress -> l2 -> l3 -> encap), so one pass
//! over the stages finishes every frame.
mod acl;
mod arp;
mod encap;
mod flow;
pub mod fragment;
mod icmp;
mod ingress;
mod ipv4;
mod l2;
mod l3;
mod nat;
mod offer;
mod offload;
pub mod owner;
mod replies;
mod security;
mod session;
mod stats;

pub use offer::{Around, ArrivingFlow, FlowOffload, Offer, INSTALLS_PER_SECOND};
pub use stats::{DropReason, Event, Stats};

use crate::conntrack::{self, Conntrack};
use crate::frame::Frame;
use crate::table::{PortId, Tables, TenantId, Tier, VtepId};
pub(crate) use crate::wire::{byte, put, u16_at, u32_at};
use fragment::Fragments;
use owner::Workers;

/// The stage a frame waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Ingress,
    /// To a public address: reverse NAT (a session's reply, or a port
    /// forward or static NAT opening one), then L3.
    Unsnat,
    L2,
    L3,
    /// To the internet from a tenant with source NAT (the uplink is
    /// already the verdict).
    Snat,
    Encap,
    Done,
}

/// A set of stages, as bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stages(u8);

impl Stages {
    #[inline]
    pub(crate) fn has(self, stage: Stage) -> bool {
        self.0 & 1 << stage as u8 != 0
    }
}

impl Stage {
    /// The stages some frame of `frames` waits at.
    #[inline]
    pub(crate) fn waiting(frames: &[Frame<'_>]) -> Stages {
        Stages(
            frames
                .iter()
                .fold(0, |set, f| set | 1u8 << f.meta.stage as u8),
        )
    }
}

/// What happens to a frame once the pipeline is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pending,
    /// Transmit on this port.
    Tx(PortId),
    Drop(DropReason),
    /// Not ours: hand it to the kernel (XDP_PASS on the live path).
    Kernel,
    /// For the router's own services (DHCP): the worker posts a copy to
    /// the service thread (`crate::service`).
    Local,
    /// Its NAT session belongs to worker `to`, which resumes it at
    /// `resume` (see `owner` and `crate::handoff`).
    Handoff {
        to: u16,
        resume: Stage,
    },
}

/// The bytes after the Ethernet header (empty if there are none): for
/// modules that read packets without indexing (a short frame then fails
/// their length checks, never panics).
#[inline]
pub(crate) fn after_ethernet(frame: &[u8]) -> &[u8] {
    frame.get(crate::wire::ETH_HEADER_LEN..).unwrap_or_default()
}

/// `after_ethernet`, writable.
#[inline]
pub(crate) fn after_ethernet_mut(frame: &mut [u8]) -> &mut [u8] {
    frame
        .get_mut(crate::wire::ETH_HEADER_LEN..)
        .unwrap_or_default()
}

/// An answer of the router's own that a tenant's share limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    IcmpError,
    Arp,
}

/// Per-frame state carried between stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub in_port: PortId,
    pub tenant: TenantId,
    /// The VTEP the frame came from, when it arrived over the overlay.
    pub from_vtep: Option<VtepId>,
    /// The VTEP to encapsulate toward, when `stage` is `Encap`.
    pub to_vtep: VtepId,
    pub stage: Stage,
    pub verdict: Verdict,
    /// Came in through NAT: its NAT session, not the tier ACLs, decides.
    pub translated: bool,
    /// `tenant` is known (the frame was classified into a tenant).
    pub classified: bool,
    /// The router made this frame its answer (an ICMP error, an ARP
    /// reply), which its tenant's share limits.
    pub reply: Option<Reply>,
    /// The tier the frame was sent from: its VM port's subnet, or over the
    /// overlay its source VM's tier. None: not from a VM (routed by a
    /// remote router, or from the uplink). Bridging stays inside it.
    pub src_tier: Option<Tier>,
    /// The session the frame belongs to, and its direction, once NAT or
    /// the tier ACLs found or opened it (for `offer`).
    pub session: Option<(conntrack::SessionId, conntrack::Dir)>,
}

impl Meta {
    pub const fn new(in_port: PortId) -> Self {
        Meta {
            in_port,
            tenant: 0,
            from_vtep: None,
            to_vtep: 0,
            stage: Stage::Ingress,
            verdict: Verdict::Pending,
            translated: false,
            classified: false,
            reply: None,
            src_tier: None,
            session: None,
        }
    }

    /// The frame belongs to `tenant` from here on.
    #[inline]
    pub(crate) fn classify(&mut self, tenant: TenantId) {
        self.tenant = tenant;
        self.classified = true;
    }

    #[inline]
    pub(crate) fn drop(&mut self, stats: &mut Stats, reason: DropReason) {
        stats.drop(reason);
        self.stage = Stage::Done;
        self.verdict = Verdict::Drop(reason);
    }

    #[inline]
    pub(crate) fn tx(&mut self, port: PortId) {
        self.stage = Stage::Done;
        self.verdict = Verdict::Tx(port);
    }

    #[inline]
    pub(crate) fn encap(&mut self, vtep: VtepId) {
        self.stage = Stage::Encap;
        self.to_vtep = vtep;
    }

    /// Leaves the frame to the router's services.
    #[inline]
    pub(crate) fn hand_to_services(&mut self, stats: &mut Stats) {
        stats.event(Event::ToService);
        self.stage = Stage::Done;
        self.verdict = Verdict::Local;
    }

    /// Leaves the frame to worker `to`, which goes on from this stage.
    #[inline]
    pub(crate) fn handoff(&mut self, to: u16) {
        self.verdict = Verdict::Handoff {
            to,
            resume: self.stage,
        };
        self.stage = Stage::Done;
    }

    /// Sends a reply back where the frame came from: out of its port, or
    /// back into the overlay toward the VTEP that sent it.
    #[inline]
    pub(crate) fn bounce(&mut self) {
        match self.from_vtep {
            Some(vtep) => self.encap(vtep),
            None => self.tx(self.in_port),
        }
    }
}

/// One worker's pipeline: the stages, their counters, and the worker's
/// connection-tracking sessions.
pub struct Pipeline {
    pub stats: Stats,
    pub conntrack: Conntrack,
    /// The worker's clock in seconds, for session timeouts; the worker
    /// (or a test) sets it.
    pub now: u32,
    /// Which worker this is, for NAT flow ownership.
    pub workers: Workers,
    /// The tables generation whose tenant limits are in force.
    limits_of: u32,
    /// Each tenant's share of the ICMP errors and ARP replies sent.
    replies: replies::Replies,
    /// Later fragments of packets cut for the overlay, for the worker to
    /// send after the batch.
    pub fragments: Fragments,
    /// Where established flows are offered to the fast path (None: they
    /// stay with the workers).
    pub offload: Option<Box<dyn FlowOffload>>,
    arrivals: Box<offer::Arrivals>,
}

/// What `Pipeline::restore_sessions` made of the saved sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub restored: usize,
    /// Their tenant, or the NAT rule that made them, is gone.
    pub gone: usize,
    /// No room, or in conflict with one restored before.
    pub refused: usize,
}

/// Sessions of `Pipeline::new()`'s table.
const SMALL_SESSION_TABLE: u32 = 4096;

impl Default for Pipeline {
    /// A pipeline with a small session table (for replay and tests);
    /// workers size theirs from the configuration (`with_conntrack`).
    fn default() -> Self {
        Self::with_conntrack(conntrack::Config {
            max_sessions: SMALL_SESSION_TABLE,
            ..conntrack::Config::default()
        })
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("stats", &self.stats)
            .field("sessions", &self.conntrack.len())
            .field("now", &self.now)
            .finish()
    }
}

/// Expired sessions removed per batch at most, so a mass expiry is spread
/// over batches.
const EXPIRY_BUDGET: usize = 64;

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_conntrack(config: conntrack::Config) -> Self {
        Pipeline {
            stats: Stats::default(),
            conntrack: Conntrack::new(config),
            now: 0,
            workers: Workers::default(),
            limits_of: 0,
            replies: replies::Replies::default(),
            fragments: Fragments::default(),
            offload: None,
            arrivals: Box::default(),
        }
    }

    /// Takes the flows of offloaded sessions that closed or went out of
    /// the fast path. The pipeline does so after each batch; the worker
    /// after it flushed a tenant's sessions.
    pub fn withdraw_closed(&mut self, tables: &Tables) {
        let Some(sink) = &mut self.offload else {
            return;
        };
        for s in self.conntrack.take_withdrawn() {
            for flow in offer::offloaded_flows(tables, &s) {
                sink.withdraw(&flow);
            }
        }
    }

    /// Expires the sessions due, within the budget; an offloaded one
    /// lives on while the fast path forwards it.
    fn expire(&mut self, tables: &Tables) -> usize {
        let (now, ct) = (self.now, &mut self.conntrack);
        match &mut self.offload {
            None => ct.expire(now, EXPIRY_BUDGET),
            Some(sink) => ct.expire_offloaded(now, EXPIRY_BUDGET, |s| {
                offer::offloaded_flows(tables, s)
                    .filter_map(|flow| sink.idle_for(&flow))
                    .min()
            }),
        }
    }

    /// New tables: their tenants' limits (ids are stable, so counts carry
    /// over), and offloaded flows offered anew (`renew_offloads`).
    fn follow_limits(&mut self, tables: &Tables) {
        if self.limits_of != tables.generation() {
            self.limits_of = tables.generation();
            if self.offload.is_some() {
                self.conntrack.renew_offloads();
            }
            let shares = tables.tenants().iter().map(|t| t.limits.shares).collect();
            self.conntrack.set_share_limits(shares);
        }
    }

    /// Tracks the sessions a previous process saved again, those whose
    /// tenant and NAT rule `tables` still have, and tells how many came
    /// back.
    pub fn restore_sessions(&mut self, tables: &Tables, saved: &[conntrack::Saved]) -> Restored {
        self.follow_limits(tables);
        let mut r = Restored::default();
        let nat = tables.nat();
        for s in saved {
            let zone = s.inside.zone;
            let ports = match (s.allocated, nat.source(zone)) {
                (true, Some(snat)) if snat.ip == s.nat_ip => self.workers.port_block(snat.ports),
                (true, _) => None,
                (false, _) => Some((0, 0)),
            };
            let public = s.routed || nat.owner(s.nat_ip) == Some(zone);
            let Some(ports) = ports.filter(|_| tables.tenant(zone).is_some() && public) else {
                r.gone += 1;
                continue;
            };
            let ports = s.allocated.then_some(ports);
            match self.conntrack.restore(s, ports, self.now) {
                Ok(_) => r.restored += 1,
                Err(_) => r.refused += 1,
            }
        }
        r
    }

    /// Runs a batch through every stage. Each frame ends with a verdict;
    /// frames to transmit have been rewritten in place.
    pub fn run(&mut self, tables: &Tables, frames: &mut [Frame<'_>]) {
        self.run_observed(tables, frames, |_, _| {});
    }

    /// `run`, calling `observe` with each stage's name and the batch after
    /// it (for `trace`: a no-op closure costs nothing in `run`).
    pub fn run_observed(
        &mut self,
        tables: &Tables,
        frames: &mut [Frame<'_>],
        mut observe: impl FnMut(&'static str, &[Frame<'_>]),
    ) {
        self.follow_limits(tables);
        let answered = |s: &Stats| s.events_of(Event::IcmpErrorSent) + s.events_of(Event::ArpReply);
        let answered_before = answered(&self.stats);
        let expired = self.expire(tables);
        for _ in 0..expired {
            self.stats.event(Event::SessionExpired);
        }
        if self.offload.is_some() {
            self.arrivals.note(frames);
        }
        let (ct, now, stats) = (&mut self.conntrack, self.now, &mut self.stats);
        let workers = &self.workers;
        ingress::run(tables, frames, stats);
        observe("ingress", frames);
        // A stage with no frame waiting is skipped: a scan of the batch
        // costs about 7 instructions a frame, each stage's own filter
        // more (callgrind: about 35 a frame on the bridged paths).
        let waiting = Stage::waiting(frames);
        if waiting.has(Stage::L2) {
            nat::run_shortcut(tables, frames, ct, now, stats);
        }
        observe("nat_shortcut", frames);
        if waiting.has(Stage::Unsnat) {
            nat::run::<nat::In>(tables, frames, ct, now, workers, stats);
        }
        observe("nat_in", frames);
        l2::run(tables, frames, stats);
        observe("l2", frames);
        let waiting = Stage::waiting(frames);
        if waiting.has(Stage::L3) || waiting.has(Stage::Snat) {
            l3::run(tables, frames, l3::Sessions { ct, now, workers }, stats);
            observe("l3", frames);
            nat::run::<nat::Out>(tables, frames, ct, now, workers, stats);
            observe("nat_out", frames);
            if nat::hairpin::any_turned_back(frames) {
                // Hairpinned frames: in through reverse NAT, routed inside.
                nat::run::<nat::In>(tables, frames, ct, now, workers, stats);
                observe("nat_in (hairpin)", frames);
                l3::run(tables, frames, l3::Sessions { ct, now, workers }, stats);
                observe("l3 (hairpin)", frames);
                nat::run::<nat::Out>(tables, frames, ct, now, workers, stats);
                observe("nat_out (hairpin)", frames);
            }
        } else {
            observe("l3", frames);
            observe("nat_out", frames);
        }
        if waiting.has(Stage::Encap) || waiting.has(Stage::L3) || waiting.has(Stage::Snat) {
            encap::run(tables, frames, &mut self.fragments, stats);
        }
        observe("encap", frames);
        if answered(stats) != answered_before {
            self.replies.police(tables, frames, now, stats);
        }
        if let Some(sink) = &mut self.offload {
            self.arrivals
                .offer(tables, frames, (ct, now), sink.as_mut());
        }
        self.withdraw_closed(tables);
    }
}
