//! Flow offload live: xvrd between a VM and the internet with source NAT,
//! its workers offloading established flows to the XDP fast path. The
//! kernels at both ends judge: iperf3's TCP through offloaded source NAT
//! completes; the steering program, not the workers, carried nearly all
//! of it; its FIN took the flow out of the map. A route change (a
//! commit) stops an offloaded UDP flow at once: the internet receives
//! nothing after the commit returns, though the VM keeps sending.
mod common;

use common::{count, start_xvrd_with, stats_of, stop_xvrd};
use std::process::Stdio;
use xvr_testkit::netns::{require_root, Rig};

const SERVER: &str = common::INTERNET_SERVER;

/// `internet_rig` with GRO on at the far ends of xvrd's ports: a veth
/// takes frames redirected by XDP only then (or with an XDP program of
/// its own), and xvrd offloads only to outputs that take them.
fn offload_rig(rig: &mut Rig) -> (String, String, String) {
    let (host, vm, internet) = common::internet_rig(rig, 1);
    rig.exec(&vm, &["ethtool", "-K", "eth0", "gro", "on"]);
    rig.exec(&internet, &["ethtool", "-K", "eth0", "gro", "on"]);
    (host, vm, internet)
}

/// Packets the workers received, over all workers.
fn worker_rx(stats: &serde_json::Value) -> u64 {
    stats["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| w["rx_packets"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn tcp_through_offloaded_source_nat() {
    require_root("creating namespaces and running xvrd");
    let mut rig = Rig::new("offload-tcp");
    let (host, vm, internet) = offload_rig(&mut rig);
    let (_dir, config) = common::state_file(common::SNAT_STATE);
    let daemon = start_xvrd_with(&rig, &host, &config, &["up0", "a1"], &[]);

    let before = stats_of(&config);
    let run = rig.iperf3(&internet, &vm, SERVER, 3, &[]);
    let after = stats_of(&config);
    let log = stop_xvrd(daemon);
    let run = run.unwrap_or_else(|e| panic!("iperf3 through offloaded SNAT: {e}\n{log}"));
    let fast = count(&after, &["xdp", "fast_flow"]) - count(&before, &["xdp", "fast_flow"]);
    let workers = worker_rx(&after) - worker_rx(&before);
    eprintln!(
        "iperf3: {:.2} Gbit/s, {} retransmits; fast path {fast} packets, workers {workers}",
        run.bits_per_second / 1e9,
        run.retransmits
    );
    assert!(run.bytes_received > 10_000_000, "{run:?}");
    assert!(
        fast > 9 * workers && fast > 10_000,
        "the fast path carried {fast} packets, the workers {workers}\n{log}"
    );
    // The stream's FIN went to the workers, which closed the session and
    // took both directions out of the map (the control connection's
    // session closed the same way).
    assert_eq!(
        after["offloaded_flows"].as_u64(),
        Some(0),
        "offloaded flows left after the streams ended: {after}\n{log}"
    );
}

/// A Python sender in `vm`: one UDP datagram to the server every 5 ms
/// for `seconds`.
fn udp_sender(vm: &str, seconds: u32) -> std::process::Child {
    let program = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         end = time.time() + {seconds}\n\
         while time.time() < end:\n    s.sendto(b'x' * 100, ('{SERVER}', 9999))\n    time.sleep(0.005)\n"
    );
    common::spawn_python(vm, seconds + 5, &program, (Stdio::null(), Stdio::null()))
}

/// Datagrams to port 9999 the internet namespace's kernel delivered.
fn udp_received(rig: &Rig, internet: &str) -> u64 {
    common::snmp(rig, internet, "Udp:", "NoPorts")
}

/// What a change made through xvrctl did to an offloaded UDP flow.
struct AfterChange {
    /// Stats just before the change, just after it, and a second later.
    before: serde_json::Value,
    at: serde_json::Value,
    after: serde_json::Value,
    /// Datagrams that reached the internet before the change, and in
    /// the second after it returned.
    delivered: u64,
    delivered_after: u64,
    out: std::process::Output,
    log: String,
}

