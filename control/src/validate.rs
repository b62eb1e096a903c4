//! Validation of a whole desired state. Every problem is reported with the
//! path of the field (`ports[2].gateway`) and the offending value, and a
//! state with any problem is rejected whole.
use crate::model::{
    NextHopConfig, PortConfig, Protocol, RouteConfig, RuleConfig, RuleProtocol, State,
    DEFAULT_NAT_PORTS, MAX_UPLINK_MTU, MIN_UPLINK_MTU,
};
use ipnet::Ipv4Net;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use xvr_dataplane::wire::vxlan::VNI_MAX;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const MAX_PORT_NAME: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the offending field, e.g. `tenants[1].vni`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// All problems found in one state, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, field: String, message: String) {
        self.0.push(ConfigError { field, message });
    }
}

fn usable_host(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

/// Who uses each public address, and how: one tenant per address, and a
/// static-NAT address for nothing else.
#[derive(Default)]
struct Owners(HashMap<Ipv4Addr, (String, &'static str, String)>);

impl Owners {
    fn claim(
        &mut self,
        errors: &mut Errors,
        vtep: Option<Ipv4Addr>,
        at: String,
        ip: Ipv4Addr,
        tenant: &str,
        kind: &'static str,
    ) {
        if !usable_host(ip) {
            return errors.add(at, format!("{ip} is not usable"));
        }
        if Some(ip) == vtep {
            return errors.add(at, format!("{ip} is the uplink's VTEP address"));
        }
        match self.0.get(&ip) {
            Some((owner, _, _)) if owner != tenant => {
                errors.add(at, format!("{ip} already belongs to tenant {owner:?}"))
            }
            // 1:1 NAT takes every port: nothing else may share it.
            Some((_, other, first)) if kind == "static NAT" || *other == "static NAT" => {
                errors.add(at, format!("{ip} is already used by {other} ({first})"))
            }
            Some(_) => {}
            None => {
                let entry = at.trim_end_matches(".public_ip").to_string();
                self.0.insert(ip, (tenant.to_string(), kind, entry));
            }
        }
    }
}

impl State {
    /// Checks the whole state; `Ok` means `build` will produce tables that
    /// say exactly what the state says.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Errors::default();
        let tenants = self.check_tenants(&mut errors);
        let ports = self.check_ports(&mut errors, &tenants);
        self.check_routes(&mut errors, &tenants);
        self.check_hosts(&mut errors, &tenants, &ports);
        self.check_nat(&mut errors, &tenants);
        self.check_conntrack(&mut errors);
        self.check_firewall(&mut errors, &tenants);
        self.check_network_acls(&mut errors, &tenants);
        if errors.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors.0))
        }
    }

    fn check_tenants<'a>(&'a self, errors: &mut Errors) -> HashSet<&'a str> {
        let mut names = HashSet::new();
        let mut vnis = HashMap::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if t.name.is_empty() {
                errors.add(format!("tenants[{i}].name"), "must not be empty".into());
            } else if !names.insert(t.name.as_str()) {
                errors.add(
                    format!("tenants[{i}].name"),
                    format!("duplicate tenant name {:?}", t.name),
                );
            }
            if t.vni == 0 || t.vni > VNI_MAX {
                errors.add(
                    format!("tenants[{i}].vni"),
                    format!("{} is outside 1..={VNI_MAX}", t.vni),
                );
            } else if let Some(other) = vnis.insert(t.vni, &t.name) {
                errors.add(
                    format!("tenants[{i}].vni"),
                    format!("duplicate VNI {} (also tenant {other:?})", t.vni),
                );
            }
            if let Some(domain) = &t.dns.domain {
                let labels = domain.trim_end_matches('.').split('.');
                if domain.len() > 253 || !labels.clone().all(xvr_dataplane::service::is_dns_label) {
                    errors.add(
                        format!("tenants[{i}].dns.domain"),
                        format!("{domain:?} is not a domain name (labels of letters, digits and inner hyphens)"),
                    );
                }
            }
            if t.dns.upstreams.len() > MAX_DNS_UPSTREAMS {
                errors.add(
                    format!("tenants[{i}].dns.upstreams"),
                    format!(
                        "{} resolvers; at most {MAX_DNS_UPSTREAMS}",
                        t.dns.upstreams.len()
                    ),
                );
            }
            for (j, ip) in t.dns.upstreams.iter().enumerate() {
                if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback()
                {
                    errors.add(
                        format!("tenants[{i}].dns.upstreams[{j}]"),
                        format!("{ip} is not a unicast address"),
                    );
                }
            }
            if let Some(mac) = t.router_mac.filter(|m| !m.is_unicast()) {
                errors.add(
                    format!("tenants[{i}].router_mac"),
                    format!("{mac} is not a unicast MAC"),
                );
            }
        }
        names
    }

    /// Returns VM port name -> (tenant, gateway subnet).
    fn check_ports<'a>(
        &'a self,
        errors: &mut Errors,
        tenants: &HashSet<&str>,
    ) -> HashMap<&'a str, (&'a str, ipnet::Ipv4Net)> {
        let mut names = HashSet::new();
        let mut macs = HashMap::new();
        let mut vm_ports = HashMap::new();
        let mut subnets: Vec<(&str, ipnet::Ipv4Net, usize)> = Vec::new();
        let mut uplink = None;
        for (i, p) in self.ports.iter().enumerate() {
            let name = p.name();
            if name.is_empty() || name.len() > MAX_PORT_NAME {
                errors.add(
                    format!("ports[{i}].name"),
                    format!("{name:?} must be 1..={MAX_PORT_NAME} bytes"),
                );
            } else if !names.insert(name) {
                errors.add(
                    format!("ports[{i}].name"),
                    format!("duplicate port {name:?}"),
                );
            }
            let mac = p.mac();
            if !mac.is_unicast() {
                errors.add(
                    format!("ports[{i}].mac"),
                    format!("{mac} is not a unicast MAC"),
                );
            } else if let Some(other) = macs.insert(mac, name) {
                errors.add(
                    format!("ports[{i}].mac"),
                    format!("{mac} is already the MAC of port {other:?}"),
                );
            }
            match p {
                PortConfig::Uplink {
                    ip,
                    internet_gateway_mac,
                    mtu,
                    ..
                } => {
                    if let Some(mtu) =
                        mtu.filter(|m| !(MIN_UPLINK_MTU..=MAX_UPLINK_MTU).contains(m))
                    {
                        errors.add(
                            format!("ports[{i}].mtu"),
                            format!("{mtu} is outside {MIN_UPLINK_MTU}..={MAX_UPLINK_MTU}"),
                        );
                    }
                    if let Some(first) = uplink.replace(i) {
                        errors.add(
                            format!("ports[{i}].role"),
                            format!("a second uplink (ports[{first}] is one); one is supported"),
                        );
                    }
                    if !usable_host(*ip) {
                        errors.add(
                            format!("ports[{i}].ip"),
                            format!("{ip} is not a usable VTEP address"),
                        );
                    }
                    if let Some(m) = internet_gateway_mac.filter(|m| !m.is_unicast()) {
                        errors.add(
                            format!("ports[{i}].internet_gateway_mac"),
                            format!("{m} is not a unicast MAC"),
                        );
                    }
                }
                PortConfig::Vm {
                    tenant, gateway, ..
                } => {
                    if !tenants.contains(tenant.as_str()) {
                        errors.add(
                            format!("ports[{i}].tenant"),
                            format!("unknown tenant {tenant:?}"),
                        );
                    }
                    let subnet = gateway.trunc();
                    if gateway.prefix_len() == 0 || gateway.prefix_len() > 30 {
                        errors.add(
                            format!("ports[{i}].gateway"),
                            format!("{gateway}: prefix length must be 1..=30"),
                        );
                    } else if gateway.addr() == subnet.network()
                        || gateway.addr() == subnet.broadcast()
                    {
                        errors.add(
                            format!("ports[{i}].gateway"),
                            format!(
                                "{gateway}: the gateway cannot be the network or broadcast address"
                            ),
                        );
                    }
                    for (other_tenant, other, j) in &subnets {
                        let overlaps = other.contains(&subnet) || subnet.contains(other);
                        if other_tenant == tenant && overlaps && *other != subnet {
                            errors.add(
                                format!("ports[{i}].gateway"),
                                format!(
                                    "{subnet} overlaps {other} of ports[{j}] in tenant {tenant:?}"
                                ),
                            );
                        }
                    }
                    subnets.push((tenant, subnet, i));
                    vm_ports.insert(name, (tenant.as_str(), *gateway));
                }
            }
        }
        vm_ports
    }

    /// Whether an uplink reaches the internet (routes to `internet` need
    /// one).
    pub fn has_internet(&self) -> bool {
        self.ports.iter().any(|p| {
            matches!(
                p,
                PortConfig::Uplink {
                    internet_gateway_mac: Some(_),
                    ..
                }
            )
        })
    }

    fn check_nat(&self, errors: &mut Errors, tenants: &HashSet<&str>) {
        let vtep = self.ports.iter().find_map(|p| match p {
            PortConfig::Uplink { ip, .. } => Some(*ip),
            PortConfig::Vm { .. } => None,
        });
        let mut owners = Owners::default();
        let mut claim = |errors: &mut Errors, at: String, ip: Ipv4Addr, tenant: &str, kind| {
            owners.claim(errors, vtep, at, ip, tenant, kind)
        };
        // A public address must not be one of the tenant's own gateways.
        let gateway = |errors: &mut Errors, at: String, tenant: &str, ip: Ipv4Addr| {
            let own = self.ports.iter().any(|p| {
                matches!(p, PortConfig::Vm { tenant: t, gateway, .. }
                    if t == tenant && gateway.addr() == ip)
            });
            if own {
                errors.add(
                    at,
                    format!("{ip} is a gateway address of tenant {tenant:?}"),
                );
            }
        };
        let mut with_snat: HashMap<&str, usize> = HashMap::new();
        let mut snat_ranges: HashMap<Ipv4Addr, [u16; 2]> = HashMap::new();
        let check_tenant = |errors: &mut Errors, at: String, tenant: &str| {
            let known = tenants.contains(tenant);
            if !known {
                errors.add(at, format!("unknown tenant {tenant:?}"));
            }
            known
        };
        if !self.nat.is_empty() && !self.has_internet() {
            errors.add(
                "nat".into(),
                "NAT needs an uplink port with internet_gateway_mac".into(),
            );
        }
        for (i, n) in self.nat.source.iter().enumerate() {
            let at = |field: &str| format!("nat.source[{i}].{field}");
            if check_tenant(errors, at("tenant"), &n.tenant) {
                if let Some(first) = with_snat.insert(&n.tenant, i) {
                    errors.add(
                        at("tenant"),
                        format!(
                            "tenant {:?} already has source NAT (nat.source[{first}])",
                            n.tenant
                        ),
                    );
                }
            }
            claim(
                errors,
                at("public_ip"),
                n.public_ip,
                &n.tenant,
                "source NAT",
            );
            gateway(errors, at("public_ip"), &n.tenant, n.public_ip);
            let ports = n.ports.unwrap_or(DEFAULT_NAT_PORTS);
            let [first, last] = ports;
            if first == 0 || first > last {
                errors.add(
                    at("ports"),
                    format!("[{first}, {last}] is not a range of ports 1..=65535, first to last"),
                );
            }
            snat_ranges.insert(n.public_ip, ports);
        }
        let mut static_vms = HashMap::new();
        for (i, n) in self.nat.static_nat.iter().enumerate() {
            let at = |field: &str| format!("nat.static[{i}].{field}");
            check_tenant(errors, at("tenant"), &n.tenant);
            claim(
                errors,
                at("public_ip"),
                n.public_ip,
                &n.tenant,
                "static NAT",
            );
            gateway(errors, at("public_ip"), &n.tenant, n.public_ip);
            if let Some(first) = static_vms.insert((n.tenant.as_str(), n.vm_ip), i) {
                errors.add(
                    at("vm_ip"),
                    format!("{} already has static NAT (nat.static[{first}])", n.vm_ip),
                );
            }
        }
        let mut forwarded: HashMap<(Ipv4Addr, Protocol, u16), usize> = HashMap::new();
        for (i, f) in self.nat.port_forwards.iter().enumerate() {
            let at = |field: &str| format!("nat.port_forwards[{i}].{field}");
            check_tenant(errors, at("tenant"), &f.tenant);
            claim(
                errors,
                at("public_ip"),
                f.public_ip,
                &f.tenant,
                "port forwarding",
            );
            gateway(errors, at("public_ip"), &f.tenant, f.public_ip);
            let range_ok = |[first, last]: [u16; 2]| first != 0 && first <= last;
            if !range_ok(f.public_ports) {
                let [a, b] = f.public_ports;
                errors.add(
                    at("public_ports"),
                    format!("[{a}, {b}] is not a range of ports, first to last"),
                );
                continue;
            }
            if !range_ok(f.vm_ports)
                || f.vm_ports[1] - f.vm_ports[0] != f.public_ports[1] - f.public_ports[0]
            {
                let [a, b] = f.vm_ports;
                errors.add(
                    at("vm_ports"),
                    format!("[{a}, {b}] must be a range as long as public_ports"),
                );
                continue;
            }
            if let Some([first, last]) = snat_ranges.get(&f.public_ip) {
                let [a, b] = f.public_ports;
                if a <= *last && b >= *first {
                    errors.add(
                        at("public_ports"),
                        format!(
                            "[{a}, {b}] overlaps the source NAT ports [{first}, {last}] of {}",
                            f.public_ip
                        ),
                    );
                }
            }
            for port in f.public_ports[0]..=f.public_ports[1] {
                if let Some(other) = forwarded.insert((f.public_ip, f.protocol, port), i) {
                    errors.add(
                        at("public_ports"),
                        format!(
                            "{} {} port {port} is already forwarded (nat.port_forwards[{other}])",
                            f.public_ip,
                            f.protocol.name()
                        ),
                    );
                    break;
                }
            }
        }
    }

    fn check_firewall(&self, errors: &mut Errors, tenants: &HashSet<&str>) {
        for (i, r) in self.firewall.iter().enumerate() {
            let at = |field: &str| format!("firewall[{i}].{field}");
            if !tenants.contains(r.tenant.as_str()) {
                errors.add(at("tenant"), format!("unknown tenant {:?}", r.tenant));
            }
            check_rule(errors, &at, &r.rule());
        }
    }

    fn check_network_acls(&self, errors: &mut Errors, tenants: &HashSet<&str>) {
        let mut tiers: Vec<(&str, Ipv4Net, usize)> = Vec::new();
        for (i, acl) in self.network_acls.iter().enumerate() {
            let at = |field: &str| format!("network_acls[{i}].{field}");
            if !tenants.contains(acl.tenant.as_str()) {
                errors.add(at("tenant"), format!("unknown tenant {:?}", acl.tenant));
            }
            let tier = acl.tier;
            if tier != tier.trunc() {
                let fix = tier.trunc();
                errors.add(
                    at("tier"),
                    format!("{tier} has host bits set (did you mean {fix}?)"),
                );
            }
            let overlap = tiers.iter().find(|(tenant, other, _)| {
                *tenant == acl.tenant && (other.contains(&tier) || tier.contains(other))
            });
            match overlap {
                Some((_, other, j)) => errors.add(
                    at("tier"),
                    format!("{tier} overlaps tier {other} of network_acls[{j}] in the same tenant"),
                ),
                None => tiers.push((acl.tenant.as_str(), tier, i)),
            }
            for (j, r) in acl.rules.iter().enumerate() {
                let at = |field: &str| format!("network_acls[{i}].rules[{j}].{field}");
                check_rule(errors, &at, r);
            }
        }
    }

    fn check_conntrack(&self, errors: &mut Errors) {
        let Some(c) = &self.conntrack else { return };
        if c.max_sessions == Some(0) {
            errors.add("conntrack.max_sessions".into(), "must be at least 1".into());
        }
        if let Some(t) = &c.timeouts {
            let all = [
                ("tcp_syn_sent", t.tcp_syn_sent),
                ("tcp_syn_recv", t.tcp_syn_recv),
                ("tcp_established", t.tcp_established),
                ("tcp_fin_wait", t.tcp_fin_wait),
                ("tcp_close_wait", t.tcp_close_wait),
                ("tcp_time_wait", t.tcp_time_wait),
                ("tcp_closed", t.tcp_closed),
                ("udp_unreplied", t.udp_unreplied),
                ("udp_replied", t.udp_replied),
                ("udp_well_known", t.udp_well_known),
                ("icmp", t.icmp),
            ];
            for (name, value) in all {
                if value == Some(0) {
                    errors.add(
                        format!("conntrack.timeouts.{name}"),
                        "must be at least 1 second".into(),
                    );
                }
            }
        }
    }

    fn check_routes(&self, errors: &mut Errors, tenants: &HashSet<&str>) {
        let mut seen = HashSet::new();
        let has_internet = self.has_internet();
        for (i, r) in self.routes.iter().enumerate() {
            let known = tenants.contains(r.tenant.as_str());
            let problems = route_problems(r, known, has_internet);
            let host_bits = problems.iter().any(|(field, _)| *field == "prefix");
            for (field, message) in problems {
                errors.add(format!("routes[{i}].{field}"), message);
            }
            if !host_bits && !seen.insert((r.tenant.as_str(), r.prefix)) {
                errors.add(
                    format!("routes[{i}].prefix"),
                    format!("duplicate route {} in tenant {:?}", r.prefix, r.tenant),
                );
            }
        }
    }

    /// What is wrong with route `r` on its own in this state (duplicates
    /// aside): (the field under the route, the message). For commits that
    /// change routes only, which need not validate the whole state again.
    pub fn route_problems(&self, r: &RouteConfig) -> Vec<(&'static str, String)> {
        let known = self.tenants.iter().any(|t| t.name == r.tenant);
        route_problems(r, known, self.has_internet())
    }

    fn check_hosts(
        &self,
        errors: &mut Errors,
        tenants: &HashSet<&str>,
        vm_ports: &HashMap<&str, (&str, ipnet::Ipv4Net)>,
    ) {
        let gateways: HashSet<(&str, Ipv4Addr)> =
            vm_ports.values().map(|(t, g)| (*t, g.addr())).collect();
        let subnets: HashSet<(&str, ipnet::Ipv4Net)> =
            vm_ports.values().map(|(t, g)| (*t, g.trunc())).collect();
        // The network or broadcast address of one of the tenant's subnets.
        let edge_of = |tenant: &str, ip: Ipv4Addr| {
            subnets
                .iter()
                .find(|(t, s)| *t == tenant && (ip == s.network() || ip == s.broadcast()))
                .map(|(_, s)| *s)
        };
        let mut ips: HashMap<(String, Ipv4Addr), String> = HashMap::new();
        let mut macs: HashMap<(String, crate::Mac), String> = HashMap::new();
        let mut host =
            |errors: &mut Errors, at: String, tenant: &str, ip: Ipv4Addr, mac: crate::Mac| {
                if !tenants.contains(tenant) {
                    errors.add(format!("{at}.tenant"), format!("unknown tenant {tenant:?}"));
                }
                if !usable_host(ip) {
                    errors.add(format!("{at}.ip"), format!("{ip} is not a host address"));
                } else if gateways.contains(&(tenant, ip)) {
                    errors.add(
                        format!("{at}.ip"),
                        format!("{ip} is a gateway address of tenant {tenant:?}"),
                    );
                } else if let Some(subnet) = edge_of(tenant, ip) {
                    errors.add(
                        format!("{at}.ip"),
                        format!("{ip} is the network or broadcast address of {subnet}"),
                    );
                } else if let Some(other) = ips.insert((tenant.to_string(), ip), at.clone()) {
                    errors.add(
                        format!("{at}.ip"),
                        format!("{ip} is already used by {other} in tenant {tenant:?}"),
                    );
                }
                if !mac.is_unicast() {
                    errors.add(format!("{at}.mac"), format!("{mac} is not a unicast MAC"));
                } else if let Some(other) = macs.insert((tenant.to_string(), mac), at.clone()) {
                    errors.add(
                        format!("{at}.mac"),
                        format!("{mac} is already used by {other} in tenant {tenant:?}"),
                    );
                }
            };
        for (i, n) in self.neighbors.iter().enumerate() {
            let at = format!("neighbors[{i}]");
            host(errors, at.clone(), &n.tenant, n.ip, n.mac);
            hostname(errors, &at, n.hostname.as_deref());
            metadata(errors, &at, &n.metadata);
            for (j, prefix) in n.allowed_addresses.iter().enumerate() {
                if *prefix != prefix.trunc() || prefix.prefix_len() == 0 {
                    errors.add(
                        format!("{at}.allowed_addresses[{j}]"),
                        format!("{prefix} is not a network prefix (host bits set, or /0)"),
                    );
                }
            }
            match vm_ports.get(n.port.as_str()) {
                None => errors.add(
                    format!("{at}.port"),
                    format!("{:?} is not a VM port", n.port),
                ),
                Some((t, _)) if *t != n.tenant => errors.add(
                    format!("{at}.port"),
                    format!(
                        "port {:?} belongs to tenant {t:?}, not {:?}",
                        n.port, n.tenant
                    ),
                ),
                Some((_, gw)) if !gw.contains(&n.ip) => errors.add(
                    format!("{at}.ip"),
                    format!(
                        "{} is outside port {:?}'s subnet {}",
                        n.ip,
                        n.port,
                        gw.trunc()
                    ),
                ),
                Some(_) => {}
            }
        }
        let mut vtep_ips = HashSet::new();
        let local = self.ports.iter().find_map(|p| match p {
            PortConfig::Uplink { ip, .. } => Some(*ip),
            _ => None,
        });
        for (i, v) in self.vteps.iter().enumerate() {
            if local.is_none() {
                errors.add(
                    format!("vteps[{i}]"),
                    "remote VTEPs need an uplink port".into(),
                );
            }
            if !usable_host(v.ip) || Some(v.ip) == local {
                errors.add(
                    format!("vteps[{i}].ip"),
                    format!("{} is not a remote VTEP address", v.ip),
                );
            } else if !vtep_ips.insert(v.ip) {
                errors.add(format!("vteps[{i}].ip"), format!("duplicate VTEP {}", v.ip));
            }
            if !v.mac.is_unicast() {
                errors.add(
                    format!("vteps[{i}].mac"),
                    format!("{} is not a unicast MAC", v.mac),
                );
            }
        }
        for (i, r) in self.remote_vms.iter().enumerate() {
            let at = format!("remote_vms[{i}]");
            host(errors, at.clone(), &r.tenant, r.ip, r.mac);
            hostname(errors, &at, r.hostname.as_deref());
            if !vtep_ips.contains(&r.vtep) {
                errors.add(format!("{at}.vtep"), format!("{} is not in vteps", r.vtep));
            }
        }
    }
}

