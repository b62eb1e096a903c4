//! Hosts (VMs) of each tenant, by IP and by MAC. A host is either on a local
//! port (a neighbor) or behind a remote VTEP; one lookup answers both, so
//! routing and ARP need no second table. Keys pack the tenant into the
//! high bits of a `u64`, so an entry of one tenant never matches another's.
use super::FastMap;
use super::{PortId, TenantId, VtepId};
use crate::wire::EthernetAddress;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// A tier: one L2 domain inside a tenant, named by its subnet (the
/// gateway subnet of its VM ports). Frames are bridged only inside a
/// tier; between tiers they are routed, through the tiers' ACLs.
pub type Tier = Ipv4Net;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Local(PortId),
    Remote(VtepId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub mac: EthernetAddress,
    pub location: Location,
    pub tier: Tier,
}

/// A VM as its MAC finds it: where it is, its address and its tier (what
/// a frame from that MAC must match, and where a frame to it may go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub location: Location,
    pub ip: Ipv4Addr,
    pub tier: Tier,
}

#[derive(Debug, Default, Clone)]
pub struct HostTable {
    map: FastMap<u64, Host>,
}

fn ip_key(tenant: TenantId, ip: Ipv4Addr) -> u64 {
    (u64::from(tenant) << 32) | u64::from(u32::from(ip))
}

impl HostTable {
    pub fn insert(&mut self, tenant: TenantId, ip: Ipv4Addr, host: Host) -> Option<Host> {
        self.map.insert(ip_key(tenant, ip), host)
    }

    #[inline]
    pub fn get(&self, tenant: TenantId, ip: Ipv4Addr) -> Option<&Host> {
        self.map.get(&ip_key(tenant, ip))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (TenantId, Ipv4Addr, &Host)> {
        self.map
            .iter()
            .map(|(k, h)| ((k >> 32) as TenantId, Ipv4Addr::from(*k as u32), h))
    }
}

/// Where a destination MAC leads inside a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Dest {
    /// One of the router's own MACs: route the packet.
    Router,
    Host(Endpoint),
}

#[derive(Debug, Default, Clone)]
pub struct L2Table {
    map: FastMap<u64, L2Dest>,
}

fn mac_key(tenant: TenantId, mac: EthernetAddress) -> u64 {
    let m = mac.0;
    (u64::from(tenant) << 48) | u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

impl L2Table {
    pub fn insert(&mut self, tenant: TenantId, mac: EthernetAddress, dest: L2Dest) {
        self.map.insert(mac_key(tenant, mac), dest);
    }

    #[inline]
    pub fn get(&self, tenant: TenantId, mac: EthernetAddress) -> Option<L2Dest> {
        self.map.get(&mac_key(tenant, mac)).copied()
    }
}
