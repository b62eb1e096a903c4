//! xvrd as a process: it forwards between VMs, exits 0 on SIGTERM with
//! every XDP program detached, and after SIGKILL a restarted daemon
//! attaches again and forwards (the kernel dropped the killed one's XDP
//! links with its file descriptors).
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xvr_testkit::netns::{privileged, Rig};

const XVRD: &str = env!("CARGO_BIN_EXE_xvrd");

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

fn attached(rig: &Rig, ns: &str, dev: &str) -> bool {
    let out = rig.exec(ns, &["ip", "-d", "link", "show", "dev", dev]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// Starts xvrd in `ns` and waits until both ports carry its program.
fn start(rig: &Rig, ns: &str, config: &std::path::Path) -> Child {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, XVRD, "--config"])
        .arg(config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(attached(rig, ns, "a1") && attached(rig, ns, "a2")) {
        assert!(Instant::now() < deadline, "xvrd did not attach");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: signalling our own child process by PID.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

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
    let mut daemon = start(&rig, &host, &config);
    assert!(ping(), "ping through xvrd");
    signal(&daemon, libc::SIGKILL);
    daemon.wait().unwrap();
    // aya attaches through BPF links, which die with the killed process.
    assert!(
        !attached(&rig, &host, "a1"),
        "XDP left attached after SIGKILL"
    );

    let mut daemon = start(&rig, &host, &config);
    assert!(ping(), "ping through the restarted xvrd");
    signal(&daemon, libc::SIGTERM);
    let status = daemon.wait().unwrap();
    assert!(status.success(), "xvrd exited with {status}");
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
