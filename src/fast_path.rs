//! Keeps the XDP fast path (`xvr_ebpf::FastPath`) in step with the tables:
//! for every host (VM) of every tenant, what the workers' L2 stage would do
//! with a unicast frame to its MAC (to its local port, or encapsulated
//! toward its VTEP), written as map entries that the steering program
//! replays without waking a worker. Only decisions that need no state are
//! exported: bridging inside a tenant has no firewall, no session and no
//! rewrite beyond the encapsulation. Port security and tiers hold there
//! as in the workers: each VM's MAC is exported as a source (its port or
//! VTEP, its address, its tier), and the program forwards a frame only
//! from a known source to a VM of the same tier; the rest (allowed
//! address pairs, ports without port security) goes to the workers.
//!
//! An entry is exported only if the interface it sends to accepts frames
//! redirected by XDP (a veth does only while its peer has GRO or an XDP
//! program on); otherwise those frames keep going through the workers, so
//! nothing is ever redirected into a black hole. `sync` asks again each
//! time, so a peer that turns GRO on or off is followed at the next sync.
use crate::flow_offload::FlowPorts;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use xvr_dataplane::table::{Endpoint, L2Dest, Location, PortRole, Tier};
use xvr_dataplane::Tables;
use xvr_ebpf::{FastPath, FastTier, FlowRefs, FlowTable, L2Fwd, Source};

/// What the maps hold, or should hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entries {
    /// VM port ifindex -> its tenant's VNI.
    pub port_vnis: HashMap<u32, u32>,
    pub remote_vteps: HashSet<Ipv4Addr>,
    /// (VNI, MAC) -> decision, and the destination VM's tier.
    pub l2: HashMap<(u32, [u8; 6]), (L2Fwd, FastTier)>,
    /// (overlay, scope, MAC) -> who may send: VMs on a port with port
    /// security (scope: the port's ifindex), VMs behind a VTEP (overlay,
    /// scope: the VNI).
    pub sources: HashMap<(bool, u32, [u8; 6]), Source>,
    /// Offloaded flows may leave by these interfaces (ifindex -> MTU).
    pub flow_outputs: HashMap<u32, u32>,
}

fn fast_tier(tier: Tier) -> FastTier {
    FastTier {
        net: tier.network(),
        len: tier.prefix_len(),
    }
}

/// The entries that replay `tables`' L2 decisions. `ifindexes` gives
/// each port's interface index, by port id (None: no such interface,
/// and no entry for it); `accepting` holds the interfaces that take
/// redirected frames.
pub fn entries(tables: &Tables, ifindexes: &[Option<u32>], accepting: &HashSet<u32>) -> Entries {
    let mut entries = Entries::default();
    for (port, ifindex) in tables.ports().iter().zip(ifindexes) {
        if let (PortRole::Vm { tenant, .. }, Some(ifindex)) = (port.role, ifindex) {
            if let Some(tenant) = tables.tenant(tenant) {
                entries.port_vnis.insert(*ifindex, tenant.vni);
            }
        }
    }
    entries.remote_vteps = tables.vteps().iter().map(|v| v.ip).collect();
    let accepting_port = |id: u16| {
        let ifindex = ifindexes.get(usize::from(id)).copied().flatten();
        ifindex.filter(|i| accepting.contains(i))
    };
    let uplink = tables.uplink().and_then(|(id, _)| accepting_port(id));
    let max_inner_ip = tables.overlay_ip_mtu().unwrap_or(0) as u32;
    for (tenant, ip, host) in tables.hosts().iter() {
        // Where the workers' L2 stage sends this MAC (a router MAC that a
        // host shares stays the router's).
        let endpoint = Endpoint {
            location: host.location,
            ip,
            tier: host.tier,
        };
        if tables.l2(tenant, host.mac) != Some(L2Dest::Host(endpoint)) {
            continue;
        }
        let Some(vni) = tables.tenant(tenant).map(|t| t.vni) else {
            continue;
        };
        let tier = fast_tier(host.tier);
        let source = match host.location {
            Location::Local(port) if tables.port_security(port) => {
                ifindexes[usize::from(port)].map(|ifindex| ((false, ifindex, host.mac.0), None))
            }
            Location::Local(_) => None,
            Location::Remote(vtep) => tables
                .vteps()
                .get(vtep)
                .map(|v| ((true, vni, host.mac.0), Some(v.ip))),
        };
        if let Some((key, vtep)) = source {
            entries.sources.insert(key, Source { ip, vtep, tier });
        }
        let fwd = match host.location {
            Location::Local(port) => accepting_port(port).map(|ifindex| L2Fwd::Port { ifindex }),
            Location::Remote(vtep) => {
                uplink
                    .zip(tables.vteps().get(vtep))
                    .map(|(ifindex, v)| L2Fwd::Encap {
                        ifindex,
                        max_inner_ip,
                        outer: v.template,
                    })
            }
        };
        if let Some(fwd) = fwd {
            entries.l2.insert((vni, host.mac.0), (fwd, tier));
        }
    }
    entries
}

