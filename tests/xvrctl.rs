//! xvrctl against a running xvrd over its control socket: version,
//! health (workers alive), stats that count the pings just forwarded,
//! dumps with a tenant filter, JSON output, errors that name the field,
//! and the exit codes scripts rely on.
mod common;

use common::{socket_beside, start_xvrd, stop_xvrd, two_vms, xvrctl, TWO_VMS, XVRCTL};
use std::process::{Command, Output};
use xvr_testkit::netns::{require_root, Rig};

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn xvrctl_reads_a_running_xvrd() {
    require_root("running xvrd over veth");
    let (_dir, config) = common::state_file(TWO_VMS);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("xvrctl");
    let (host, vm1, _vm2) = two_vms(&mut rig);
    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    let ping = ["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.11"];
    assert!(rig.try_exec(&vm1, &ping));
    // Per-port and per-tenant counters are reported every 100 ms.
    std::thread::sleep(std::time::Duration::from_millis(300));

    let out = xvrctl(&socket, &["version"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&out)
    );

    let out = xvrctl(&socket, &["--json", "health"]);
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["workers"][0]["alive"], true, "{health}");

    // Both pings' requests and replies crossed the worker.
    let out = xvrctl(&socket, &["--json", "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(stats["workers"][0]["rx"].as_u64().unwrap() >= 6, "{stats}");
    assert!(stats["events"]["bridged"].as_u64().unwrap() >= 6, "{stats}");
    // The steering program's decisions: the VMs' frames went to a socket.
    let to_socket = stats["xdp"]["to_socket_vm_port"].as_u64().unwrap_or(0);
    assert!(to_socket >= 6, "{stats}");
    // Per port: the requests in at a1 and out at a2, the replies back.
    for port in ["a1", "a2"] {
        let counters = &stats["ports"][port];
        for packets in ["rx_packets", "tx_packets"] {
            assert!(counters[packets].as_u64().unwrap() >= 3, "{port} {stats}");
        }
        for bytes in ["rx_bytes", "tx_bytes"] {
            assert!(
                counters[bytes].as_u64().unwrap() >= 3 * 98,
                "{port} {stats}"
            );
        }
    }
    // Per tenant: the pings were tenant t's (and so is whatever else the
    // VMs sent, such as broadcasts, dropped); each frame forwarded or
    // dropped. (The sections are copied at different moments: no
    // equalities across them while the VMs keep sending.)
    let tenant = &stats["tenants"]["t"];
    let count = |k: &str| tenant[k].as_u64().unwrap();
    assert!(count("tx") >= 6, "{stats}");
    assert_eq!(count("rx"), count("tx") + count("dropped"), "{stats}");
    let out = xvrctl(&socket, &["stats"]);
    assert!(text(&out).contains("bridged"), "{}", text(&out));
    assert!(text(&out).contains("tx_packets"), "{}", text(&out));
    // --watch reports rates: a ping flood meanwhile shows up in them.
    let flood = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &vm1,
            "ping",
            "-c",
            "200",
            "-i",
            "0.005",
            "-q",
            "10.0.0.11",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = xvrctl(
        &socket,
        &["--json", "stats", "--watch", "0.5", "--count", "2"],
    );
    let mut flood = flood;
    flood.wait().unwrap();
    let reports: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2, "{}", text(&out));
    let rx: f64 = reports
        .iter()
        .map(|r| r["workers"][0]["rx_pps"].as_f64().unwrap())
        .sum();
    assert!(rx > 50.0, "{reports:?}");
    let port_rx: f64 = reports
        .iter()
        .flat_map(|r| r["ports"].as_array().unwrap().clone())
        .filter(|p| p["port"] == "a1")
        .map(|p| p["rx_packets_per_s"].as_f64().unwrap())
        .sum();
    assert!(port_rx > 50.0, "{reports:?}");

    let out = xvrctl(&socket, &["dump", "neighbors", "--tenant", "t"]);
    let table = text(&out);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains("10.0.0.10") && table.contains("10.0.0.11"),
        "{table}"
    );
    let out = xvrctl(
        &socket,
        &["--json", "dump", "neighbors", "--tenant", "nobody"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    // A trace of what vm1 -> vm2 would do, without sending it.
    let args = [
        "--json",
        "trace",
        "--port",
        "a1",
        "--src",
        "10.0.0.10",
        "--dst",
        "10.0.0.11",
    ];
    let out = xvrctl(&socket, &args);
    let trace: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(trace["action"]["tx"], "a2", "{trace}");

    // Errors: xvrd's (1), usage (2), unreachable (3).
    let out = xvrctl(&socket, &["dump", "gizmos"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("table: unknown table \"gizmos\""),
        "{}",
        text(&out)
    );
    assert_eq!(xvrctl(&socket, &["frobnicate"]).status.code(), Some(2));
    let out = xvrctl(&_dir.path().join("none.sock"), &["health"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("cannot reach xvrd"), "{}", text(&out));

    let log = stop_xvrd(daemon);
    assert!(!socket.exists(), "the socket is removed at exit: {log}");
}

#[test]
fn xvrctl_prints_shell_completions() {
    let out = Command::new(XVRCTL)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("xvrctl") && script.contains("dump"),
        "{script}"
    );
}

/// Output into a pipe nobody reads (`xvrctl stats | head` once head is
/// done) ends xvrctl by SIGPIPE, as any Unix filter, not with a panic.
#[test]
fn xvrctl_writing_to_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(XVRCTL)
        .args(["completions", "bash"])
        .stdout(writer)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {said}",
        out.status
    );
    assert!(!said.contains("panicked"), "{said}");
}

