//! Opening and following connection-tracking sessions from the stages
//! that keep them (NAT and the tier ACLs): which packets may open one,
//! how a refusal is named, and how a first fragment hands its session to
//! the fragments after it.
use super::flow::{ICMP_ECHO_REQUEST, L4};
use super::DropReason;
use crate::conntrack::{self, Conntrack, FragKey, SessionId, SetupError, ICMP};

/// The state a session opened by this packet starts in, if it may open
/// one: a bare TCP SYN, any UDP, an ICMP echo request.
pub(super) fn opening_state(l4: &L4) -> Result<conntrack::State, DropReason> {
    if l4.proto == ICMP && l4.icmp_type != ICMP_ECHO_REQUEST {
        return Err(DropReason::NatNoSession);
    }
    conntrack::initial(l4.proto, l4.tcp_flags).ok_or(DropReason::NatNoSession)
}

pub(super) fn setup_error(e: SetupError) -> DropReason {
    match e {
        SetupError::Full => DropReason::ConntrackFull,
        SetupError::PortsExhausted => DropReason::NatPortsExhausted,
        SetupError::TenantFull => DropReason::TenantSessionLimit,
        SetupError::TenantRate => DropReason::TenantSessionRate,
    }
}

/// After a first fragment found or opened session `id`: if `more`
/// fragments follow, they (found by `frag`, the key they will arrive
/// with) follow the same session.
pub(super) fn note_first_fragment(
    frag: FragKey,
    more: bool,
    id: SessionId,
    ct: &mut Conntrack,
    now: u32,
) -> Result<(), DropReason> {
    if !more {
        return Ok(());
    }
    ct.note_fragments(frag, id, now).map_err(|e| match e {
        SetupError::TenantFull => DropReason::TenantFragmentLimit,
        _ => DropReason::NatFragmentTableFull,
    })
}
