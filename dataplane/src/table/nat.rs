//! NAT configuration: each tenant's source NAT (the public address its
//! internet traffic leaves from, and the port range to allocate from),
//! and which tenant owns each public address.
use super::{FastMap, TenantId};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceNat {
    pub ip: Ipv4Addr,
    /// First and last public port (inclusive).
    pub ports: (u16, u16),
}

#[derive(Debug, Default)]
pub struct NatTable {
    /// Per tenant id.
    source: Vec<Option<SourceNat>>,
    owners: FastMap<Ipv4Addr, TenantId>,
}

impl NatTable {
    #[inline]
    pub fn source(&self, tenant: TenantId) -> Option<&SourceNat> {
        self.source.get(usize::from(tenant))?.as_ref()
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

    pub(super) fn set_source(&mut self, tenant: TenantId, snat: SourceNat) {
        let i = usize::from(tenant);
        if self.source.len() <= i {
            self.source.resize(i + 1, None);
        }
        self.source[i] = Some(snat);
        self.owners.insert(snat.ip, tenant);
    }
}
