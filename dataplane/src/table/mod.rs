//! The immutable tables snapshot that the pipeline reads. The control plane
//! validates a desired state and builds a `Tables` with `TablesBuilder`; the
//! pipeline only ever reads it. Every lookup that a packet drives is keyed by
//! the tenant, so one tenant can never match another tenant's entries.
mod acl;
mod firewall;
mod guest;
mod host;
mod lpm;
mod nat;
mod port;
mod tenant;
mod vtep;

pub use acl::{TenantAcls, TierAcl};
pub use firewall::{Action, Firewall, Rule, RuleSet};
pub use guest::{Guest, TenantDns};
pub use host::{Endpoint, Host, HostTable, L2Dest, L2Table, Location, Tier};
pub use lpm::{Lpm, NextHop};
pub use nat::{Filtering, Inside, NatTable, SourceNat};
pub use port::{Port, PortRole};
pub use tenant::{Tenant, TenantLimits};
pub use vtep::{Vtep, VtepTable};

use crate::wire::EthernetAddress;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Hash map for lookups keyed by packet fields. FxHash is one multiply per
/// word, far cheaper than a keyed hash (measured: the decap path spent 80
/// instructions per packet in two foldhash lookups). Flooding is no risk:
/// packets only look keys up; only the controller inserts them.
pub type FastMap<K, V> = hashbrown::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// A tenant's identity: its index in `Tables::tenants`, stable for as
/// long as the tenant exists (the control plane assigns it; ids of
/// deleted tenants are vacant). Sessions, NAT mappings, fragments and
/// handed-off frames hold it.
pub type TenantId = u16;

/// Tenant ids a host can hold: every u16 but the one conntrack reserves
/// for the public side (`conntrack::key::PUBLIC`).
pub const MAX_TENANTS: usize = TenantId::MAX as usize;
/// Index of a port in `Tables::ports`.
pub type PortId = u16;
/// Index of a remote VTEP in `VtepTable`.
pub type VtepId = u16;

/// One consistent view of the whole configuration. The large parts are
/// shared (`Arc`, and the VRFs copy on write), so a snapshot that differs
/// in a few routes (`with_routes`) costs little to make.
#[derive(Debug, Default, Clone)]
pub struct Tables {
    tenants: Vec<Tenant>,
    ports: Vec<Port>,
    vni_to_tenant: FastMap<u32, TenantId>,
    vrfs: Vec<Lpm<NextHop>>,
    hosts: Arc<HostTable>,
    l2: Arc<L2Table>,
    vteps: Arc<VtepTable>,
    uplink: Option<PortId>,
    nat: Arc<NatTable>,
    /// Per tenant id.
    firewalls: Arc<Vec<Firewall>>,
    /// Per tenant id: its tiers' network ACLs.
    acls: Arc<Vec<TenantAcls>>,
    /// Per port id: whether the port checks what its VMs send (on unless
    /// the port opts out).
    port_security: Vec<bool>,
    /// Per port id: a VM port's tier (its gateway subnet).
    port_tiers: Vec<Option<Tier>>,
    /// Extra source prefixes VMs may use (allowed address pairs: a VRRP
    /// address several VMs share, the networks a router VM forwards
    /// from), by (tenant, VM MAC).
    allowed: Arc<FastMap<(TenantId, EthernetAddress), Vec<Ipv4Net>>>,
    /// (remote VTEP, tenant) pairs whose VXLAN is accepted: the VTEP hosts
    /// a VM of the tenant.
    members: Arc<hashbrown::HashSet<(VtepId, TenantId), rustc_hash::FxBuildHasher>>,
    /// The host's own networks and addresses (the underlay's subnet among
    /// them): tenants' traffic to the internet may not go there unless
    /// the tenant routes such a prefix by name.
    protected: Arc<Vec<Ipv4Net>>,
    /// Local VMs as the router's services describe them.
    guests: Arc<FastMap<(TenantId, Ipv4Addr), Guest>>,
    /// Per tenant id: its DNS service.
    dns: Arc<FastMap<TenantId, TenantDns>>,
    /// Unique to these tables in this process (never 0): decisions cached
    /// in sessions are valid for one generation.
    generation: u32,
}

