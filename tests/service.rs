//! xvrd under a service manager: the unit in `dist/` passes
//! `systemd-analyze verify`, and xvrd speaks sd_notify to the socket it
//! is given: READY=1 once it forwards, WATCHDOG=1 while its workers
//! report, STOPPING=1 on SIGTERM.
mod common;

use common::{start_xvrd_env, stop_xvrd, two_vms, TWO_VMS};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use xvr_testkit::netns::{require_root, Rig};

#[test]
#[ignore = "needs systemd-analyze: scripts/test installs systemd and runs it"]
fn the_unit_passes_systemd_analyze_verify() {
    let bin = Path::new(common::XVRD).parent().unwrap();
    let unit = std::fs::read_to_string("dist/xvrd.service").unwrap();
    // The binaries just built stand where the unit expects them.
    let unit = unit.replace("/usr/local/bin", bin.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xvrd.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only what it says about our unit counts (the host's own units may
    // draw remarks of their own).
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("xvrd.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{said}");
}

/// The notifications xvrd sent to `socket` within `wait`, until `until`
/// is among them.
fn notifications(socket: &UnixDatagram, until: &str, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !got.iter().any(|m: &String| m.contains(until)) {
        socket
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn xvrd_says_ready_pings_the_watchdog_and_says_stopping() {
    require_root("running xvrd over veth");
    let (dir, config) = common::state_file(TWO_VMS);
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    let mut rig = Rig::new("notify");
    let (host, _vm1, _vm2) = two_vms(&mut rig);
    let env = [
        ("NOTIFY_SOCKET", notify.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ];
    let daemon = start_xvrd_env(&rig, &host, &config, (&["a1", "a2"], &[]), &env);
    let got = notifications(&socket, "READY=1", Duration::from_secs(10));
    let ready = got.iter().find(|m| m.contains("READY=1"));
    assert!(
        ready.is_some_and(|m| m.contains("STATUS=forwarding on 2 ports")),
        "{got:?}"
    );
    // Pinged twice per 400 ms while both ports' worker reports.
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        let got = notifications(&socket, "WATCHDOG=1", Duration::from_millis(500));
        pings += got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    }
    assert!(pings >= 4, "{pings} watchdog pings in 1.2 s");
    let log = stop_xvrd(daemon);
    let got = notifications(&socket, "STOPPING=1", Duration::from_secs(2));
    assert!(
        got.iter().any(|m| m.contains("STOPPING=1")),
        "{got:?}\n{log}"
    );
}
