//! xvrd as a process: it forwards between VMs, exits 0 on SIGTERM with
//! every XDP program detached, and after SIGKILL a restarted daemon
//! attaches again and forwards (the kernel dropped the killed one's XDP
//! links with its file descriptors).
mod common;

use common::{attached, start_xvrd, stop_xvrd, XVRD};
use std::process::Command;
use xvr_testkit::netns::{privileged, Rig};

const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.0.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.0.11", "mac": "02:0a:00:00:00:11", "port": "a2" }
  ]
}"#;

#[test]
fn forwards_stops_cleanly_and_restarts_after_sigkill() {
    if !privileged("running xvrd over veth") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("state.json");
    std::fs::write(&config, STATE).unwrap();
    let mut rig = Rig::new("xvrd");
    let host = rig.namespace();
    let vm1 = rig.namespace();
    let vm2 = rig.namespace();
    rig.veth(&host, "a1", None, &vm1, "eth0", Some("10.0.0.10/24"));
    rig.veth(&host, "a2", None, &vm2, "eth0", Some("10.0.0.11/24"));
    rig.exec(
        &vm1,
        &["ip", "link", "set", "eth0", "address", "02:0a:00:00:00:10"],
    );
    rig.exec(
        &vm2,
        &["ip", "link", "set", "eth0", "address", "02:0a:00:00:00:11"],
    );
    let ping = || {
        rig.try_exec(
            &vm1,
            &["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.0.11"],
        )
    };

    // `ip netns exec` execs xvrd, so the child's PID is xvrd's own.
    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    assert!(ping(), "ping through xvrd");
    daemon.stop_with(libc::SIGKILL);
    // aya attaches through BPF links, which die with the killed process.
    assert!(
        !attached(&rig, &host, "a1"),
        "XDP left attached after SIGKILL"
    );

    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    assert!(ping(), "ping through the restarted xvrd");
    stop_xvrd(daemon);
    assert!(
        !attached(&rig, &host, "a1") && !attached(&rig, &host, "a2"),
        "XDP left attached"
    );
}

#[test]
fn bad_config_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("state.json");
    std::fs::write(&config, STATE.replace("\"vni\": 100", "\"vni\": 0")).unwrap();
    let out = Command::new(XVRD)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tenants[0].vni: 0 is outside"), "{stderr}");
}
