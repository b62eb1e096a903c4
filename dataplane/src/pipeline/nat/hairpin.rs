//! Hairpinning: a VM reaching one of this host's own public addresses
//! (its tenant's or another tenant's). Translated on the way out, the
//! frame comes straight back in as if from the internet, so the rules of
//! both ends hold, and the pipeline runs it through reverse NAT and l3
//! again. Whether a session hairpins is decided once, when it opens, and
//! kept in the session: not looked up per packet.
use crate::conntrack::{Conntrack, SessionId};
use crate::frame::Frame;
use crate::pipeline::{Event, Stage, Stats};
use crate::table::NatTable;
use std::net::Ipv4Addr;

/// Marks session `id` as hairpinned if its far end (`far`, the address
/// on the public side as the session opened) is one of this host's
/// public addresses.
pub(super) fn mark_if_local(nat: &NatTable, ct: &mut Conntrack, id: SessionId, far: Ipv4Addr) {
    if nat.owner(far).is_some() {
        ct.mark_hairpin(id);
    }
}

/// Sends a translated frame of a hairpinned session back in.
pub(super) fn turn_back_in(frame: &mut Frame<'_>, stats: &mut Stats) {
    stats.event(Event::Hairpin);
    frame.meta.stage = Stage::Unsnat;
}

/// Whether `nat_out` turned any of `frames` back in.
pub(crate) fn any_turned_back(frames: &[Frame<'_>]) -> bool {
    frames.iter().any(|f| f.meta.stage == Stage::Unsnat)
}