/// The fast path's maps and what was last written to them.
pub struct FastPathSync {
    maps: FastPath,
    installed: Entries,
    /// The fast path runs in tc, whose redirects every interface takes.
    /// (Flows are offloaded in XDP only.)
    in_tc: bool,
    /// Each port's ifindex, for the workers' flow offers.
    flow_ports: FlowPorts,
    /// The generation offloaded flows must carry, as last written.
    generation: Option<u32>,
    /// A handle on the offloaded flows, to count them and remove what
    /// names a vanished port or tenant.
    flows: Option<FlowTable>,
    /// The interfaces and VNIs of the tables last synced.
    named: Named,
}

/// The interfaces (of ports) and VNIs (of tenants) some tables name.
#[derive(Debug, Default)]
struct Named {
    ifindexes: HashSet<u32>,
    vnis: HashSet<u32>,
}

impl Named {
    fn of(tables: &Tables, ifindexes: &[Option<u32>]) -> Named {
        Named {
            ifindexes: ifindexes.iter().flatten().copied().collect(),
            vnis: tables.tenants().iter().map(|t| t.vni).collect(),
        }
    }

    /// Whether `other` names everything this does.
    fn within(&self, other: &Named) -> bool {
        self.ifindexes.is_subset(&other.ifindexes) && self.vnis.is_subset(&other.vnis)
    }

    /// Whether an entry names only what is here.
    fn holds(&self, r: &FlowRefs) -> bool {
        let vni = |v: Option<u32>| v.is_none_or(|v| self.vnis.contains(&v));
        self.ifindexes.contains(&r.in_ifindex)
            && self.ifindexes.contains(&r.out_ifindex)
            && vni(r.in_vni)
            && vni(r.out_vni)
    }
}

impl FastPathSync {
    pub fn new(maps: FastPath, in_tc: bool) -> FastPathSync {
        FastPathSync {
            maps,
            installed: Entries::default(),
            in_tc,
            flow_ports: FlowPorts::default(),
            generation: None,
            flows: None,
            named: Named::default(),
        }
    }

    /// Counts the offloaded flows in `flows` (`offloaded_flows`).
    pub fn with_flow_table(mut self, flows: FlowTable) -> FastPathSync {
        self.flows = Some(flows);
        self
    }

    /// How many flow directions the fast path holds (a walk of the map:
    /// for `stats`, not the data path); None without a flow table.
    pub fn offloaded_flows(&self) -> Option<usize> {
        self.flows.as_ref().map(FlowTable::len)
    }

    /// Where the workers' flow installers read each port's ifindex.
    pub fn flow_ports(&self) -> FlowPorts {
        self.flow_ports.clone()
    }

    /// From now on only flows offloaded under `generation` apply. A
    /// commit calls it before its tables take over, so no flow decided
    /// under the old ones is forwarded after the new ones are in force.
    pub fn follow_generation(&mut self, generation: u32) -> Result<(), String> {
        if self.generation == Some(generation) {
            return Ok(());
        }
        self.generation = None;
        self.maps
            .set_flow_generation(generation)
            .map_err(|e| format!("flow offload: {e}"))?;
        self.generation = Some(generation);
        Ok(())
    }

    /// Removes the offloaded flows of an earlier generation that name an
    /// interface or VNI `now` lacks: those of a deleted port or tenant.
    /// Inert already (by generation), they would otherwise wait for the
    /// LRU, for the workers withdraw a flow through the ports the tables
    /// give its session, and the tables no longer have those.
    fn remove_vanished_flows(&mut self, now: Named) {
        let (Some(flows), Some(generation)) = (&mut self.flows, self.generation) else {
            return;
        };
        if !self.named.within(&now) {
            let vanished = |r: &FlowRefs| r.generation != generation && !now.holds(r);
            if let Err(e) = flows.remove_where(vanished) {
                tracing::warn!("removing the offloaded flows of deleted ports: {e}");
            }
        }
        self.named = now;
    }

    /// Brings the maps to `tables`' decisions: stale entries are removed
    /// first, then new and changed ones written, each a whole decision.
    /// Returns how many L2 entries are exported. On a map error the fast
    /// path is emptied (every frame goes to the workers) and the error
    /// returned.
    pub fn sync(&mut self, tables: &Tables) -> Result<usize, String> {
        if self.in_tc {
            return self.sync_with(tables, |_| true);
        }
        // One socket for every port's question (xvrd syncs every second).
        let netdev = xvr_ebpf::netdev::Netdev::open().ok();
        self.sync_with(tables, |ifindex| {
            netdev
                .as_ref()
                .is_some_and(|n| n.accepts_redirects(ifindex).unwrap_or(false))
        })
    }

