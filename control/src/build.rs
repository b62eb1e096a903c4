//! Builds the data plane's immutable tables from a validated state.
use crate::model::{NextHopConfig, PortConfig, State, DEFAULT_MTU};
use crate::ConfigErrors;
use std::collections::HashMap;
use xvr_dataplane::table::{NextHop, Port, PortRole, Tables, TablesBuilder, Tenant};

impl State {
    /// Validates, then builds. Nothing is built from an invalid state.
    pub fn build(&self) -> Result<Tables, ConfigErrors> {
        self.validate()?;
        let mut b = TablesBuilder::new();
        let mut tenants = HashMap::new();
        for t in &self.tenants {
            let mac = t
                .router_mac
                .map_or_else(|| Tenant::default_router_mac(t.vni), Into::into);
            tenants.insert(
                t.name.as_str(),
                b.add_tenant(Tenant::new(&t.name, t.vni, mac)),
            );
        }
        let mut ports = HashMap::new();
        // The uplink first: VTEP header templates need its address and MAC.
        let uplinks = self
            .ports
            .iter()
            .filter(|p| matches!(p, PortConfig::Uplink { .. }));
        let vms = self
            .ports
            .iter()
            .filter(|p| matches!(p, PortConfig::Vm { .. }));
        for p in uplinks.chain(vms) {
            let role = match p {
                PortConfig::Uplink {
                    ip,
                    internet_gateway_mac,
                    mtu,
                    ..
                } => PortRole::Uplink {
                    ip: *ip,
                    internet_gateway_mac: internet_gateway_mac.map(Into::into),
                    mtu: mtu.unwrap_or(DEFAULT_MTU),
                },
                PortConfig::Vm {
                    tenant, gateway, ..
                } => PortRole::Vm {
                    tenant: tenants[tenant.as_str()],
                    gateway: *gateway,
                },
            };
            let id = b.add_port(Port {
                name: p.name().to_string(),
                mac: p.mac().into(),
                role,
            });
            ports.insert(p.name(), id);
        }
        for r in &self.routes {
            let next_hop = match r.next_hop {
                NextHopConfig::Connected => NextHop::Connected,
                NextHopConfig::Via(ip) => NextHop::Via(ip),
                NextHopConfig::Internet => NextHop::Internet,
                NextHopConfig::Blackhole => NextHop::Blackhole,
            };
            b.add_route(tenants[r.tenant.as_str()], r.prefix, next_hop);
        }
        for n in &self.neighbors {
            b.add_local_host(
                tenants[n.tenant.as_str()],
                n.ip,
                n.mac.into(),
                ports[n.port.as_str()],
            );
        }
        let mut vteps = HashMap::new();
        for v in &self.vteps {
            vteps.insert(v.ip, b.add_vtep(v.ip, v.mac.into()));
        }
        for r in &self.remote_vms {
            b.add_remote_host(
                tenants[r.tenant.as_str()],
                r.ip,
                r.mac.into(),
                vteps[&r.vtep],
            );
        }
        Ok(b.build())
    }
}