const TWO_TIERS: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.1.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" }
  ]
}"#;

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn commits_and_applies_change_forwarding_all_or_nothing() {
    require_root("running xvrd over veth");
    let (dir, config) = common::state_file(TWO_TIERS);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("commit");
    let (host, vm1, _vm2) = common::two_tiers(&mut rig);
    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    let ping = ["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.0.1.10"];
    assert!(!rig.try_exec(&vm1, &ping), "vm2 is not declared yet");

    let file = |name: &str, json: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, json).unwrap();
        path
    };
    let add_vm2 = file(
        "add.json",
        r#"[{ "action": "add", "table": "neighbors",
              "entry": { "tenant": "t", "ip": "10.0.1.10", "mac": "02:0a:00:00:01:10", "port": "a2" } }]"#,
    );
    let add = add_vm2.to_str().unwrap();
    let out = xvrctl(&socket, &["commit", add, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("would change neighbors: added t 10.0.1.10"),
        "{}",
        text(&out)
    );
    assert!(!rig.try_exec(&vm1, &ping), "a dry run changes nothing");

    let out = xvrctl(&socket, &["commit", add]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(rig.try_exec(&vm1, &ping), "vm2 reached once committed");

    // One bad change spoils the whole commit.
    let bad = file(
        "bad.json",
        r#"[{ "action": "add", "table": "neighbors",
              "entry": { "tenant": "t", "ip": "10.0.1.20", "mac": "02:0a:00:00:01:20", "port": "a2" } },
            { "action": "add", "table": "routes",
              "entry": { "tenant": "nobody", "prefix": "10.5.0.0/16", "next_hop": "connected" } }]"#,
    );
    let out = xvrctl(&socket, &["commit", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("tenant \"nobody\""), "{}", text(&out));
    let out = xvrctl(&socket, &["--json", "dump", "neighbors"]);
    let neighbors = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!neighbors.contains("10.0.1.20"), "{neighbors}");

    // apply: back to the file's state, which has no vm2.
    let out = xvrctl(&socket, &["apply", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("changed neighbors: removed t 10.0.1.10"),
        "{}",
        text(&out)
    );
    assert!(!rig.try_exec(&vm1, &ping), "vm2 gone again");
    // A port changes live: a2 takes another MAC.
    let moved = file(
        "ports.json",
        &TWO_TIERS.replace("02:aa:00:00:00:02", "02:aa:00:00:00:09"),
    );
    let out = xvrctl(&socket, &["apply", moved.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("changed ports: changed a2"),
        "{}",
        text(&out)
    );
    // Session limits cannot: refused, naming the field.
    let limits = file(
        "limits.json",
        &TWO_TIERS.replacen('{', r#"{ "conntrack": { "max_sessions": 1000 },"#, 1),
    );
    let out = xvrctl(&socket, &["apply", limits.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("conntrack: changing session limits"),
        "{}",
        text(&out)
    );
    stop_xvrd(daemon);
}
