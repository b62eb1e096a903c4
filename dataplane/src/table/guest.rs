//! What the router's own services tell a VM about itself (DHCP's host
//! name), by (tenant, address). Read by the service thread, never by the
//! per-packet path.

/// A tenant's DNS service.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TenantDns {
    /// The domain its VMs' host names are in, without the final dot.
    pub domain: String,
    /// Resolvers for other names, asked through the tenant's source NAT.
    pub upstreams: Vec<std::net::Ipv4Addr>,
}

/// One VM, as its services describe it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Guest {
    /// Its host name (DHCP option 12, DNS).
    pub hostname: Option<String>,
    /// What the metadata service tells a local VM.
    pub instance_id: Option<String>,
    pub user_data: Option<String>,
    pub public_keys: Vec<String>,
}
