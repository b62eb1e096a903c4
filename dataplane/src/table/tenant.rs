use crate::conntrack::ShareLimits;
use crate::wire::EthernetAddress;
use std::net::Ipv4Addr;

/// A tenant's fair shares of each worker (None: the defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    /// Sessions, new sessions a second, fragments in reassembly.
    pub shares: ShareLimits,
    /// ICMP errors the router sends for the tenant a second.
    pub icmp_errors_per_second: Option<u32>,
    /// ARP replies the router sends for the tenant a second.
    pub arp_replies_per_second: Option<u32>,
    /// Requests the router's services answer for the tenant a second
    /// (`service::REQUESTS_PER_TENANT_SECOND` if unset).
    pub service_requests_per_second: Option<u32>,
    /// The same for each of its ports (`service::REQUESTS_PER_PORT_SECOND`).
    pub service_requests_per_port_second: Option<u32>,
}
/// A tenant: one VRF, one VNI on the overlay.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub vni: u32,
    /// Source MAC of frames the router sends into the overlay; the same on
    /// every host, as a distributed gateway's.
    pub router_mac: EthernetAddress,
    /// Gateway addresses of this tenant on this host, in port order. The
    /// first one sources ICMP errors for packets that came from the overlay.
    pub gateways: Vec<Ipv4Addr>,
    pub limits: TenantLimits,
}

impl Tenant {
    pub fn new(name: impl Into<String>, vni: u32, router_mac: EthernetAddress) -> Self {
        Tenant {
            name: name.into(),
            vni,
            router_mac,
            gateways: Vec::new(),
            limits: TenantLimits::default(),
        }
    }

    /// The placeholder at an id no tenant holds (ids are stable, so the
    /// tables have holes where tenants were deleted): no name, no VNI,
    /// nothing classifies into it.
    pub fn vacant() -> Self {
        Tenant::new("", 0, EthernetAddress([0; 6]))
    }

    pub fn is_vacant(&self) -> bool {
        self.name.is_empty()
    }

    pub fn is_gateway(&self, ip: Ipv4Addr) -> bool {
        self.gateways.contains(&ip)
    }

    /// The default router MAC for a VNI: locally administered `02:78:76`
    /// ("xv") followed by the 24-bit VNI, so every host derives the same.
    pub fn default_router_mac(vni: u32) -> EthernetAddress {
        let v = vni.to_be_bytes();
        EthernetAddress([0x02, 0x78, 0x76, v[1], v[2], v[3]])
    }
}