/// Starts xvrd with source NAT and a VM sending UDP to the internet; once
/// its flow is offloaded, runs `xvrctl SUBCOMMAND FILE` with `file` as
/// the file, and looks for a second.
fn change_under_offloaded_flow(name: &str, subcommand: &str, file: &str) -> AfterChange {
    let mut rig = Rig::new(name);
    let (host, vm, internet) = offload_rig(&mut rig);
    let (dir, config) = common::state_file(common::SNAT_STATE);
    let daemon = start_xvrd_with(&rig, &host, &config, &["up0", "a1"], &[]);
    let mut sender = udp_sender(&vm, 4);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before = stats_of(&config);
    let delivered = udp_received(&rig, &internet);
    let path = dir.path().join("change.json");
    std::fs::write(&path, file).unwrap();
    let socket = common::socket_beside(&config);
    let out = common::xvrctl(&socket, &[subcommand, path.to_str().unwrap()]);
    let at_change = udp_received(&rig, &internet);
    let at = stats_of(&config);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let delivered_after = udp_received(&rig, &internet) - at_change;
    let after = stats_of(&config);
    let _ = sender.kill();
    let _ = sender.wait();
    let log = stop_xvrd(daemon);
    AfterChange {
        before,
        at,
        after,
        delivered,
        delivered_after,
        out,
        log,
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_route_change_stops_an_offloaded_flow_at_once() {
    require_root("creating namespaces and running xvrd");
    let blackhole = r#"[{ "action": "replace", "table": "routes",
        "entry": { "tenant": "t", "prefix": "0.0.0.0/0", "next_hop": "blackhole" } }]"#;
    let c = change_under_offloaded_flow("offload-route", "commit", blackhole);
    let log = &c.log;
    assert!(c.out.status.success(), "commit: {:?}\n{log}", c.out);
    let fast = count(&c.before, &["xdp", "fast_flow"]);
    assert!(
        fast > 100 && c.delivered > 100,
        "the flow was offloaded ({fast} by the fast path, {} delivered)\n{log}",
        c.delivered
    );
    // At most what was in flight while the commit was answered.
    assert!(
        c.delivered_after <= 2,
        "{} datagrams reached the internet after the blackhole route was committed\n{log}",
        c.delivered_after
    );
    assert!(
        count(&c.after, &["drops", "blackhole"]) > 100,
        "the workers dropped the flow by the new route: {}\n{log}",
        c.after
    );
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_deleted_tenants_offloaded_flows_stop() {
    require_root("creating namespaces and running xvrd");
    // Tenant t goes, and with it its port, route, neighbor and NAT: the
    // uplink stays, and another tenant.
    let uplink_only = r#"{ "tenants": [{ "name": "u", "vni": 200 }], "ports": [
      { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
        "internet_gateway_mac": "02:00:00:00:00:fe" } ] }"#;
    let c = change_under_offloaded_flow("offload-gone", "apply", uplink_only);
    let log = &c.log;
    assert!(c.out.status.success(), "apply: {:?}\n{log}", c.out);
    assert!(
        count(&c.before, &["xdp", "fast_flow"]) > 100 && count(&c.before, &["offloaded_flows"]) > 0,
        "the flow was offloaded: {}\n{log}",
        c.before
    );
    assert!(
        c.delivered_after <= 2,
        "{} datagrams reached the internet after the tenant was deleted\n{log}",
        c.delivered_after
    );
    // Its entries left the map with the commit.
    assert_eq!(
        count(&c.at, &["offloaded_flows"]),
        0,
        "the deleted tenant's entries are still in the flow map: {}\n{log}",
        c.at
    );
    assert!(
        count(&c.after, &["xdp", "fast_flow"]) <= count(&c.at, &["xdp", "fast_flow"]) + 2,
        "the fast path forwarded the deleted tenant's flow: {}\n{log}",
        c.after
    );
}

/// `examples/kernel-vtep-peer.json` with the tenant's way out: source NAT
/// to 203.0.113.10 through the kernel VTEP's host, which is the internet
/// gateway too.
const FAR_SNAT_STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1", "mtu": 1600,
      "internet_gateway_mac": "02:00:00:00:00:02" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" }
  ],
  "neighbors": [{ "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" }],
  "vteps": [{ "ip": "198.18.0.2", "mac": "02:00:00:00:00:02" }],
  "remote_vms": [{ "tenant": "t", "ip": "10.0.0.20", "mac": "02:0a:00:00:00:20", "vtep": "198.18.0.2" }],
  "routes": [{ "tenant": "t", "prefix": "0.0.0.0/0", "next_hop": "internet" }],
  "nat": { "source": [{ "tenant": "t", "public_ip": "203.0.113.10" }] }
}"#;

