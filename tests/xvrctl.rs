//! xvrctl against a running xvrd over its control socket: version,
//! health (workers alive), stats that count the pings just forwarded,
//! dumps with a tenant filter, JSON output, errors that name the field,
//! and the exit codes scripts rely on.
mod common;

use common::{socket_beside, start_xvrd, stop_xvrd, two_vms, TWO_VMS};
use std::process::{Command, Output};
use xvr_testkit::netns::{privileged, Rig};

const XVRCTL: &str = env!("CARGO_BIN_EXE_xvrctl");

fn xvrctl(socket: &std::path::Path, args: &[&str]) -> Output {
    Command::new(XVRCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn xvrctl_reads_a_running_xvrd() {
    if !privileged("running xvrd over veth") {
        return;
    }
    let (_dir, config) = common::state_file(TWO_VMS);
    let socket = socket_beside(&config);
    let mut rig = Rig::new("xvrctl");
    let (host, vm1, _vm2) = two_vms(&mut rig);
    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    let ping = ["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.11"];
    assert!(rig.try_exec(&vm1, &ping));
    std::thread::sleep(std::time::Duration::from_millis(100));

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
    let out = xvrctl(&socket, &["stats"]);
    assert!(text(&out).contains("bridged"), "{}", text(&out));

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