/// What any rule (firewall or ACL) must get right: whole prefixes, ports
/// only with TCP or UDP and in order, ICMP fields only with ICMP.
fn route_problems(
    r: &RouteConfig,
    tenant_known: bool,
    has_internet: bool,
) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if !tenant_known {
        problems.push(("tenant", format!("unknown tenant {:?}", r.tenant)));
    }
    if r.prefix != r.prefix.trunc() {
        problems.push((
            "prefix",
            format!(
                "{} has host bits set (did you mean {}?)",
                r.prefix,
                r.prefix.trunc()
            ),
        ));
    }
    match r.next_hop {
        NextHopConfig::Via(ip) if !usable_host(ip) => {
            problems.push(("next_hop.via", format!("{ip} is not a usable next hop")));
        }
        NextHopConfig::Internet if !has_internet => problems.push((
            "next_hop",
            "internet needs an uplink port with internet_gateway_mac".into(),
        )),
        _ => {}
    }
    problems
}

fn check_rule(errors: &mut Errors, at: &dyn Fn(&str) -> String, r: &RuleConfig) {
    for (field, net) in [("source", r.source), ("destination", r.destination)] {
        if let Some(net) = net.filter(|n| *n != n.trunc()) {
            errors.add(
                at(field),
                format!("{net} has host bits set (did you mean {}?)", net.trunc()),
            );
        }
    }
    let ports_allowed = matches!(r.protocol, RuleProtocol::Tcp | RuleProtocol::Udp);
    match r.ports {
        Some(_) if !ports_allowed => {
            errors.add(at("ports"), "ports need protocol tcp or udp".into())
        }
        Some([first, last]) if first > last => errors.add(
            at("ports"),
            format!("[{first}, {last}] is not a range of ports, first to last"),
        ),
        _ => {}
    }
    let icmp = r.protocol == RuleProtocol::Icmp;
    if (r.icmp_type.is_some() || r.icmp_code.is_some()) && !icmp {
        errors.add(
            at("icmp_type"),
            "icmp_type and icmp_code need protocol icmp".into(),
        );
    } else if r.icmp_code.is_some() && r.icmp_type.is_none() {
        errors.add(at("icmp_code"), "an ICMP code needs its icmp_type".into());
    }
}

