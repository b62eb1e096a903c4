//! Two hosts, each running xvrd, joined by a VXLAN underlay. Tenants red
//! (VNI 100) and blue (VNI 200) use the same subnet, the same VM addresses
//! and a VM on each host. Each tenant's VMs reach each other across the
//! hosts; a blue VM that addresses red's VM directly (by its MAC) gets
//! nothing through, and red's VM sees none of it. The underlay's MTU
//! (1400) is read from the uplink, not the state.
mod common;

use common::{start_xvrd_with, stop_xvrd};
use xvr_testkit::netns::{require_root, Rig};

/// One host's state: its underlay address and MAC, the peer's, and which
/// VM of each tenant is local (".10" on host A, ".20" on host B).
fn state(me: u8, peer: u8) -> String {
    let (local, remote) = if me == 1 { (10, 20) } else { (20, 10) };
    format!(
        r#"{{
  "tenants": [{{ "name": "red", "vni": 100 }}, {{ "name": "blue", "vni": 200 }}],
  "ports": [
    {{ "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:0{me}", "ip": "198.18.0.{me}" }},
    {{ "role": "vm", "name": "red0", "mac": "02:aa:00:00:0{me}:01", "tenant": "red", "gateway": "10.0.0.1/24" }},
    {{ "role": "vm", "name": "blue0", "mac": "02:bb:00:00:0{me}:01", "tenant": "blue", "gateway": "10.0.0.1/24" }}
  ],
  "neighbors": [
    {{ "tenant": "red", "ip": "10.0.0.{local}", "mac": "02:0a:00:00:00:{local}", "port": "red0" }},
    {{ "tenant": "blue", "ip": "10.0.0.{local}", "mac": "02:0b:00:00:00:{local}", "port": "blue0" }}
  ],
  "vteps": [{{ "ip": "198.18.0.{peer}", "mac": "02:00:00:00:00:0{peer}" }}],
  "remote_vms": [
    {{ "tenant": "red", "ip": "10.0.0.{remote}", "mac": "02:0a:00:00:00:{remote}", "vtep": "198.18.0.{peer}" }},
    {{ "tenant": "blue", "ip": "10.0.0.{remote}", "mac": "02:0b:00:00:00:{remote}", "vtep": "198.18.0.{peer}" }}
  ]
}}"#
    )
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn tenants_with_the_same_addresses_reach_their_own_vms_across_hosts_only() {
    across_hosts("2hosts", &[], &["up0", "red0", "blue0"]);
}

/// The same with the fast path in tc: what it does not take (frames too
/// big for the underlay among them) goes through the segmenter to the
/// workers, which cut them or answer "fragmentation needed" as above.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn the_same_holds_with_the_fast_path_in_tc() {
    let ports = ["up0", "red0", "blue0", "xvrseg1"];
    across_hosts("2hosts-tc", &["--xdp-fast-path", "tc"], &ports);
}

fn across_hosts(rig_name: &str, args: &[&str], ports: &[&str]) {
    require_root("running xvrd over veth");
    let dir = tempfile::tempdir().unwrap();
    let mut rig = Rig::new(rig_name);
    let hosts = common::two_hosts(&mut rig);
    for host in &hosts {
        // A 1400-byte underlay that the state does not mention: xvrd
        // reads it from the interface.
        rig.exec(host, &["ip", "link", "set", "up0", "mtu", "1400"]);
    }
    // vms[host][tenant]: red then blue, ".10" on host A and ".20" on host B.
    let mut vms = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let last = if i == 0 { 10 } else { 20 };
        let mut pair = Vec::new();
        for (port, mac_prefix) in [("red0", "02:0a"), ("blue0", "02:0b")] {
            let (addr, mac) = (
                format!("10.0.0.{last}/24"),
                format!("{mac_prefix}:00:00:00:{last}"),
            );
            let vm = rig.vm(host, port, &addr, &mac);
            pair.push(vm);
        }
        vms.push(pair);
    }
    let mut daemons = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let config = dir.path().join(format!("host{i}.json"));
        std::fs::write(&config, state(i as u8 + 1, 2 - i as u8)).unwrap();
        daemons.push(start_xvrd_with(&rig, host, &config, ports, args));
    }
    let ping =
        |ns: &str, to: &str| rig.try_exec(ns, &["ping", "-c", "2", "-i", "0.2", "-W", "2", to]);
    let (red_a, blue_a, red_b) = (&vms[0][0], &vms[0][1], &vms[1][0]);

    // Each tenant reaches its own VM on the other host, at the same address.
    assert!(ping(red_a, "10.0.0.20"), "red A -> red B");
    assert!(ping(blue_a, "10.0.0.20"), "blue A -> blue B");
    let neighbour = |ns: &str| {
        String::from_utf8_lossy(&rig.exec(ns, &["ip", "neigh", "show", "10.0.0.20"]).stdout)
            .to_string()
    };
    assert!(
        neighbour(red_a).contains("02:0a:00:00:00:20"),
        "red A resolved red B: {}",
        neighbour(red_a)
    );
    assert!(
        neighbour(blue_a).contains("02:0b:00:00:00:20"),
        "blue A resolved blue B: {}",
        neighbour(blue_a)
    );

    // A 1500-byte ping without DF does not fit the 1350 the underlay
    // carries: xvrd cuts it, and its reply, into fragments before
    // encapsulating them; each VM's kernel reassembles (before any DF
    // probe, so that no VM has learnt the path MTU and cut it itself).
    let reassembled = |ns: &str| common::snmp(&rig, ns, "Ip:", "ReasmOKs");
    let (a_before, b_before) = (reassembled(red_a), reassembled(red_b));
    let big = ["ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "dont"];
    let sized = [&big[..], &["-s", "1472", "10.0.0.20"]].concat();
    assert!(
        rig.try_exec(red_a, &sized),
        "a 1500-byte ping without DF crosses"
    );
    assert!(
        reassembled(red_b) >= b_before + 2,
        "red B reassembled the requests"
    );
    assert!(
        reassembled(red_a) >= a_before + 2,
        "red A reassembled the replies"
    );
    let configs: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("host{i}.json")))
        .collect();
    for config in &configs {
        let stats = common::stats_of(config);
        let cut = stats["events"]["fragmented_for_overlay"]
            .as_u64()
            .unwrap_or(0);
        assert!(cut >= 2, "{}: {stats}", config.display());
    }

    // The underlay carries inner packets of 1350 bytes: bigger ones with
    // DF get "fragmentation needed" naming that MTU, not silence.
    let df = |size: &str| {
        let args = [
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            size,
            "10.0.0.20",
        ];
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", red_a])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success(), text)
    };
    let (fits, text) = df("1322");
    assert!(fits, "a 1350-byte ping crosses: {text}");
    let (too_big, text) = df("1372");
    assert!(!too_big && text.contains("mtu = 1350"), "{text}");

    // Blue aims at red's VM by its MAC: nothing gets through.
    rig.exec(
        blue_a,
        &[
            "ip",
            "neigh",
            "replace",
            "10.0.0.20",
            "lladdr",
            "02:0a:00:00:00:20",
            "nud",
            "permanent",
            "dev",
            "eth0",
        ],
    );
    let before = common::echo_requests_received(&rig, red_b);
    assert!(!ping(blue_a, "10.0.0.20"), "blue reached red's VM");
    let after = common::echo_requests_received(&rig, red_b);
    assert_eq!(after, before, "red B received blue's pings");

    for daemon in daemons {
        stop_xvrd(daemon);
    }
}
