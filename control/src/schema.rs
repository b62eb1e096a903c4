//! `schema`: the tables a controller may fill, described as data (P4Info
//! is the model): each table's key fields and how they match (exact, lpm,
//! range, ternary), its actions and their parameters, and its limits, so a
//! controller discovers them instead of hard-coding them. The key fields
//! named here are the ones `commit` finds entries by (`change::TABLES`),
//! which a test holds them to.
use serde_json::{json, Value};

/// The schema's version: bumped when a table or field changes.
pub const SCHEMA_VERSION: u32 = 3;

fn key(field: &str, kind: &str) -> Value {
    json!({ "field": field, "match": kind })
}

fn table(name: &str, keys: Vec<Value>, actions: Value, limits: Value, doc: &str) -> Value {
    json!({ "name": name, "key": keys, "actions": actions, "limits": limits, "doc": doc })
}

pub fn schema() -> Value {
    let tenant = || key("tenant", "exact");
    let tables = vec![
        table(
            "tenants",
            vec![key("name", "exact")],
            json!([{ "name": "tenant", "params": ["vni", "router_mac", "egress_default", "limits", "dns"] }]),
            json!({ "vni": [1, 16_777_215], "tenants": 65_535,
                    "limits": ["sessions", "new_sessions_per_second", "fragments",
                               "icmp_errors_per_second", "arp_replies_per_second",
                               "service_requests_per_second",
                               "service_requests_per_port_second"] }),
            "A tenant: its VRF, its VNI on the overlay, its fair shares of each worker.",
        ),
        table(
            "ports",
            vec![key("name", "exact")],
            json!([
                { "name": "vm", "params": ["mac", "tenant", "gateway", "port_security"] },
                { "name": "uplink", "params": ["mac", "ip", "internet_gateway_mac", "mtu"] }
            ]),
            json!({ "live_changes": true }),
            "Interfaces xvrd attaches to; added ones must exist with a receive queue per worker.",
        ),
        table(
            "routes",
            vec![tenant(), key("prefix", "lpm")],
            json!([{ "name": "next_hop", "params": ["connected | {\"via\": ip} | internet | blackhole"] }]),
            json!({ "prefix_len": [0, 32] }),
            "The tenant's VRF; the longest prefix wins.",
        ),
        table(
            "neighbors",
            vec![tenant(), key("ip", "exact")],
            json!([{ "name": "deliver", "params": ["mac", "port", "allowed_addresses", "hostname", "metadata"] }]),
            json!({}),
            "VMs on local ports; DHCP gives each its address and hostname.",
        ),
        table(
            "vteps",
            vec![key("ip", "exact")],
            json!([{ "name": "underlay_next_hop", "params": ["mac"] }]),
            json!({}),
            "Remote VTEPs on the underlay.",
        ),
        table(
            "remote_vms",
            vec![tenant(), key("ip", "exact")],
            json!([{ "name": "encap", "params": ["mac", "vtep"] }]),
            json!({}),
            "VMs behind remote VTEPs, reached through VXLAN.",
        ),
        table(
            "nat.source",
            vec![tenant()],
            json!([{ "name": "snat", "params": ["public_ip", "ports", "filtering"] }]),
            json!({ "ports": [1, 65535], "live_public_ip_changes": false }),
            "A tenant's internet traffic leaves from its public address.",
        ),
        table(
            "nat.static",
            vec![key("public_ip", "exact")],
            json!([{ "name": "one_to_one", "params": ["tenant", "vm_ip"] }]),
            json!({ "live_public_ip_changes": false }),
            "A public address that is one VM's, every port, both ways.",
        ),
        table(
            "nat.port_forwards",
            vec![
                key("public_ip", "exact"),
                key("protocol", "exact"),
                key("public_ports", "range"),
            ],
            json!([{ "name": "forward", "params": ["tenant", "vm_ip", "vm_ports"] }]),
            json!({ "protocol": ["tcp", "udp"], "live_public_ip_changes": false }),
            "Public ports forwarded to a VM's ports; ranges of equal length.",
        ),
        table(
            "firewall",
            vec![
                tenant(),
                key("direction", "exact"),
                key("source", "ternary"),
                key("destination", "ternary"),
                key("protocol", "ternary"),
                key("ports", "range"),
                key("icmp_type", "ternary"),
                key("icmp_code", "ternary"),
            ],
            json!([{ "name": "allow", "params": [] }, { "name": "deny", "params": [] }]),
            json!({ "priority": "list order: the first rule that matches a session's first packet decides",
                    "defaults": { "ingress": "deny", "egress": "tenant egress_default (allow)" } }),
            "Stateful rules at the tenant's public edge; entries are found by their whole content.",
        ),
        table(
            "network_acls",
            vec![tenant(), key("tier", "lpm")],
            json!([{ "name": "acl", "params": ["rules: [{direction, action, protocol, source, destination, ports, icmp_type, icmp_code}]"] }]),
            json!({ "priority": "rule order, first match", "default": "deny" }),
            "A tier's ordered rules for routed traffic into and out of it, stateful.",
        ),
    ];
    json!({
        "version": SCHEMA_VERSION,
        "tables": tables,
        "match_kinds": {
            "exact": "equal to the value",
            "lpm": "the longest prefix containing the address",
            "range": "first..=last",
            "ternary": "a prefix or value, or absent for any; entries ordered by position",
        },
        "limits": {
            "request_bytes": crate::server::MAX_REQUEST,
        },
    })
}