impl Tables {
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    pub fn tenant(&self, id: TenantId) -> Option<&Tenant> {
        self.tenants.get(usize::from(id))
    }

    /// The id of the tenant named `name`.
    pub fn tenant_id(&self, name: &str) -> Option<TenantId> {
        let at = self
            .tenants
            .iter()
            .position(|t| t.name == name && !t.is_vacant())?;
        Some(at as TenantId)
    }

    pub fn tenant_by_vni(&self, vni: u32) -> Option<TenantId> {
        self.vni_to_tenant.get(&vni).copied()
    }

    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    pub fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(usize::from(id))
    }

    pub fn port_by_name(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as PortId)
    }

    /// The largest inner IPv4 packet that fits the uplink once
    /// encapsulated, or `None` without an uplink.
    #[inline]
    pub fn overlay_ip_mtu(&self) -> Option<usize> {
        match self.uplink()?.1.role {
            PortRole::Uplink { mtu, .. } => {
                Some(usize::from(mtu).saturating_sub(crate::wire::VXLAN_OVERHEAD))
            }
            PortRole::Vm { .. } => None,
        }
    }

    /// The uplink port, if one is configured.
    pub fn uplink(&self) -> Option<(PortId, &Port)> {
        let id = self.uplink?;
        Some((id, self.ports.get(usize::from(id))?))
    }

    /// Longest-prefix match in the tenant's VRF.
    #[inline]
    pub fn route(&self, tenant: TenantId, dst: Ipv4Addr) -> Option<NextHop> {
        self.vrfs.get(usize::from(tenant))?.lookup(dst).copied()
    }

    pub fn vrf(&self, tenant: TenantId) -> Option<&Lpm<NextHop>> {
        self.vrfs.get(usize::from(tenant))
    }

    #[inline]
    pub fn host(&self, tenant: TenantId, ip: Ipv4Addr) -> Option<&Host> {
        self.hosts.get(tenant, ip)
    }

    pub fn hosts(&self) -> &HostTable {
        &self.hosts
    }

    #[inline]
    pub fn l2(&self, tenant: TenantId, mac: EthernetAddress) -> Option<L2Dest> {
        self.l2.get(tenant, mac)
    }

    pub fn vteps(&self) -> &VtepTable {
        &self.vteps
    }

    pub fn nat(&self) -> &NatTable {
        &self.nat
    }

    #[inline]
    pub fn firewall(&self, tenant: TenantId) -> Option<&Firewall> {
        self.firewalls.get(usize::from(tenant))
    }

    /// Whether frames from `port` are checked against its VMs (port
    /// security).
    #[inline]
    pub fn port_security(&self, port: PortId) -> bool {
        self.port_security
            .get(usize::from(port))
            .copied()
            .unwrap_or(true)
    }

    /// The tier of VM port `port`.
    #[inline]
    pub fn port_tier(&self, port: PortId) -> Option<Tier> {
        self.port_tiers.get(usize::from(port)).copied().flatten()
    }

    /// Whether `mac`, a VM of `tenant`, may send from `ip` besides its
    /// own address (an allowed address pair).
    #[inline]
    pub fn allowed_source(&self, tenant: TenantId, ip: Ipv4Addr, mac: EthernetAddress) -> bool {
        self.allowed
            .get(&(tenant, mac))
            .is_some_and(|prefixes| prefixes.iter().any(|p| p.contains(&ip)))
    }

    /// What the router's services tell VM `ip` of `tenant` about itself.
    pub fn guest(&self, tenant: TenantId, ip: Ipv4Addr) -> Option<&Guest> {
        self.guests.get(&(tenant, ip))
    }

    /// Every local VM the services describe, with its tenant and address.
    pub fn guests(&self) -> impl Iterator<Item = (TenantId, Ipv4Addr, &Guest)> {
        self.guests.iter().map(|((t, ip), g)| (*t, *ip, g))
    }

    /// `tenant`'s DNS service.
    pub fn tenant_dns(&self, tenant: TenantId) -> Option<&TenantDns> {
        self.dns.get(&tenant)
    }

    /// Whether the remote `vtep` hosts a VM of `tenant` (its VXLAN in the
    /// tenant's VNI is accepted).
    #[inline]
    pub fn vtep_member(&self, vtep: VtepId, tenant: TenantId) -> bool {
        self.members.contains(&(vtep, tenant))
    }

    /// The tier of `ip` in `tenant`: the subnet of the tenant's VM port
    /// that holds it (the longest), or the address alone.
    pub fn tier_of(&self, tenant: TenantId, ip: Ipv4Addr) -> Tier {
        self.ports
            .iter()
            .filter_map(|p| match p.role {
                PortRole::Vm { tenant: t, gateway } if t == tenant => Some(gateway.trunc()),
                _ => None,
            })
            .filter(|subnet| subnet.contains(&ip))
            .max_by_key(|subnet| subnet.prefix_len())
            .unwrap_or_else(|| Tier::from(ip))
    }

    /// Which tables these are (see `generation`).
    #[inline]
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The tenant's tier ACLs (empty for most tenants, and for ids that
    /// are not tenants).
    #[inline]
    pub fn acls(&self, tenant: TenantId) -> Option<&TenantAcls> {
        self.acls.get(usize::from(tenant)).filter(|a| !a.is_empty())
    }

    /// These tables with `changes` made to the VRFs, as a new generation;
    /// everything else is shared with `self`. Removing a route that
    /// shadowed a VM port's connected subnet brings the connected route
    /// back. Changes naming a tenant that does not exist are ignored (the
    /// control plane validates first).
    pub fn with_routes(&self, changes: &[RouteChange]) -> Tables {
        let mut next = self.clone();
        for change in changes {
            let Some(vrf) = next.vrfs.get_mut(usize::from(change.tenant)) else {
                continue;
            };
            let prefix = change.prefix.trunc();
            if let Some(next_hop) = change.next_hop {
                vrf.insert(prefix, next_hop);
            } else if self.is_connected_subnet(change.tenant, prefix) {
                vrf.insert(prefix, NextHop::Connected);
            } else {
                vrf.remove(prefix);
            }
        }
        next.generation = next_generation();
        next
    }

    /// These tables with `vrfs` (one per tenant id, in order) for their
    /// own: for tables built without their routes, whose VRFs are carried
    /// over from running tables (copy on write) by the control plane.
    pub fn with_vrfs(mut self, vrfs: Vec<Lpm<NextHop>>) -> Tables {
        assert_eq!(vrfs.len(), self.tenants.len(), "a VRF per tenant");
        self.vrfs = vrfs;
        self
    }

    /// These tables guarding `prefixes` (the host's own networks and
    /// addresses) from tenants' internet traffic.
    pub fn with_protected(mut self, prefixes: Vec<Ipv4Net>) -> Tables {
        self.protected = Arc::new(prefixes);
        self
    }

    /// The prefixes `with_protected` guards.
    pub fn protected(&self) -> &[Ipv4Net] {
        &self.protected
    }

    /// Whether `tenant`'s packet to `dst`, routed to the internet, would
    /// reach the host or its underlay: `dst` is in a protected prefix and
    /// the tenant routes no prefix inside that one to the internet (the
    /// longest of them would have matched; at most 32 exact lookups, and
    /// only for packets toward the host's networks).
    #[inline]
    pub fn toward_host(&self, tenant: TenantId, dst: Ipv4Addr) -> bool {
        let Some(vrf) = self.vrfs.get(usize::from(tenant)) else {
            return true;
        };
        self.protected.iter().any(|p| {
            p.contains(&dst)
                && !(p.prefix_len()..=32).any(|len| {
                    Ipv4Net::new(dst, len)
                        .is_ok_and(|named| vrf.get(named.trunc()) == Some(&NextHop::Internet))
                })
        })
    }

    /// Whether `prefix` is the subnet of one of `tenant`'s VM ports.
    fn is_connected_subnet(&self, tenant: TenantId, prefix: Ipv4Net) -> bool {
        self.ports.iter().any(|p| {
            matches!(p.role, PortRole::Vm { tenant: t, gateway }
                if t == tenant && gateway.trunc() == prefix)
        })
    }
}

