//! What identifies a flow: its zone (a tenant's VRF, or the public side
//! where NAT addresses live), protocol, addresses and ports. ICMP echo
//! uses its identifier as both ports, so a request and its reply map to
//! keys of the same shape.
use crate::table::TenantId;
use std::net::Ipv4Addr;

/// The zone of the public side: the internet, where the tenants' public
/// NAT addresses are. Not a tenant id (tenant ids stay below it).
pub const PUBLIC: TenantId = TenantId::MAX;

pub use crate::wire::ipv4::{ICMP, TCP, UDP};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub zone: TenantId,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}
