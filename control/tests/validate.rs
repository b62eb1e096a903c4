//! The desired-state model: the shipped example builds, and each kind of
//! bad input is rejected whole with the field and value named.
use xvr_control::State;

fn example() -> State {
    State::from_json(include_str!("../../examples/two-tenants.json")).unwrap()
}

/// Applies `change` to the example and returns the single error message.
fn rejected(change: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut json: serde_json::Value =
        serde_json::from_str(include_str!("../../examples/two-tenants.json")).unwrap();
    change(&mut json);
    let result = State::from_json(&json.to_string()).and_then(|s| s.build().map(|_| ()));
    result.expect_err("should be rejected").to_string()
}

#[test]
fn example_builds_into_tables() {
    let tables = example().build().unwrap();
    assert_eq!(tables.tenants().len(), 2);
    assert_eq!(tables.ports().len(), 4);
    let acme = tables.tenant_by_vni(1001).unwrap();
    let globex = tables.tenant_by_vni(1002).unwrap();
    let ip = |s: &str| s.parse().unwrap();
    // Same address, two tenants, two different VMs.
    assert_ne!(
        tables.host(acme, ip("10.0.0.10")).unwrap().mac,
        tables.host(globex, ip("10.0.0.10")).unwrap().mac
    );
    assert!(tables.route(globex, ip("198.19.0.1")).is_none());
    assert!(tables.route(acme, ip("198.19.0.1")).is_some());
    assert_eq!(tables.vteps().len(), 1);
}

#[test]
fn json_round_trips() {
    let state = example();
    assert_eq!(State::from_json(&state.to_json()).unwrap(), state);
}

/// A change to the example's JSON.
type Change = Box<dyn FnOnce(&mut serde_json::Value)>;