/// A route added or replaced (`next_hop` set) or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteChange {
    pub tenant: TenantId,
    pub prefix: Ipv4Net,
    pub next_hop: Option<NextHop>,
}

/// The generation the next tables built get.
static NEXT_GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// A generation number no other tables of this process have had.
fn next_generation() -> u32 {
    NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The generation the next tables built will get (one thread builds them
/// in xvrd: the control socket's).
pub fn upcoming_generation() -> u32 {
    NEXT_GENERATION.load(std::sync::atomic::Ordering::Relaxed)
}

/// Makes every generation built from now on greater than `generation`
/// (one a previous process reached), so they keep rising across restarts.
pub fn resume_generations_after(generation: u32) {
    NEXT_GENERATION.fetch_max(
        generation.saturating_add(1),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// The builder's access to a shared part it alone holds while building
/// (so `make_mut` never copies).
fn own<T: Clone>(part: &mut Arc<T>) -> &mut T {
    Arc::make_mut(part)
}

/// Builds a `Tables`. It trusts its caller (the control plane validates
/// first) but never produces an inconsistent snapshot: ids it hands out are
/// the only way to refer to tenants, ports and VTEPs.
#[derive(Debug, Default)]
pub struct TablesBuilder {
    tables: Tables,
}

impl TablesBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tenant at the next id.
    pub fn add_tenant(&mut self, tenant: Tenant) -> TenantId {
        let id = self.tables.tenants.len() as TenantId;
        self.add_tenant_at(id, tenant)
    }

    /// Adds a tenant at `id` (below `MAX_TENANTS`, not taken); the ids
    /// below it that no tenant holds stay vacant.
    pub fn add_tenant_at(&mut self, id: TenantId, tenant: Tenant) -> TenantId {
        while self.tables.tenants.len() <= usize::from(id) {
            self.push_tenant(Tenant::vacant());
        }
        let at = usize::from(id);
        self.tables.vni_to_tenant.insert(tenant.vni, id);
        own(&mut self.tables.l2).insert(id, tenant.router_mac, L2Dest::Router);
        if let Some(vacant) = self.tables.tenants.get_mut(at) {
            *vacant = tenant;
        }
        id
    }

    fn push_tenant(&mut self, tenant: Tenant) {
        self.tables.tenants.push(tenant);
        self.tables.vrfs.push(Lpm::new());
        own(&mut self.tables.firewalls).push(Firewall::default());
        own(&mut self.tables.acls).push(TenantAcls::default());
    }

    /// Adds a port; a VM port also gets its connected route and becomes a
    /// router MAC and a gateway address of its tenant.
    pub fn add_port(&mut self, port: Port) -> PortId {
        let id = self.tables.ports.len() as PortId;
        self.tables.port_security.push(true);
        self.tables.port_tiers.push(match port.role {
            PortRole::Vm { gateway, .. } => Some(gateway.trunc()),
            PortRole::Uplink { .. } => None,
        });
        match port.role {
            PortRole::Uplink { .. } => self.tables.uplink = Some(id),
            PortRole::Vm { tenant, gateway } => {
                own(&mut self.tables.l2).insert(tenant, port.mac, L2Dest::Router);
                self.add_route(tenant, gateway.trunc(), NextHop::Connected);
                if let Some(t) = self.tables.tenants.get_mut(usize::from(tenant)) {
                    t.gateways.push(gateway.addr());
                }
            }
        }
        self.tables.ports.push(port);
        id
    }

    pub fn add_route(&mut self, tenant: TenantId, prefix: Ipv4Net, next_hop: NextHop) {
        if let Some(vrf) = self.tables.vrfs.get_mut(usize::from(tenant)) {
            vrf.insert(prefix, next_hop);
        }
    }

    pub fn add_vtep(&mut self, ip: Ipv4Addr, mac: EthernetAddress) -> VtepId {
        let (local_ip, local_mac) = match self.tables.uplink() {
            Some((
                _,
                Port {
                    mac,
                    role: PortRole::Uplink { ip, .. },
                    ..
                },
            )) => (*ip, *mac),
            _ => (Ipv4Addr::UNSPECIFIED, EthernetAddress([0; 6])),
        };
        own(&mut self.tables.vteps).insert(ip, mac, local_ip, local_mac)
    }

    /// A VM on a local port; its tier is the port's subnet.
    pub fn add_local_host(
        &mut self,
        tenant: TenantId,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        port: PortId,
    ) {
        let tier = match self.tables.port(port).map(|p| p.role) {
            Some(PortRole::Vm { gateway, .. }) => gateway.trunc(),
            _ => Tier::from(ip),
        };
        self.add_host(tenant, ip, mac, Location::Local(port), tier);
    }

    /// `tenant`'s DNS service.
    pub fn set_tenant_dns(&mut self, tenant: TenantId, dns: TenantDns) {
        own(&mut self.tables.dns).insert(tenant, dns);
    }

    /// How the router's services describe local VM `ip` of `tenant`.
    pub fn describe_guest(&mut self, tenant: TenantId, ip: Ipv4Addr, guest: Guest) {
        own(&mut self.tables.guests).insert((tenant, ip), guest);
    }

    /// A VM behind a remote VTEP; its tier is the local VM ports' subnet
    /// that holds its address (none: a tier of its own, reached only by
    /// routing).
    pub fn add_remote_host(
        &mut self,
        tenant: TenantId,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        vtep: VtepId,
    ) {
        let tier = self.tables.tier_of(tenant, ip);
        own(&mut self.tables.members).insert((vtep, tenant));
        self.add_host(tenant, ip, mac, Location::Remote(vtep), tier);
    }

    fn add_host(
        &mut self,
        tenant: TenantId,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        location: Location,
        tier: Tier,
    ) {
        let host = Host {
            mac,
            location,
            tier,
        };
        own(&mut self.tables.hosts).insert(tenant, ip, host);
        let endpoint = Endpoint { location, ip, tier };
        own(&mut self.tables.l2).insert(tenant, mac, L2Dest::Host(endpoint));
    }

    /// The VM `mac` of `tenant` may also send from addresses in `prefix`.
    pub fn allow_addresses(&mut self, tenant: TenantId, prefix: Ipv4Net, mac: EthernetAddress) {
        let allowed = own(&mut self.tables.allowed);
        allowed.entry((tenant, mac)).or_default().push(prefix);
    }

    /// Frames from `port` are not checked against its VMs.
    pub fn disable_port_security(&mut self, port: PortId) {
        if let Some(on) = self.tables.port_security.get_mut(usize::from(port)) {
            *on = false;
        }
    }

    /// The tenant's fair shares of each worker.
    pub fn set_tenant_limits(&mut self, tenant: TenantId, limits: TenantLimits) {
        if let Some(t) = self.tables.tenants.get_mut(usize::from(tenant)) {
            t.limits = limits;
        }
    }

    /// The tenant's internet traffic leaves with its source translated.
    pub fn set_source_nat(&mut self, tenant: TenantId, snat: SourceNat) {
        own(&mut self.tables.nat).set_source(tenant, snat);
    }

    /// 1:1 NAT: `public` is the VM's address on the public side, all
    /// ports, both ways.
    pub fn set_static_nat(&mut self, tenant: TenantId, vm: Ipv4Addr, public: Ipv4Addr) {
        own(&mut self.tables.nat).set_static(tenant, vm, public);
    }

    /// Public `port` of `public` (protocol `proto`, 6 or 17) leads to `to`.
    pub fn add_port_forward(&mut self, public: Ipv4Addr, proto: u8, port: u16, to: Inside) {
        own(&mut self.tables.nat).add_forward(public, proto, port, to);
    }

    pub fn set_firewall(&mut self, tenant: TenantId, firewall: Firewall) {
        if let Some(slot) = own(&mut self.tables.firewalls).get_mut(usize::from(tenant)) {
            *slot = firewall;
        }
    }

    /// Sets (or replaces) the ACL of one of `tenant`'s tiers.
    pub fn set_tier_acl(&mut self, tenant: TenantId, acl: TierAcl) {
        if let Some(acls) = own(&mut self.tables.acls).get_mut(usize::from(tenant)) {
            acls.insert(acl);
        }
    }

    pub fn build(mut self) -> Tables {
        self.tables.generation = next_generation();
        self.tables
    }
}
