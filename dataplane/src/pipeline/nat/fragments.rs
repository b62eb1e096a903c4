//! Later fragments through NAT (RFC 791: no ports): each follows the
//! session its first fragment found or opened, translated by address
//! only (the transport checksum, in the first fragment, already covers
//! the change).
use super::{inward, out_of_uplink};
use crate::conntrack::{Conntrack, SessionId, PUBLIC};
use crate::frame::Frame;
use crate::pipeline::flow::{self, field, FlowEnd};
use crate::pipeline::owner::Workers;
use crate::pipeline::{DropReason, Event, Stage, Stats};
use crate::table::{Tables, TenantId};

/// The later fragments still waiting at `stage` (`Snat` out, `Unsnat`
/// in), once the first fragments of the batch have noted their sessions
/// (fragments of one packet usually arrive in the same batch).
pub(super) fn later_fragments(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    stage: Stage,
    ct: &Conntrack,
    now: u32,
    workers: &Workers,
    stats: &mut Stats,
) {
    let outbound = stage == Stage::Snat;
    for frame in frames.iter_mut().filter(|f| f.meta.stage == stage) {
        let zone = frame.meta.tenant;
        let ip = flow::ip_packet(frame);
        if !workers.is_single() {
            // Its first fragment is in another worker's batch: the
            // owner may have been noted since this batch was read.
            let at = if outbound { zone } else { PUBLIC };
            let owner = workers.of_fragment(&flow::frag_key(ip, at));
            if let Some(owner) = owner.filter(|&o| o != workers.me) {
                frame.meta.handoff(owner);
                continue;
            }
        }
        let result = match outbound {
            true => later_fragment(ip, zone, ct, now, FlowEnd::Source).map(|_| zone),
            false => later_fragment(ip, PUBLIC, ct, now, FlowEnd::Destination).and_then(|id| {
                let s = ct.session(id).ok_or(DropReason::NatNoSession)?;
                Ok(s.inside.zone)
            }),
        };
        match result {
            Ok(_) if outbound => {
                out_of_uplink(tables, &mut frame.meta, stats);
                stats.event(Event::Snat);
            }
            Ok(tenant) => {
                inward(&mut frame.meta, tenant);
                stats.event(Event::Unsnat);
            }
            Err(reason) => frame.meta.drop(stats, reason),
        }
    }
}

/// Translates a later fragment that arrived in `zone` like its first
/// fragment: the address of `end` only. Returns the session.
fn later_fragment(
    ip: &mut [u8],
    zone: TenantId,
    ct: &Conntrack,
    now: u32,
    end: FlowEnd,
) -> Result<SessionId, DropReason> {
    let id = ct
        .fragment_session(&flow::frag_key(ip, zone), now)
        .ok_or(DropReason::NatFragment)?;
    let s = ct.session(id).ok_or(DropReason::NatFragment)?;
    let addr = match end {
        FlowEnd::Source => s.nat_ip,
        FlowEnd::Destination => s.inside.src,
    };
    flow::set_addr(ip, end.addr_at(), addr, field::CHECKSUM);
    Ok(id)
}