/// A VM behind a Linux kernel VTEP uses xvr as its gateway to the
/// internet: decapsulated and translated out, translated and
/// encapsulated back, both offloaded. The kernel host that is its VTEP
/// is the internet too (server 198.19.0.10) and has no route to the VM's
/// network: only translated packets can be answered.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_vm_behind_a_kernel_vtep_goes_out_through_offloaded_source_nat() {
    far_vm_through_source_nat("offload-far", &[]);
}

/// The same with the fast path in tc: the tc program translates and
/// encapsulates whole GSO packets, and decapsulates and translates the
/// kernel VTEP's segments (no GRO needed on the veths).
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn the_same_with_the_fast_path_in_tc() {
    far_vm_through_source_nat("offload-far-tc", &["--xdp-fast-path", "tc"]);
}

fn far_vm_through_source_nat(name: &str, args: &[&str]) {
    require_root("creating namespaces and running xvrd");
    let in_tc = !args.is_empty();
    let mut rig = Rig::new(name);
    let o = rig.overlay(false);
    if in_tc {
        // As a wire would: veth would hand xvr the kernel VTEP's VXLAN
        // GSO packets whole, which the tc program decapsulates only
        // toward a VM's port (their tunnel GSO state stays).
        let segment = [
            "ethtool",
            "-K",
            "eth0",
            "tx-udp_tnl-segmentation",
            "off",
            "tx-udp_tnl-csum-segmentation",
            "off",
        ];
        rig.exec(&o.kernel, &segment);
    } else {
        rig.gro_everywhere(&o);
    }
    rig.exec(
        &o.vm2,
        &["ip", "route", "add", "default", "via", "10.0.0.1"],
    );
    for args in [
        &["ip", "link", "set", "lo", "up"][..],
        &["ip", "addr", "add", &format!("{SERVER}/32"), "dev", "lo"],
        &["ip", "route", "add", "203.0.113.0/24", "via", "198.18.0.1"],
    ] {
        rig.exec(&o.kernel, args);
    }
    assert!(
        !rig.try_exec(&o.kernel, &["ip", "route", "get", "10.0.0.20"]),
        "the internet must not reach the VM's own address"
    );
    let (_dir, config) = common::state_file(FAR_SNAT_STATE);
    let ports: &[&str] = match in_tc {
        true => &["up0", "a1", "xvrseg1"],
        false => &["up0", "a1"],
    };
    let daemon = start_xvrd_with(&rig, &o.host, &config, ports, args);
    let ping = rig.try_exec(&o.vm2, &["ping", "-c", "3", "-i", "0.2", "-W", "2", SERVER]);
    let before = stats_of(&config);
    let up = rig.iperf3(&o.kernel, &o.vm2, SERVER, 3, &[]);
    let down = rig.iperf3(&o.kernel, &o.vm2, SERVER, 3, &["-R"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = stats_of(&config);
    let log = stop_xvrd(daemon);
    assert!(ping, "ping from the VM behind the kernel VTEP\n{log}");
    for (way, run) in [("vm -> internet", up), ("internet -> vm", down)] {
        let run = run.unwrap_or_else(|e| panic!("iperf3 {way}: {e}\n{log}"));
        eprintln!(
            "{way}: {:.2} Gbit/s, {} retransmits",
            run.bits_per_second / 1e9,
            run.retransmits
        );
        assert!(run.bytes_received > 10_000_000, "{way}: {run:?}");
    }
    let delta = |path: &[&str]| count(&after, path) - count(&before, path);
    let fast = delta(&["xdp", "fast_flow"]);
    // Packets that reached the workers: by their sockets, or in tc mode
    // through the segmenter too.
    let workers = worker_rx(&after) - worker_rx(&before) + delta(&["xdp", "to_segmenter"]);
    eprintln!("fast path {fast} packets, workers {workers}");
    assert!(
        fast > 9 * workers && fast > 10_000,
        "the fast path carried {fast} packets, the workers {workers}\n{after}\n{log}"
    );
    assert_eq!(
        count(&after, &["drops", "overlay_dst_not_local"]),
        0,
        "{after}\n{log}"
    );
}