#[test]
fn bad_input_names_the_field_and_value() {
    use serde_json::json;
    let cases: Vec<(&str, Change)> = vec![
        (
            "tenants[1].vni: duplicate VNI 1001",
            Box::new(|j| j["tenants"][1]["vni"] = json!(1001)),
        ),
        (
            "tenants[0].vni: 16777216 is outside",
            Box::new(|j| j["tenants"][0]["vni"] = json!(16777216)),
        ),
        (
            "tenants[1].name: duplicate tenant name \"acme\"",
            Box::new(|j| j["tenants"][1]["name"] = json!("acme")),
        ),
        (
            "routes[0].prefix: 10.1.2.0/16 has host bits set",
            Box::new(|j| j["routes"][0]["prefix"] = json!("10.1.2.0/16")),
        ),
        (
            "routes[1].tenant: unknown tenant \"initech\"",
            Box::new(|j| j["routes"][1]["tenant"] = json!("initech")),
        ),
        (
            "ports[3].tenant: unknown tenant \"initech\"",
            Box::new(|j| j["ports"][3]["tenant"] = json!("initech")),
        ),
        (
            "ports[2].name: duplicate port \"acme-web\"",
            Box::new(|j| j["ports"][2]["name"] = json!("acme-web")),
        ),
        (
            "ports[2].mac: 02:aa:00:00:00:01 is already the MAC of port \"acme-web\"",
            Box::new(|j| j["ports"][2]["mac"] = json!("02:aa:00:00:00:01")),
        ),
        (
            "ports[2].gateway: 10.0.0.0/23 overlaps 10.0.0.0/24",
            Box::new(|j| j["ports"][2]["gateway"] = json!("10.0.1.1/23")),
        ),
        (
            "ports[1].gateway: 10.0.0.0/24: the gateway cannot be the network",
            Box::new(|j| j["ports"][1]["gateway"] = json!("10.0.0.0/24")),
        ),
        (
            "neighbors[2].port: port \"acme-web\" belongs to tenant \"acme\", not \"globex\"",
            Box::new(|j| j["neighbors"][2]["port"] = json!("acme-web")),
        ),
        (
            "neighbors[0].ip: 10.0.5.10 is outside port \"acme-web\"'s subnet",
            Box::new(|j| j["neighbors"][0]["ip"] = json!("10.0.5.10")),
        ),
        (
            "remote_vms[0].ip: 10.0.0.10 is already used by neighbors[0]",
            Box::new(|j| j["remote_vms"][0]["ip"] = json!("10.0.0.10")),
        ),
        (
            "remote_vms[1].vtep: 198.18.0.9 is not in vteps",
            Box::new(|j| j["remote_vms"][1]["vtep"] = json!("198.18.0.9")),
        ),
        (
            "vteps[0].ip: 198.18.0.1 is not a remote VTEP",
            Box::new(|j| j["vteps"][0]["ip"] = json!("198.18.0.1")),
        ),
        (
            "neighbors[0].ip: 10.0.0.1 is a gateway address",
            Box::new(|j| j["neighbors"][0]["ip"] = json!("10.0.0.1")),
        ),
        (
            "neighbors[0].metadata.user_data: 40000 bytes; at most 32768",
            Box::new(|j| j["neighbors"][0]["metadata"] = json!({ "user_data": "x".repeat(40000) })),
        ),
        (
            "tenants[0].dns.upstreams[0]: 127.0.0.1 is not a unicast address",
            Box::new(|j| j["tenants"][0]["dns"] = json!({ "upstreams": ["127.0.0.1"] })),
        ),
        (
            "tenants[0].dns.domain: \"acme..internal\" is not a domain name",
            Box::new(|j| j["tenants"][0]["dns"] = json!({ "domain": "acme..internal" })),
        ),
        (
            "neighbors[0].hostname: \"web_1.acme\" is not a host name",
            Box::new(|j| j["neighbors"][0]["hostname"] = json!("web_1.acme")),
        ),
        (
            "ports[0].mac: 01:00:5e:00:00:01 is not a unicast MAC",
            Box::new(|j| j["ports"][0]["mac"] = json!("01:00:5e:00:00:01")),
        ),
        (
            "invalid MAC address \"02:00\"",
            Box::new(|j| j["vteps"][0]["mac"] = json!("02:00")),
        ),
        (
            "ports[0].mtu: 100 is outside 626..=9216",
            Box::new(|j| j["ports"][0]["mtu"] = json!(100)),
        ),
        (
            "unknown field `vnii`",
            Box::new(|j| j["tenants"][0]["vnii"] = json!(5)),
        ),
        (
            "routes[0].next_hop: internet needs an uplink",
            Box::new(|j| {
                j["ports"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("internet_gateway_mac")
                    .map(|_| ())
                    .unwrap()
            }),
        ),
    ];
    for (want, change) in cases {
        let message = rejected(change);
        assert!(message.contains(want), "want {want:?} in:\n{message}");
    }
}

/// The example with source NAT for both tenants.
fn with_nat(j: &mut serde_json::Value) {
    j["nat"] = serde_json::json!({
        "source": [
            { "tenant": "acme", "public_ip": "203.0.113.10", "ports": [20000, 65535] },
            { "tenant": "globex", "public_ip": "203.0.113.20", "ports": [20000, 29999] }
        ],
        "static": [{ "tenant": "acme", "public_ip": "203.0.113.30", "vm_ip": "10.0.1.10" }],
        "port_forwards": [{ "tenant": "acme", "public_ip": "203.0.113.10", "protocol": "tcp",
                            "public_ports": [8080, 8081], "vm_ip": "10.0.0.10", "vm_ports": [80, 81] }]
    });
}

#[test]
fn source_nat_and_conntrack_settings_build() {
    let mut json: serde_json::Value =
        serde_json::from_str(include_str!("../../examples/two-tenants.json")).unwrap();
    with_nat(&mut json);
    json["conntrack"] =
        serde_json::json!({ "max_sessions": 1000, "timeouts": { "udp_replied": 60 } });
    json["firewall"] = serde_json::json!([
        { "tenant": "globex", "direction": "ingress", "action": "allow", "protocol": "icmp", "icmp_type": 8 },
        { "tenant": "globex", "direction": "egress", "action": "allow", "protocol": "udp", "ports": [53, 53] }
    ]);
    json["tenants"][1]["egress_default"] = serde_json::json!("deny");
    let state = State::from_json(&json.to_string()).unwrap();
    let tables = state.build().unwrap();
    let globex = tables.tenant_by_vni(1002).unwrap();
    let snat = tables.nat().source(globex).unwrap();
    assert_eq!(
        snat.ip,
        "203.0.113.20".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(snat.ports, (20000, 29999));
    assert_eq!(tables.nat().owner(snat.ip), Some(globex));
    let acme = tables.tenant_by_vni(1001).unwrap();
    assert_eq!(tables.nat().source(acme).unwrap().ports, (20000, 65535));
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    let to = tables.nat().forward(ip("203.0.113.10"), 6, 8081).unwrap();
    assert_eq!((to.tenant, to.ip, to.port), (acme, ip("10.0.0.10"), 81));
    assert!(tables.nat().forward(ip("203.0.113.10"), 17, 8081).is_none());
    assert_eq!(
        tables.nat().static_of_public(ip("203.0.113.30")),
        Some((acme, ip("10.0.1.10")))
    );
    let ct = state.conntrack_config();
    // No rule: ingress denied, egress allowed.
    use xvr_dataplane::table::Action;
    let public = "203.0.113.10".parse().unwrap();
    let fw = tables.firewall(acme).unwrap();
    assert_eq!(
        fw.ingress.decide(ip("198.19.0.1"), public, 6, 8080).1,
        Action::Deny
    );
    assert_eq!(
        fw.egress.decide(ip("10.0.0.10"), ip("198.19.0.1"), 6, 25).1,
        Action::Allow
    );
    assert_eq!(ct.max_sessions, 1000);
    assert_eq!(ct.timeouts.udp_replied, 60);
    assert_eq!(
        ct.timeouts.udp_unreplied, 300,
        "unset: the RFC 4787 default"
    );
    let fw = tables.firewall(globex).unwrap();
    let g_public = "203.0.113.20".parse().unwrap();
    assert_eq!(
        fw.ingress.decide(ip("198.19.0.1"), g_public, 1, 8 << 8).1,
        Action::Allow
    );
    assert_eq!(
        fw.ingress.decide(ip("198.19.0.1"), g_public, 1, 13 << 8).1,
        Action::Deny
    );
    assert_eq!(
        fw.egress
            .decide(ip("10.0.0.10"), ip("198.19.0.1"), 17, 53)
            .1,
        Action::Allow
    );
    assert_eq!(
        fw.egress
            .decide(ip("10.0.0.10"), ip("198.19.0.1"), 17, 54)
            .1,
        Action::Deny,
        "egress_default deny"
    );
    assert_eq!(State::from_json(&state.to_json()).unwrap(), state);
}

#[test]
fn bad_nat_and_conntrack_settings_name_the_field() {
    use serde_json::json;
    let cases: Vec<(&str, Change)> = vec![
        (
            "nat.source[0].tenant: unknown tenant \"nobody\"",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["source"][0]["tenant"] = json!("nobody");
            }),
        ),
        (
            "nat.source[1].tenant: tenant \"acme\" already has source NAT (nat.source[0])",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["source"][1]["tenant"] = json!("acme");
            }),
        ),
        (
            "nat.source[1].public_ip: 203.0.113.10 already belongs to tenant \"acme\"",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["source"][1]["public_ip"] = json!("203.0.113.10");
            }),
        ),
        (
            "nat.source[0].public_ip: 198.18.0.1 is the uplink's VTEP address",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["source"][0]["public_ip"] = json!("198.18.0.1");
            }),
        ),
        (
            "nat.source[0].ports: [2000, 1000] is not a range",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["source"][0]["ports"] = json!([2000, 1000]);
            }),
        ),
        (
            "nat.static[0].public_ip: 203.0.113.10 is already used by source NAT (nat.source[0])",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["static"][0]["public_ip"] = json!("203.0.113.10");
            }),
        ),
        (
            "nat.port_forwards[0].public_ports: [8080, 30000] overlaps the source NAT ports [20000, 65535] of 203.0.113.10",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["port_forwards"][0]["public_ports"] = json!([8080, 30000]);
                j["nat"]["port_forwards"][0]["vm_ports"] = json!([8080, 30000]);
            }),
        ),
        (
            "nat.port_forwards[1].public_ports: 203.0.113.10 tcp port 8081 is already forwarded (nat.port_forwards[0])",
            Box::new(|j| {
                with_nat(j);
                let mut second = j["nat"]["port_forwards"][0].clone();
                second["public_ports"] = json!([8081, 8081]);
                second["vm_ports"] = json!([22, 22]);
                j["nat"]["port_forwards"].as_array_mut().unwrap().push(second);
            }),
        ),
        (
            "nat.port_forwards[0].vm_ports: [80, 80] must be a range as long as public_ports",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["port_forwards"][0]["vm_ports"] = json!([80, 80]);
            }),
        ),
        (
            "nat.port_forwards[0].public_ip: 203.0.113.20 already belongs to tenant \"globex\"",
            Box::new(|j| {
                with_nat(j);
                j["nat"]["port_forwards"][0]["public_ip"] = json!("203.0.113.20");
            }),
        ),
        (
            "firewall[0].ports: ports need protocol tcp or udp",
            Box::new(|j| {
                j["firewall"] = json!([{ "tenant": "acme", "direction": "egress", "action": "deny",
                                         "protocol": "icmp", "ports": [1, 2] }]);
            }),
        ),
        (
            "firewall[0].source: 10.0.0.1/8 has host bits set",
            Box::new(|j| {
                j["firewall"] = json!([{ "tenant": "acme", "direction": "ingress", "action": "allow",
                                         "source": "10.0.0.1/8" }]);
            }),
        ),
        (
            "firewall[0].tenant: unknown tenant \"initech\"",
            Box::new(|j| {
                j["firewall"] = json!([{ "tenant": "initech", "direction": "ingress", "action": "allow" }]);
            }),
        ),
        (
            "firewall[0].icmp_type: icmp_type and icmp_code need protocol icmp",
            Box::new(|j| {
                j["firewall"] = json!([{ "tenant": "acme", "direction": "egress", "action": "deny",
                                         "protocol": "udp", "icmp_type": 8 }]);
            }),
        ),
        (
            "network_acls[0].tenant: unknown tenant \"initech\"",
            Box::new(|j| j["network_acls"] = json!([{ "tenant": "initech", "tier": "10.0.1.0/24" }])),
        ),
        (
            "network_acls[0].tier: 10.0.1.1/24 has host bits set",
            Box::new(|j| j["network_acls"] = json!([{ "tenant": "acme", "tier": "10.0.1.1/24" }])),
        ),
        (
            "network_acls[1].tier: 10.0.0.0/16 overlaps tier 10.0.1.0/24 of network_acls[0]",
            Box::new(|j| {
                j["network_acls"] = json!([{ "tenant": "acme", "tier": "10.0.1.0/24" },
                                           { "tenant": "acme", "tier": "10.0.0.0/16" }]);
            }),
        ),
        (
            "network_acls[0].rules[1].ports: [90, 80] is not a range of ports",
            Box::new(|j| {
                j["network_acls"] = json!([{ "tenant": "acme", "tier": "10.0.1.0/24", "rules": [
                    { "direction": "ingress", "action": "allow", "protocol": "icmp" },
                    { "direction": "ingress", "action": "allow", "protocol": "tcp", "ports": [90, 80] }
                ] }]);
            }),
        ),
        (
            "conntrack.max_sessions: must be at least 1",
            Box::new(|j| j["conntrack"] = json!({ "max_sessions": 0 })),
        ),
        (
            "conntrack.timeouts.udp_replied: must be at least 1 second",
            Box::new(|j| j["conntrack"] = json!({ "timeouts": { "udp_replied": 0 } })),
        ),
    ];
    for (want, change) in cases {
        let message = rejected(change);
        assert!(message.contains(want), "want {want:?} in:\n{message}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let message = rejected(|j| {
        j["tenants"][1]["vni"] = serde_json::json!(1001);
        j["routes"][0]["prefix"] = serde_json::json!("10.0.0.1/8");
    });
    assert_eq!(message.lines().count(), 2, "{message}");
}

