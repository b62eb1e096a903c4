//! Config churn under traffic: while a UDP stream runs from vm1 to vm2
//! through xvrd, commits change 100,000 routes (in batches of 1,000),
//! replace firewall rules and add and remove static NAT addresses (in
//! the tables and the steering program's map); the stream, whose path
//! none of them touches, loses nothing (iperf3 counts at the receiver). A route that does
//! affect a flow takes effect: traffic follows it, then stops when it
//! becomes a blackhole.
mod common;

use common::{call, socket_beside, start_xvrd, stop_xvrd};
use serde_json::{json, Value};
use xvr_testkit::netns::{require_root, Rig};

const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.1.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.1.10", "mac": "02:0a:00:00:01:10", "port": "a2",
      "allowed_addresses": ["10.5.0.0/16"] }
  ]
}"#;

fn routes(action: &str, batch: u32) -> Value {
    let changes: Vec<Value> = (0..1000u32)
        .map(|i| {
            let prefix = format!("10.{}.{}.{}/26", 100 + batch, i / 4, (i % 4) * 64);
            let entry = json!({ "tenant": "t", "prefix": prefix, "next_hop": "blackhole" });
            json!({ "action": action, "table": "routes", "entry": entry })
        })
        .collect();
    json!({ "op": "commit", "changes": changes })
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn unaffected_flows_lose_nothing_while_routes_and_rules_churn() {
    require_root("running xvrd over veth");
    let (_dir, config) = common::state_file(STATE);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("churn");
    let (host, vm1, vm2) = common::two_tiers(&mut rig);
    rig.exec(&vm2, &["ip", "addr", "add", "10.5.0.1/32", "dev", "lo"]);
    let internet = rig.namespace();
    rig.veth(&host, "up0", None, &internet, "eth0", None);
    let daemon = start_xvrd(&rig, &host, &config, &["up0", "a1", "a2"]);
    // Forwarding (and both VMs' ARP) works before the stream starts.
    let ready = ["ping", "-c", "1", "-W", "2", "10.0.1.10"];
    assert!(
        rig.try_exec(&vm1, &ready),
        "vm1 reaches vm2 before the churn"
    );

    let (stream, generations, overlapped) = std::thread::scope(|s| {
        // Long enough for the whole churn: each commit is fsynced to the
        // state directory before it is answered (13.4 s for the churn on
        // a debug build here, on a quiet machine).
        let stream = s.spawn(|| rig.iperf3(&vm2, &vm1, "10.0.1.10", 24, &["-u", "-b", "10M"]));
        std::thread::sleep(std::time::Duration::from_millis(800));
        let mut generations = Vec::new();
        let churn_started = std::time::Instant::now();
        // 100 commits of 1,000 route changes: 50 adds, each undone.
        for batch in 0..50 {
            for action in ["add", "del"] {
                let result = call(&socket, routes(action, batch));
                generations.push(result["generation"].as_u64().unwrap());
            }
            // And a firewall rule replaced (egress from this tenant's
            // public side: no path of the stream).
            let rule = json!({ "tenant": "t", "direction": "egress", "action": "deny",
                               "protocol": "tcp", "ports": [25, 25] });
            for action in ["add", "del"] {
                let change = json!({ "action": action, "table": "firewall", "entry": rule });
                call(&socket, json!({ "op": "commit", "changes": [change] }));
            }
            // And a public address for vm1 (its internet traffic only).
            let nat = json!({ "tenant": "t", "public_ip": format!("203.0.113.{}", 1 + batch % 8),
                              "vm_ip": "10.0.0.10" });
            for action in ["add", "del"] {
                let change = json!({ "action": action, "table": "nat.static", "entry": nat });
                call(&socket, json!({ "op": "commit", "changes": [change] }));
            }
        }
        let overlapped = !stream.is_finished();
        eprintln!("churn took {:?}", churn_started.elapsed());
        (stream.join().unwrap(), generations, overlapped)
    });
    let stream = stream.unwrap_or_else(|e| panic!("iperf3 during the churn: {e}"));
    assert!(overlapped, "the churn outlasted the stream: {stream:?}");
    assert!(stream.bytes_received > 1_000_000, "{stream:?}");
    assert_eq!(
        stream.lost_packets, 0,
        "the stream lost packets: {stream:?}"
    );
    assert!(
        generations.windows(2).all(|w| w[0] != w[1]),
        "{generations:?}"
    );

    // A change that does affect a flow: 10.5.0.0/16 via vm2, then a
    // blackhole.
    let ping = ["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.5.0.1"];
    assert!(!rig.try_exec(&vm1, &ping), "no route yet");
    let route =
        json!({ "tenant": "t", "prefix": "10.5.0.0/16", "next_hop": { "via": "10.0.1.10" } });
    call(
        &socket,
        json!({ "op": "commit", "changes": [{ "action": "add", "table": "routes", "entry": route }] }),
    );
    assert!(rig.try_exec(&vm1, &ping), "traffic follows the new route");
    let hole = json!({ "tenant": "t", "prefix": "10.5.0.0/16", "next_hop": "blackhole" });
    call(
        &socket,
        json!({ "op": "commit", "changes": [{ "action": "replace", "table": "routes", "entry": hole }] }),
    );
    assert!(!rig.try_exec(&vm1, &ping), "a blackhole stops it");
    let log = stop_xvrd(daemon);
    assert!(log.contains("blackhole"), "{log}");
}
