//! Builds the data plane's immutable tables from a validated state.
use crate::model::{
    Direction, NextHopConfig, PortConfig, RuleAction, RuleConfig, RuleProtocol, State, DEFAULT_MTU,
    DEFAULT_NAT_PORTS,
};
use crate::{ConfigErrors, TenantIds};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use xvr_dataplane::conntrack;
use xvr_dataplane::table::{
    Action, Firewall, Guest, Inside, NextHop, Port, PortRole, Rule, RuleSet, SourceNat, Tables,
    TablesBuilder, Tenant, TenantDns, TenantLimits, TierAcl,
};

impl NextHopConfig {
    pub fn to_next_hop(self) -> NextHop {
        match self {
            NextHopConfig::Connected => NextHop::Connected,
            NextHopConfig::Via(ip) => NextHop::Via(ip),
            NextHopConfig::Internet => NextHop::Internet,
            NextHopConfig::Blackhole => NextHop::Blackhole,
        }
    }
}

impl State {
    /// Each tenant's connected subnets (its VM ports' gateway subnets),
    /// which its VRF holds beside its routes.
    pub fn connected_subnets(&self) -> BTreeMap<&str, BTreeSet<Ipv4Net>> {
        let mut subnets: BTreeMap<&str, BTreeSet<Ipv4Net>> = BTreeMap::new();
        for port in &self.ports {
            if let PortConfig::Vm {
                tenant, gateway, ..
            } = port
            {
                subnets.entry(tenant).or_default().insert(gateway.trunc());
            }
        }
        subnets
    }

    /// Validates, then builds, the tenants taking ids in order. Nothing
    /// is built from an invalid state.
    pub fn build(&self) -> Result<Tables, ConfigErrors> {
        self.build_with(&TenantIds::default().next(self)?)
    }

    /// `build`, with each tenant at its id in `ids` (made for this state
    /// by `TenantIds::next`).
    pub fn build_with(&self, ids: &TenantIds) -> Result<Tables, ConfigErrors> {
        self.validate()?;
        let mut b = TablesBuilder::new();
        let mut tenants = HashMap::new();
        for t in &self.tenants {
            let mac = t
                .router_mac
                .map_or_else(|| Tenant::default_router_mac(t.vni), Into::into);
            let id = ids
                .get(&t.name)
                .ok_or_else(|| ConfigErrors::single("tenants", "no id for a tenant"))?;
            tenants.insert(
                t.name.as_str(),
                b.add_tenant_at(id, Tenant::new(&t.name, t.vni, mac)),
            );
            let l = &t.limits;
            let limits = TenantLimits {
                shares: conntrack::ShareLimits {
                    sessions: l.sessions,
                    new_per_second: l.new_sessions_per_second,
                    fragments: l.fragments,
                },
                icmp_errors_per_second: l.icmp_errors_per_second,
                arp_replies_per_second: l.arp_replies_per_second,
                service_requests_per_second: l.service_requests_per_second,
                service_requests_per_port_second: l.service_requests_per_port_second,
            };
            b.set_tenant_limits(id, limits);
            let domain = t.dns.domain.clone();
            let domain = domain.unwrap_or_else(|| format!("{}.internal", t.name));
            let upstreams = t.dns.upstreams.clone();
            b.set_tenant_dns(id, TenantDns { domain, upstreams });
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
            b.add_route(
                tenants[r.tenant.as_str()],
                r.prefix,
                r.next_hop.to_next_hop(),
            );
        }
        for p in &self.ports {
            if let PortConfig::Vm {
                name,
                port_security: false,
                ..
            } = p
            {
                b.disable_port_security(ports[name.as_str()]);
            }
        }
        for n in &self.neighbors {
            let tenant = tenants[n.tenant.as_str()];
            b.add_local_host(tenant, n.ip, n.mac.into(), ports[n.port.as_str()]);
            for prefix in &n.allowed_addresses {
                b.allow_addresses(tenant, *prefix, n.mac.into());
            }
            let m = &n.metadata;
            let guest = Guest {
                hostname: n.hostname.clone(),
                instance_id: m.instance_id.clone(),
                user_data: m.user_data.clone(),
                public_keys: m.public_keys.clone(),
            };
            b.describe_guest(tenant, n.ip, guest);
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
            let guest = Guest {
                hostname: r.hostname.clone(),
                ..Guest::default()
            };
            b.describe_guest(tenants[r.tenant.as_str()], r.ip, guest);
        }
        for n in &self.nat.source {
            let [first, last] = n.ports.unwrap_or(DEFAULT_NAT_PORTS);
            let snat = SourceNat {
                ip: n.public_ip,
                ports: (first, last),
                filtering: n.filtering.unwrap_or_default().into(),
            };
            b.set_source_nat(tenants[n.tenant.as_str()], snat);
        }
        for n in &self.nat.static_nat {
            b.set_static_nat(tenants[n.tenant.as_str()], n.vm_ip, n.public_ip);
        }
        for f in &self.nat.port_forwards {
            let tenant = tenants[f.tenant.as_str()];
            for offset in 0..=(f.public_ports[1] - f.public_ports[0]) {
                let to = Inside {
                    tenant,
                    ip: f.vm_ip,
                    port: f.vm_ports[0] + offset,
                };
                b.add_port_forward(
                    f.public_ip,
                    f.protocol.number(),
                    f.public_ports[0] + offset,
                    to,
                );
            }
        }
        for (name, &id) in &tenants {
            b.set_firewall(id, self.firewall_of(name));
        }
        for acl in &self.network_acls {
            let rules = |direction: Direction| -> Vec<Rule> {
                acl.rules
                    .iter()
                    .filter(|r| r.direction == direction)
                    .map(rule_of)
                    .collect()
            };
            let tier = TierAcl::new(
                acl.tier,
                rules(Direction::Ingress),
                rules(Direction::Egress),
            );
            b.set_tier_acl(tenants[acl.tenant.as_str()], tier);
        }
        Ok(b.build())
    }