/// The fuzz target's state, with every feature on, stays valid.
#[test]
fn the_fuzzers_every_feature_state_builds() {
    let state = State::from_json(include_str!("../../fuzz/every-feature.json")).unwrap();
    let tables = state.build().unwrap();
    assert_eq!(tables.tenants().len(), 2);
    assert!(tables.acls(0).is_some());
}

/// What serde and the address parsers let through and the model must
/// not: an array for an object, odd spellings, addresses at a subnet's
/// edges, a public address that is the tenant's own gateway.
#[test]
fn loose_shapes_and_spellings_are_refused_by_field() {
    use serde_json::json;
    let cases: Vec<(&str, Change)> = vec![
        (
            "nat: an array where an object belongs",
            Box::new(|j| j["nat"] = json!([[]])),
        ),
        (
            "tenants[0]: an array where an object belongs",
            Box::new(|j| j["tenants"][0] = json!(["acme", 1001])),
        ),
        (
            "routes[1].prefix: \"010.9.0.0/16\" is not a prefix as written",
            Box::new(|j| j["routes"][1]["prefix"] = json!("010.9.0.0/16")),
        ),
        (
            "invalid MAC address \"+2:+a:00:00:00:01\"",
            Box::new(|j| j["ports"][1]["mac"] = json!("+2:+a:00:00:00:01")),
        ),
        (
            "neighbors[0].ip: 10.0.0.0 is the network or broadcast address of 10.0.0.0/24",
            Box::new(|j| j["neighbors"][0]["ip"] = json!("10.0.0.0")),
        ),
        (
            "remote_vms[0].ip: 10.0.0.255 is the network or broadcast address of 10.0.0.0/24",
            Box::new(|j| j["remote_vms"][0]["ip"] = json!("10.0.0.255")),
        ),
        (
            "nat.static[0].public_ip: 10.0.0.1 is a gateway address of tenant \"acme\"",
            Box::new(|j| {
                j["nat"]["static"] =
                    json!([{"tenant": "acme", "public_ip": "10.0.0.1", "vm_ip": "10.0.0.10"}])
            }),
        ),
    ];
    for (want, change) in cases {
        let got = rejected(change);
        assert!(got.contains(want), "want {want:?} in:\n{got}");
    }
    // A whole state that is an array is no state.
    let got = State::from_json("[]").expect_err("an array").to_string();
    assert!(got.contains("a state is a JSON object"), "{got}");
}
