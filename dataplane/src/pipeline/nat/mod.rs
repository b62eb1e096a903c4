//! NAT: source NAT, static 1:1 NAT and port forwarding, both ways.
//!
//! Out (`outbound`: after l3 chose the internet route for a tenant with
//! NAT): the inside flow's session is found or opened, and the source
//! rewritten to the tenant's public address and port. In (`inbound`:
//! ingress saw a frame to a public address): the reply's session is
//! found, or a port forward or static address opens one, the destination
//! is rewritten back to the inside endpoint, and l3 routes it in the
//! tenant's VRF. ICMP errors about translated flows (`icmp_error`) and
//! later fragments (`fragments`) follow their flow's session; a flow to
//! one of this host's own public addresses turns back in (`hairpin`). The
//! shortcut (`shortcut`) sends established flows out without l2 and l3.
//! Checksums are updated incrementally (RFC 1624).
use super::flow::L4;
use super::owner::Workers;
use super::{DropReason, Meta, Stage, Stats};
use crate::conntrack::{Conntrack, Dir, FlowKey, SessionId};
use crate::frame::{Frame, BATCH_SIZE};
use crate::table::{Tables, TenantId};
use arrayvec::ArrayVec;
use std::marker::PhantomData;

mod fragments;
pub(crate) mod hairpin;
mod icmp_error;
mod inbound;
mod outbound;
mod shortcut;

pub(crate) use inbound::In;
pub(crate) use outbound::Out;
pub(crate) use shortcut::run_out as run_shortcut;

/// One direction of translation (`Nat<In>`: frames to a public address;
/// `Nat<Out>`: frames l3 sent toward the internet) over one batch.
pub(crate) struct Nat<'a, D> {
    tables: &'a Tables,
    now: u32,
    workers: &'a Workers,
    direction: PhantomData<D>,
}

/// Translates the frames waiting at direction `D`'s stage, then the later
/// fragments of the flows it translated.
pub(crate) fn run<D>(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    ct: &mut Conntrack,
    now: u32,
    workers: &Workers,
    stats: &mut Stats,
) where
    for<'a> Nat<'a, D>: Translator,
{
    let mut nat = Nat {
        tables,
        now,
        workers,
        direction: PhantomData,
    };
    run_batched(frames, ct, stats, &mut nat);
    let stage = <Nat<'_, D> as Translator>::STAGE;
    fragments::later_fragments(tables, frames, stage, ct, now, workers, stats);
}

/// A frame's flow, read in the first pass.
pub(super) struct Pending {
    pub(super) l4: L4,
    pub(super) key: FlowKey,
    pub(super) found: Option<(SessionId, Dir)>,
}

/// One direction of translation, as `run_batched` drives it.
pub(crate) trait Translator {
    /// The stage whose frames it takes.
    const STAGE: Stage;

    /// Reads a frame's flow. `None`: the frame is dealt with already
    /// (handed to another worker, a later fragment left for after the
    /// batch, an ICMP error translated).
    fn read(
        &mut self,
        frame: &mut Frame<'_>,
        ct: &Conntrack,
        stats: &mut Stats,
    ) -> Result<Option<(L4, FlowKey)>, DropReason>;

    /// `key` has no session yet: start loading what opening one reads.
    fn missed(&self, _ct: &Conntrack, _key: &FlowKey) {}

    /// Translates a frame whose session lookup is done.
    fn translate(
        &mut self,
        frame: &mut Frame<'_>,
        p: Pending,
        ct: &mut Conntrack,
        stats: &mut Stats,
    ) -> Result<(), DropReason>;
}

/// Runs `t` over the frames waiting at its stage, in passes: read every
/// frame's flow, look them all up (each index slot prefetched a few
/// lookups ahead, each session found prefetched at once, so it loads
/// while the rest of the batch is looked up), then translate. With a
/// million sessions a lookup is mostly cache misses; this way the
/// batch's misses overlap instead of following one another
/// (`conntrack/established_1m_sessions`).
fn run_batched<T: Translator>(
    frames: &mut [Frame<'_>],
    ct: &mut Conntrack,
    stats: &mut Stats,
    t: &mut T,
) {
    for chunk in frames.chunks_mut(BATCH_SIZE) {
        // Only the frames at the stage, by position (not initialised up
        // front: a 64-slot array would cost a memset per batch).
        let mut pending: ArrayVec<(usize, Pending, usize), BATCH_SIZE> = ArrayVec::new();
        for (i, frame) in chunk.iter_mut().enumerate() {
            if frame.meta.stage != T::STAGE {
                continue;
            }
            match t.read(frame, ct, stats) {
                Ok(Some((l4, key))) => {
                    let home = ct.home(&key);
                    let found = None;
                    pending.push((i, Pending { l4, key, found }, home));
                }
                Ok(None) => {}
                Err(reason) => frame.meta.drop(stats, reason),
            }
        }
        // Prefetches run PREFETCH_AHEAD items ahead of their use: issued
        // all at once, 64 overflow the core's miss buffers and the lookups
        // miss one by one; too few ahead, a lookup waits on DRAM.
        for (_, _, home) in pending.iter().take(PREFETCH_AHEAD) {
            ct.prefetch_home(*home);
        }
        for j in 0..pending.len() {
            if let Some((_, _, home)) = pending.get(j + PREFETCH_AHEAD) {
                ct.prefetch_home(*home);
            }
            if let Some((_, p, home)) = pending.get_mut(j) {
                p.found = ct.lookup_from(&p.key, *home);
                match p.found {
                    Some((id, _)) => ct.prefetch(id),
                    None => t.missed(ct, &p.key),
                }
            }
        }
        for (i, p, _) in pending {
            let Some(frame) = chunk.get_mut(i) else {
                continue;
            };
            if let Err(reason) = t.translate(frame, p, ct, stats) {
                frame.meta.drop(stats, reason);
            }
        }
    }
}

/// How far ahead of its use a batch's lookup prefetches its memory:
/// about a DRAM latency's worth of lookups (`xvr-ct-scale`: 24 did better
/// than 8, 16 and 32; docs/performance.md).
const PREFETCH_AHEAD: usize = 24;

/// Sends a translated frame out of the uplink (l3 routed it there).
fn out_of_uplink(tables: &Tables, meta: &mut Meta, stats: &mut Stats) {
    match tables.uplink() {
        Some((uplink, _)) => meta.tx(uplink),
        None => meta.drop(stats, DropReason::NoUplink),
    }
}

/// A frame translated on its way in: routed in `tenant`'s VRF, where its
/// NAT session (not the tier ACLs) stands for it.
fn inward(meta: &mut Meta, tenant: TenantId) {
    meta.classify(tenant);
    meta.stage = Stage::L3;
    meta.translated = true;
}
