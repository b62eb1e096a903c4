//! The fast path in tc (`xvrd --xdp-fast-path tc`) beside traffic it
//! does not take: TCP routed between two tiers of a tenant leaves the VMs
//! as GSO packets (the steering program is attached in generic mode, so
//! the VMs keep GSO), too big for a worker's socket. The tc program sends
//! them through the segmenter, tagged with their port, and the workers
//! route the segments (flow offload off: with it on, the tc program
//! forwards established flows itself). iperf3 runs both ways; the
//! steering program's counters show the segmenter carried the packets;
//! the segmenter is gone once xvrd stops. With flow offload on, TCP
//! through source NAT is carried by the tc program, GSO packets whole.
mod common;

use common::{count, socket_beside, start_xvrd_with, stop_xvrd, xvrctl};
use xvr_testkit::netns::{require_root, Rig};
use xvr_testkit::overlay::Overlay;

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn routed_gso_packets_go_through_the_segmenter_to_the_workers() {
    require_root("running xvrd over veth");
    let (_dir, config) = common::state_file(common::TWO_TIERS);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("tc-seg");
    let (host, vm1, vm2) = common::two_tiers(&mut rig);
    let args = ["--xdp-fast-path", "tc", "--flow-offload", "off"];
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
    // The clsact qdiscs xvrd added went with it.
    for port in ["a1", "a2"] {
        let qdiscs = rig.exec(&host, &["tc", "qdisc", "show", "dev", port]);
        let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
        assert!(!qdiscs.contains("clsact"), "{port}: {qdiscs}");
    }
}

/// Source NAT beside the fast path in tc, on two workers: the VM's TCP
/// to the internet (to the router's MAC) and the download back (to the
/// public address, GSO from the internet side, whose veth keeps GSO too)
/// both go through the segmenter (a queue per worker) to the workers,
/// which translate them and hand each flow to its session's owner.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn source_nat_works_through_the_segmenter() {
    require_root("running xvrd with source NAT over veth");
    let (_dir, config) = common::state_file(common::SNAT_STATE);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("tc-nat");
    let (host, vm, internet) = common::internet_rig(&mut rig, 2);
    let args = [
        "--xdp-fast-path",
        "tc",
        "--workers",
        "2",
        "--flow-offload",
        "off",
    ];
    let daemon = start_xvrd_with(&rig, &host, &config, &["up0", "a1", "xvrseg1"], &args);
    let server = common::INTERNET_SERVER;
    let ping = ["ping", "-c", "2", "-i", "0.2", "-W", "2", server];
    assert!(rig.try_exec(&vm, &ping), "ping through source NAT");
    let up = rig.iperf3(&internet, &vm, server, 2, &[]);
    let down = rig.iperf3(&internet, &vm, server, 2, &["-R"]);
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