    /// A tenant's rules, in order, per direction.
    fn firewall_of(&self, tenant: &str) -> Firewall {
        let rules = |direction: Direction| -> Vec<Rule> {
            self.firewall
                .iter()
                .filter(|r| r.tenant == tenant && r.direction == direction)
                .map(|r| rule_of(&r.rule()))
                .collect()
        };
        let egress_default = self
            .tenants
            .iter()
            .find(|t| t.name == tenant)
            .and_then(|t| t.egress_default);
        let egress_default = match egress_default {
            Some(RuleAction::Deny) => Action::Deny,
            _ => Action::Allow,
        };
        Firewall {
            ingress: RuleSet::new(rules(Direction::Ingress), Action::Deny),
            egress: RuleSet::new(rules(Direction::Egress), egress_default),
        }
    }

    /// Each worker's connection tracking: the state's limits and
    /// timeouts over the defaults.
    pub fn conntrack_config(&self) -> conntrack::Config {
        let mut config = conntrack::Config::default();
        let Some(c) = &self.conntrack else {
            return config;
        };
        if let Some(max) = c.max_sessions {
            config.max_sessions = max;
        }
        if let Some(t) = &c.timeouts {
            let d = &mut config.timeouts;
            let set = |field: &mut u32, value: Option<u32>| {
                if let Some(v) = value {
                    *field = v;
                }
            };
            set(&mut d.syn_sent, t.tcp_syn_sent);
            set(&mut d.syn_recv, t.tcp_syn_recv);
            set(&mut d.established, t.tcp_established);
            set(&mut d.fin_wait, t.tcp_fin_wait);
            set(&mut d.close_wait, t.tcp_close_wait);
            set(&mut d.time_wait, t.tcp_time_wait);
            set(&mut d.closed, t.tcp_closed);
            set(&mut d.udp_unreplied, t.udp_unreplied);
            set(&mut d.udp_replied, t.udp_replied);
            set(&mut d.udp_well_known, t.udp_well_known);
            set(&mut d.icmp, t.icmp);
        }
        config
    }
}

/// A firewall or ACL rule as the classifier takes it: for ICMP the "port"
/// is `type << 8 | code`.
fn rule_of(r: &RuleConfig) -> Rule {
    let any = Ipv4Net::default();
    let (proto, ports) = match r.protocol {
        RuleProtocol::Any => (None, (0, u16::MAX)),
        RuleProtocol::Tcp | RuleProtocol::Udp => {
            let proto = if r.protocol == RuleProtocol::Tcp {
                6
            } else {
                17
            };
            let [a, b] = r.ports.unwrap_or([0, u16::MAX]);
            (Some(proto), (a, b))
        }
        RuleProtocol::Icmp => {
            let ports = match (r.icmp_type, r.icmp_code) {
                (None, _) => (0, u16::MAX),
                (Some(t), None) => (u16::from(t) << 8, u16::from(t) << 8 | 0xff),
                (Some(t), Some(c)) => {
                    let v = u16::from(t) << 8 | u16::from(c);
                    (v, v)
                }
            };
            (Some(1), ports)
        }
    };
    Rule {
        src: r.source.unwrap_or(any),
        dst: r.destination.unwrap_or(any),
        proto,
        ports,
        action: match r.action {
            RuleAction::Allow => Action::Allow,
            RuleAction::Deny => Action::Deny,
        },
    }
}
