//! xvrd as a process: it forwards between VMs, exits 0 on SIGTERM with
//! every XDP program detached, and after SIGKILL a restarted daemon
//! attaches again and forwards (the kernel dropped the killed one's XDP
//! links with its file descriptors).
mod common;

use common::{start_xvrd, stop_xvrd, two_vms, TWO_VMS, XVRD};
use std::process::Command;
use xvr_testkit::netns::{privileged, Rig};

#[test]
fn forwards_stops_cleanly_and_restarts_after_sigkill() {
    if !privileged("running xvrd over veth") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("state.json");
    std::fs::write(&config, TWO_VMS).unwrap();
    let mut rig = Rig::new("xvrd");
    let (host, vm1, _vm2) = two_vms(&mut rig);
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
        !rig.xdp_attached(&host, "a1"),
        "XDP left attached after SIGKILL"
    );

    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    assert!(ping(), "ping through the restarted xvrd");
    stop_xvrd(daemon);
    assert!(
        !rig.xdp_attached(&host, "a1") && !rig.xdp_attached(&host, "a2"),
        "XDP left attached"
    );
}

#[test]
fn bad_config_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("state.json");
    std::fs::write(&config, TWO_VMS.replace("\"vni\": 100", "\"vni\": 0")).unwrap();
    let out = Command::new(XVRD)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tenants[0].vni: 0 is outside"), "{stderr}");
}
