//! NAT configuration: each tenant's source NAT (the public address its
//! internet traffic leaves from, and the port range to allocate from),
//! static 1:1 NAT (a public address that is one VM's, all ports, both
//! ways), port forwards (a public address, protocol and port to a VM's
//! port), and which tenant owns each public address.
use super::{FastMap, TenantId};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceNat {
    pub ip: Ipv4Addr,
    /// First and last public port (inclusive).
    pub ports: (u16, u16),
    pub filtering: Filtering,
}

/// Which packets from the internet reach an inside endpoint through its
/// mapping (RFC 4787 section 5), besides the replies of its sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Filtering {
    /// From anyone (REQ-8's first recommendation: what peer-to-peer
    /// applications need).
    EndpointIndependent,
    /// From any port of an address the endpoint sent to.
    AddressDependent,
    /// Only from an address and port the endpoint sent to: replies alone.
    #[default]
    AddressAndPortDependent,
}

/// Where a public address and port lead inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inside {
    pub tenant: TenantId,
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(Debug, Clone, Default)]
pub struct NatTable {
    /// Per tenant id.
    source: Vec<Option<SourceNat>>,
    /// Per tenant id: whether its internet traffic goes through NAT.
    translated: Vec<bool>,
    owners: FastMap<Ipv4Addr, TenantId>,
    static_by_public: FastMap<Ipv4Addr, (TenantId, Ipv4Addr)>,
    static_by_vm: FastMap<(TenantId, Ipv4Addr), Ipv4Addr>,
    forwards: FastMap<(Ipv4Addr, u8, u16), Inside>,
}

impl NatTable {
    #[inline]
    pub fn source(&self, tenant: TenantId) -> Option<&SourceNat> {
        self.source.get(usize::from(tenant))?.as_ref()
    }

    /// Whether the tenant's traffic to the internet is translated (it has
    /// source NAT, static NAT or port forwards).
    #[inline]
    pub fn translates(&self, tenant: TenantId) -> bool {
        self.translated
            .get(usize::from(tenant))
            .copied()
            .unwrap_or(false)
    }

    /// The tenant that owns public address `ip`.
    #[inline]
    pub fn owner(&self, ip: Ipv4Addr) -> Option<TenantId> {
        self.owners.get(&ip).copied()
    }

    /// Every public address, with its tenant.
    pub fn public_addrs(&self) -> impl Iterator<Item = (Ipv4Addr, TenantId)> + '_ {
        self.owners.iter().map(|(ip, t)| (*ip, *t))
    }

    /// The VM a static-NAT public address stands for.
    #[inline]
    pub fn static_of_public(&self, public: Ipv4Addr) -> Option<(TenantId, Ipv4Addr)> {
        self.static_by_public.get(&public).copied()
    }

    /// The static-NAT public address of a VM.
    #[inline]
    pub fn static_of_vm(&self, tenant: TenantId, vm: Ipv4Addr) -> Option<Ipv4Addr> {
        self.static_by_vm.get(&(tenant, vm)).copied()
    }

    /// The port forward for a public address, protocol and port.
    #[inline]
    pub fn forward(&self, public: Ipv4Addr, proto: u8, port: u16) -> Option<Inside> {
        self.forwards.get(&(public, proto, port)).copied()
    }

    fn mark(&mut self, tenant: TenantId, public: Ipv4Addr) {
        let i = usize::from(tenant);
        if self.translated.len() <= i {
            self.translated.resize(i + 1, false);
        }
        if let Some(translated) = self.translated.get_mut(i) {
            *translated = true;
        }
        self.owners.insert(public, tenant);
    }

    pub(super) fn set_source(&mut self, tenant: TenantId, snat: SourceNat) {
        let i = usize::from(tenant);
        if self.source.len() <= i {
            self.source.resize(i + 1, None);
        }
        if let Some(source) = self.source.get_mut(i) {
            *source = Some(snat);
        }
        self.mark(tenant, snat.ip);
    }

    pub(super) fn set_static(&mut self, tenant: TenantId, vm: Ipv4Addr, public: Ipv4Addr) {
        self.static_by_public.insert(public, (tenant, vm));
        self.static_by_vm.insert((tenant, vm), public);
        self.mark(tenant, public);
    }

    pub(super) fn add_forward(&mut self, public: Ipv4Addr, proto: u8, port: u16, to: Inside) {
        self.forwards.insert((public, proto, port), to);
        self.mark(to.tenant, public);
    }
}