/// A VM's `hostname`, if it has one, must be a DNS label.
fn hostname(errors: &mut Errors, at: &str, name: Option<&str>) {
    if let Some(name) = name.filter(|n| !xvr_dataplane::service::is_dns_label(n)) {
        errors.add(
            format!("{at}.hostname"),
            format!("{name:?} is not a host name (1 to 63 letters, digits and inner hyphens)"),
        );
    }
}

/// A VM's metadata: user data within `MAX_USER_DATA`, an instance id
/// and keys that fit in an HTTP answer line by line.
fn metadata(errors: &mut Errors, at: &str, m: &crate::model::MetadataConfig) {
    let printable = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if let Some(id) = m
        .instance_id
        .as_deref()
        .filter(|id| id.len() > 64 || !printable(id))
    {
        errors.add(
            format!("{at}.metadata.instance_id"),
            format!("{id:?} is not an instance id (1 to 64 printable characters)"),
        );
    }
    if let Some(data) = m
        .user_data
        .as_deref()
        .filter(|d| d.len() > crate::model::MAX_USER_DATA)
    {
        errors.add(
            format!("{at}.metadata.user_data"),
            format!(
                "{} bytes; at most {}",
                data.len(),
                crate::model::MAX_USER_DATA
            ),
        );
    }
    for (i, key) in m.public_keys.iter().enumerate() {
        if key.len() > 16 * 1024 || !printable(key) {
            errors.add(
                format!("{at}.metadata.public_keys[{i}]"),
                "not a one-line public key (printable, 16 KiB at most)".into(),
            );
        }
    }
}

/// Resolvers a tenant may forward to.
const MAX_DNS_UPSTREAMS: usize = 4;
