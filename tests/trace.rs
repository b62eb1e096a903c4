//! `trace` over the example's tables: routed between tiers, out through
//! source NAT, into the overlay, and refused by the egress firewall, each
//! with the stages that decided it; bad descriptions name the field.
use serde_json::{json, Value};
use xvr_control::State;

fn trace(request: Value) -> Result<Value, String> {
    let tables = State::from_json(include_str!("../examples/two-tenants.json"))
        .unwrap()
        .build()
        .unwrap();
    let Value::Object(request) = request else {
        panic!()
    };
    xvr::trace::trace(&tables, &request).map_err(|e| e.message)
}

fn stages(t: &Value) -> Vec<&str> {
    t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect()
}

#[test]
fn traces_say_what_each_stage_decided() {
    let routed = trace(
        json!({ "port": "acme-web", "src": "10.0.0.10", "dst": "10.0.1.10",
                               "protocol": "tcp", "dport": 5432 }),
    )
    .unwrap();
    assert_eq!(
        routed["action"],
        json!({ "tx": "acme-db", "port_role": "vm" }),
        "{routed}"
    );
    assert_eq!(stages(&routed), ["ingress", "l2", "l3"], "{routed}");
    assert_eq!(routed["output"]["ttl"], 63);

    let out = trace(
        json!({ "port": "acme-web", "src": "10.0.0.10", "dst": "198.19.0.10",
                            "protocol": "udp", "dport": 53 }),
    )
    .unwrap();
    assert_eq!(out["action"]["tx"], "up0", "{out}");
    assert_eq!(out["output"]["src"], "203.0.113.10", "{out}");
    assert_eq!(out["events"]["session_new"], 1, "{out}");
    assert!(stages(&out).contains(&"nat_out"), "{out}");

    let overlay =
        trace(json!({ "port": "acme-web", "src": "10.0.0.10", "dst": "10.0.0.20" })).unwrap();
    assert_eq!(overlay["output"]["dport"], 4789, "{overlay}");
    assert_eq!(
        overlay["output"]["vxlan_inner"]["dst"], "10.0.0.20",
        "{overlay}"
    );

    let smtp = trace(
        json!({ "port": "acme-web", "src": "10.0.0.10", "dst": "198.19.0.10",
                             "protocol": "tcp", "dport": 25 }),
    )
    .unwrap();
    assert_eq!(
        smtp["action"],
        json!({ "drop": "firewall_egress_denied" }),
        "{smtp}"
    );
    assert_eq!(smtp["output"], Value::Null);
}

#[test]
fn a_bad_description_names_the_field() {
    let cases = [
        (
            json!({ "src": "10.0.0.10", "dst": "10.0.1.10" }),
            "port: missing",
        ),
        (
            json!({ "port": "nope", "src": "10.0.0.10", "dst": "10.0.1.10" }),
            "port: no port named \"nope\"",
        ),
        (
            json!({ "port": "acme-web", "src": "10.0.0", "dst": "10.0.1.10" }),
            "src: \"10.0.0\" is not an IPv4",
        ),
        (
            json!({ "port": "acme-web", "src": "10.0.0.10", "dst": "10.0.1.10", "dport": 70000 }),
            "dport: 70000",
        ),
        (
            json!({ "port": "acme-web", "src": "10.0.0.10", "dst": "10.0.1.10", "protocol": "sctp" }),
            "protocol: \"sctp\"",
        ),
    ];
    for (request, want) in cases {
        let error = trace(request).unwrap_err();
        assert!(error.contains(want), "want {want:?} in {error:?}");
    }
}
