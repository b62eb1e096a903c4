//! What the router's own services tell a VM about itself (DHCP's host
//! name), by (tenant, address). Read by the service thread, never by the
//! per-packet path.

/// One local VM, as its services describe it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Guest {
    /// Its host name (DHCP option 12).
    pub hostname: Option<String>,
}
