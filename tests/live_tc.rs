//! The fast path in tc (`xvrd --xdp-fast-path tc`) beside traffic it
//! does not take: TCP routed between two tiers of a tenant leaves the VMs
//! as GSO packets (the steering program is attached in generic mode, so
//! the VMs keep GSO), too big for a worker's socket. The tc program sends
//! them through the segmenter, tagged with their port, and the workers
//! route the segments. iperf3 runs both ways; the steering program's
//! counters show the segmenter carried the packets; the segmenter is gone
//! once xvrd stops.
mod common;

use common::{socket_beside, start_xvrd_with, stop_xvrd, xvrctl};
use xvr_testkit::netns::{privileged, Rig};

#[test]
fn routed_gso_packets_go_through_the_segmenter_to_the_workers() {
    if !privileged("running xvrd over veth") {
        return;
    }
    let (_dir, config) = common::state_file(common::TWO_TIERS);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("tc-seg");
    let (host, vm1, vm2) = common::two_tiers(&mut rig);
    let args = ["--xdp-fast-path", "tc"];
    let daemon = start_xvrd_with(&rig, &host, &config, &["a1", "a2", "xvrseg1"], &args);
    let ping = ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.10"];
    assert!(rig.try_exec(&vm1, &ping), "vm1 -> vm2 across the tiers");

    let out = rig.iperf3(&vm2, &vm1, "10.0.1.10", 2, &[]);
    let back = rig.iperf3(&vm2, &vm1, "10.0.1.10", 2, &["-R"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stats = xvrctl(&socket, &["--json", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let log = stop_xvrd(daemon);
    for (way, tcp) in [("vm1 -> vm2", out), ("vm2 -> vm1", back)] {
        let tcp = tcp.unwrap_or_else(|e| panic!("TCP {way}: {e}\n{log}"));
        assert!(tcp.bytes_received > 1_000_000, "TCP {way}: {tcp:?}\n{log}");
    }
    let xdp = &stats["xdp"];
    let count = |decision: &str| xdp[decision].as_u64().unwrap_or(0);
    // Hundreds of GSO packets each way, segmented and routed by the
    // workers; none dropped for want of a segmenter.
    assert!(count("to_segmenter") > 100, "{stats}");
    assert!(count("pass_to_segment") >= count("to_segmenter"), "{stats}");
    assert_eq!(count("drop_too_big"), 0, "{stats}");
    assert!(
        stats["events"]["routed"].as_u64().unwrap() > 1000,
        "{stats}"
    );
    assert!(
        !rig.try_exec(&host, &["ip", "link", "show", "xvrseg0"]),
        "the segmenter outlived xvrd"
    );
}

/// Source NAT beside the fast path in tc, on two workers: the VM's TCP
/// to the internet (to the router's MAC) and the download back (to the
/// public address, GSO from the internet side, whose veth keeps GSO too)
/// both go through the segmenter (a queue per worker) to the workers,
/// which translate them and hand each flow to its session's owner.
#[test]
fn source_nat_works_through_the_segmenter() {
    if !privileged("running xvrd with source NAT over veth") {
        return;
    }
    let state = r#"{
      "tenants": [{ "name": "t", "vni": 100 }],
      "ports": [
        { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
          "internet_gateway_mac": "02:00:00:00:00:fe" },
        { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" }
      ],
      "routes": [{ "tenant": "t", "prefix": "0.0.0.0/0", "next_hop": "internet" }],
      "neighbors": [{ "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" }],
      "nat": { "source": [{ "tenant": "t", "public_ip": "203.0.113.10" }] }
    }"#;
    let (_dir, config) = common::state_file(state);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("tc-nat");
    let host = rig.namespace();
    let vm = rig.vm_queues(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10", 2);
    rig.exec(&vm, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    let internet = rig.namespace();
    rig.veth_queues(
        &host,
        "up0",
        Some("198.18.0.1/24"),
        &internet,
        "eth0",
        Some("198.18.0.254/24"),
        2,
    );
    rig.exec(
        &host,
        &["ip", "link", "set", "up0", "address", "02:00:00:00:00:01"],
    );
    for args in [
        &["ip", "link", "set", "eth0", "address", "02:00:00:00:00:fe"][..],
        &["ip", "link", "set", "lo", "up"],
        &["ip", "addr", "add", "198.19.0.10/32", "dev", "lo"],
        &["ip", "route", "add", "203.0.113.0/24", "via", "198.18.0.1"],
    ] {
        rig.exec(&internet, args);
    }
    let args = ["--xdp-fast-path", "tc", "--workers", "2"];
    let daemon = start_xvrd_with(&rig, &host, &config, &["up0", "a1", "xvrseg1"], &args);
    let ping = ["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.19.0.10"];
    assert!(rig.try_exec(&vm, &ping), "ping through source NAT");
    let up = rig.iperf3(&internet, &vm, "198.19.0.10", 2, &[]);
    let down = rig.iperf3(&internet, &vm, "198.19.0.10", 2, &["-R"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stats = xvrctl(&socket, &["--json", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let log = stop_xvrd(daemon);
    for (way, tcp) in [("vm -> internet", up), ("internet -> vm", down)] {
        let tcp = tcp.unwrap_or_else(|e| panic!("TCP {way}: {e}\n{log}"));
        assert!(tcp.bytes_received > 1_000_000, "TCP {way}: {tcp:?}\n{log}");
    }
    let xdp = &stats["xdp"];
    assert!(xdp["to_segmenter"].as_u64().unwrap_or(0) > 100, "{stats}");
    assert_eq!(xdp["drop_too_big"].as_u64().unwrap_or(0), 0, "{stats}");
    let events = &stats["events"];
    assert!(events["nat_out"].as_u64().unwrap_or(0) > 1000, "{stats}");
}