/// Flow offload in tc mode: once the workers have translated a TCP
/// flow's first packets, the tc program rewrites its GSO packets whole
/// (with the checksum helpers, which keep a checksum left to offload
/// right) and redirects them, both ways. The kernels at both ends judge
/// the checksums: iperf3 completes.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn source_nat_is_offloaded_to_the_tc_program() {
    require_root("running xvrd with source NAT over veth");
    let (_dir, config) = common::state_file(common::SNAT_STATE);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("tc-offload");
    let (host, vm, internet) = common::internet_rig(&mut rig, 1);
    let args = ["--xdp-fast-path", "tc"];
    let daemon = start_xvrd_with(&rig, &host, &config, &["up0", "a1", "xvrseg1"], &args);
    let server = common::INTERNET_SERVER;
    let stats = || {
        let out = xvrctl(&socket, &["--json", "stats"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let before = stats();
    let up = rig.iperf3(&internet, &vm, server, 3, &[]);
    let down = rig.iperf3(&internet, &vm, server, 3, &["-R"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = stats();
    let log = stop_xvrd(daemon);
    for (way, tcp) in [("vm -> internet", up), ("internet -> vm", down)] {
        let tcp = tcp.unwrap_or_else(|e| panic!("TCP {way}: {e}\n{log}"));
        eprintln!(
            "{way}: {:.2} Gbit/s, {} retransmits",
            tcp.bits_per_second / 1e9,
            tcp.retransmits
        );
        assert!(tcp.bytes_received > 10_000_000, "TCP {way}: {tcp:?}\n{log}");
    }
    let fast = count(&after, &["xdp", "fast_flow"]) - count(&before, &["xdp", "fast_flow"]);
    let segmented =
        count(&after, &["xdp", "to_segmenter"]) - count(&before, &["xdp", "to_segmenter"]);
    let translated = count(&after, &["events", "nat_out"]) + count(&after, &["events", "nat_in"]);
    eprintln!("tc program: {fast} packets; segmenter {segmented}; workers translated {translated}");
    assert!(
        fast > 1000 && fast > 9 * segmented,
        "the tc program carried {fast} packets, the segmenter {segmented}\n{after}\n{log}"
    );
    assert_eq!(count(&after, &["xdp", "drop_too_big"]), 0, "{after}");
}

/// iperf3 vm1 -> vm2 over the overlay rig with a 1500-byte underlay, the
/// fast path in tc; `setup` adjusts the rig first. The transfer must
/// complete; returns xvrd's stats and log.
fn over_a_1500_underlay(
    name: &str,
    setup: impl FnOnce(&Rig, &Overlay),
) -> (serde_json::Value, String) {
    let state = xvr_testkit::overlay::STATE.replace(r#""mtu": 1600"#, r#""mtu": 1500"#);
    assert_ne!(state, xvr_testkit::overlay::STATE);
    let (_dir, config) = common::state_file(&state);
    let socket = socket_beside(&config);
    let mut rig = Rig::new(name);
    let o = rig.overlay(false);
    rig.exec(&o.host, &["ip", "link", "set", "up0", "mtu", "1500"]);
    rig.exec(&o.kernel, &["ip", "link", "set", "eth0", "mtu", "1500"]);
    setup(&rig, &o);
    let args = ["--xdp-fast-path", "tc"];
    let daemon = start_xvrd_with(&rig, &o.host, &config, &["up0", "a1", "xvrseg1"], &args);
    let tcp = rig.iperf3(&o.vm2, &o.vm1, "10.0.0.20", 2, &[]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stats = xvrctl(&socket, &["--json", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let log = stop_xvrd(daemon);
    let tcp = tcp.unwrap_or_else(|e| panic!("TCP vm1 -> vm2: {e}\n{log}"));
    eprintln!(
        "{:.2} Gbit/s, {} retransmits; fast_encap {}, to_segmenter {}, tc_to_workers {}",
        tcp.bits_per_second / 1e9,
        tcp.retransmits,
        count(&stats, &["xdp", "fast_encap"]),
        count(&stats, &["xdp", "to_segmenter"]),
        count(&stats, &["xdp", "tc_to_workers"]),
    );
    assert!(tcp.bytes_received > 1_000_000, "{tcp:?}\n{log}");
    (stats, log)
}

/// With the underlay's MTU leaving the VMs exactly theirs (1500 less
/// VXLAN's 50), a VM's GSO packets bridged into the overlay are judged
/// by their segments' own headers: each fits, so the tc program
/// encapsulates them whole instead of sending them to the segmenter.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn bridged_gso_packets_that_fit_a_tight_underlay_stay_on_the_fast_path() {
    require_root("running xvrd over veth");
    let (stats, log) = over_a_1500_underlay("tc-tight", |rig, o| {
        for (ns, dev) in [
            (&o.host, "a1"),
            (&o.vm1, "eth0"),
            (&o.kernel, "vxlan100"),
            (&o.kernel, "b1"),
            (&o.vm2, "eth0"),
        ] {
            rig.exec(ns, &["ip", "link", "set", dev, "mtu", "1450"]);
        }
    });
    let fast = count(&stats, &["xdp", "fast_encap"]);
    let segmented = count(&stats, &["xdp", "to_segmenter"]);
    assert!(
        fast > 1000 && fast > 9 * segmented,
        "fast_encap {fast}, to_segmenter {segmented}\n{stats}\n{log}"
    );
}

/// A VM whose MTU the underlay cannot carry (1500 over a 1500-byte
/// underlay), sending TCP without TSO: its full-sized segments, too big
/// once encapsulated, are left by the tc program to the workers, which
/// answer "fragmentation needed"; the VM's kernel lowers its path MTU,
/// the later segments fit and go by the fast path, and the transfer
/// completes.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn full_sized_segments_too_big_for_the_underlay_go_to_the_workers() {
    require_root("running xvrd over veth");
    let (stats, log) = over_a_1500_underlay("tc-nogso", |rig, o| {
        rig.exec(&o.vm1, &["ethtool", "-K", "eth0", "tso", "off"]);
    });
    let frag_needed = count(&stats, &["events", "icmp_error_sent"]);
    assert!(
        frag_needed > 0,
        "no ICMP error from the workers\n{stats}\n{log}"
    );
    let fast = count(&stats, &["xdp", "fast_encap"]);
    assert!(fast > 1000, "fast_encap {fast}\n{stats}\n{log}");
}
