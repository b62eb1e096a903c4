use super::TenantId;
use crate::wire::EthernetAddress;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// A local port: the uplink toward the underlay, or the router's side of a
/// VM's interface.
#[derive(Debug, Clone)]
pub struct Port {
    pub name: String,
    /// The router's own MAC on this port.
    pub mac: EthernetAddress,
    pub role: PortRole,
}

#[derive(Debug, Clone, Copy)]
pub enum PortRole {
    Uplink {
        /// The local VTEP address on the underlay.
        ip: Ipv4Addr,
        /// Next hop toward the internet for tenants' `internet` routes.
        internet_gateway_mac: Option<EthernetAddress>,
        /// Largest IPv4 packet the underlay carries. Encapsulated frames
        /// must fit: an inner IPv4 packet may be `mtu - VXLAN_OVERHEAD`.
        mtu: u16,
    },
    Vm {
        tenant: TenantId,
        /// The gateway address on this port and its subnet (`10.0.0.1/24`).
        gateway: Ipv4Net,
    },
}

impl Port {
    pub fn tenant(&self) -> Option<TenantId> {
        match self.role {
            PortRole::Vm { tenant, .. } => Some(tenant),
            PortRole::Uplink { .. } => None,
        }
    }

    pub fn is_uplink(&self) -> bool {
        matches!(self.role, PortRole::Uplink { .. })
    }
}