    /// `sync`, with `accepts` telling which interfaces take redirected
    /// frames (tests run the program on frames without real targets).
    pub fn sync_with(
        &mut self,
        tables: &Tables,
        accepts: impl Fn(u32) -> bool,
    ) -> Result<usize, String> {
        // Looked up by name each time: ports come and go while xvrd runs.
        // Each port's interface and whether it takes redirects are asked
        // once, for the L2 entries and the flow outputs alike.
        let ifindexes: Vec<Option<u32>> = tables
            .ports()
            .iter()
            .map(|p| crate::netdev::ifindex(&p.name).ok())
            .collect();
        let accepting: HashSet<u32> = ifindexes
            .iter()
            .flatten()
            .copied()
            .filter(|&i| accepts(i))
            .collect();
        let mut wanted = entries(tables, &ifindexes, &accepting);
        for (port, ifindex) in tables.ports().iter().zip(&ifindexes) {
            let Some(ifindex) = ifindex.filter(|i| accepting.contains(i)) else {
                continue;
            };
            let mtu = crate::netdev::interface_mtu(&port.name).unwrap_or(1500);
            wanted.flow_outputs.insert(ifindex, u32::from(mtu));
        }
        self.follow_generation(tables.generation())?;
        self.remove_vanished_flows(Named::of(tables, &ifindexes));
        self.flow_ports.store(std::sync::Arc::new(ifindexes));
        if wanted == self.installed {
            return Ok(wanted.l2.len());
        }
        match self.write(&wanted) {
            Ok(()) => Ok(wanted.l2.len()),
            Err(e) => {
                self.clear();
                Err(format!("XDP fast path emptied: {e}"))
            }
        }
    }

    /// Removes every entry that may be in the maps; the ones already gone
    /// fail to remove, which is fine.
    fn clear(&mut self) {
        let installed = std::mem::take(&mut self.installed);
        for key in installed.l2.keys() {
            let _ = self.maps.remove_l2(key.0, key.1);
        }
        for ifindex in installed.port_vnis.keys() {
            let _ = self.maps.remove_port_vni(*ifindex);
        }
        for (overlay, scope, mac) in installed.sources.keys() {
            let _ = self.maps.remove_source(*overlay, *scope, *mac);
        }
        for ip in &installed.remote_vteps {
            let _ = self.maps.remove_remote_vtep(*ip);
        }
        for ifindex in installed.flow_outputs.keys() {
            let _ = self.maps.remove_flow_output(*ifindex);
        }
    }

    fn write(&mut self, wanted: &Entries) -> Result<(), String> {
        let e = |e: xvr_ebpf::Error| e.to_string();
        let have = std::mem::take(&mut self.installed);
        // Whatever fails below leaves the maps holding at most `have`
        // plus `wanted`: remember both, so that `clear` removes them.
        self.installed = Entries {
            port_vnis: have
                .port_vnis
                .iter()
                .chain(&wanted.port_vnis)
                .map(|(k, v)| (*k, *v))
                .collect(),
            remote_vteps: have
                .remote_vteps
                .union(&wanted.remote_vteps)
                .copied()
                .collect(),
            l2: have
                .l2
                .iter()
                .chain(&wanted.l2)
                .map(|(k, v)| (*k, *v))
                .collect(),
            sources: have
                .sources
                .iter()
                .chain(&wanted.sources)
                .map(|(k, v)| (*k, *v))
                .collect(),
            flow_outputs: have
                .flow_outputs
                .iter()
                .chain(&wanted.flow_outputs)
                .map(|(k, v)| (*k, *v))
                .collect(),
        };
        for ifindex in have.flow_outputs.keys() {
            if !wanted.flow_outputs.contains_key(ifindex) {
                self.maps.remove_flow_output(*ifindex).map_err(e)?;
            }
        }
        for (ifindex, mtu) in &wanted.flow_outputs {
            if have.flow_outputs.get(ifindex) != Some(mtu) {
                self.maps.set_flow_output(*ifindex, *mtu).map_err(e)?;
            }
        }
        for key in have.l2.keys().filter(|k| !wanted.l2.contains_key(k)) {
            self.maps.remove_l2(key.0, key.1).map_err(e)?;
        }
        for key in have.sources.keys() {
            if !wanted.sources.contains_key(key) {
                self.maps.remove_source(key.0, key.1, key.2).map_err(e)?;
            }
        }
        for (key, source) in &wanted.sources {
            if have.sources.get(key) != Some(source) {
                self.maps.set_source(key.1, key.2, *source).map_err(e)?;
            }
        }
        for ifindex in have.port_vnis.keys() {
            if !wanted.port_vnis.contains_key(ifindex) {
                self.maps.remove_port_vni(*ifindex).map_err(e)?;
            }
        }
        for ip in have.remote_vteps.difference(&wanted.remote_vteps) {
            self.maps.remove_remote_vtep(*ip).map_err(e)?;
        }
        for ip in wanted.remote_vteps.difference(&have.remote_vteps) {
            self.maps.add_remote_vtep(*ip).map_err(e)?;
        }
        for (ifindex, vni) in &wanted.port_vnis {
            if have.port_vnis.get(ifindex) != Some(vni) {
                self.maps.set_port_vni(*ifindex, *vni).map_err(e)?;
            }
        }
        for (key, (fwd, tier)) in &wanted.l2 {
            if have.l2.get(key) != Some(&(*fwd, *tier)) {
                self.maps.set_l2(key.0, key.1, *fwd, *tier).map_err(e)?;
            }
        }
        self.installed = wanted.clone();
        Ok(())
    }
}
