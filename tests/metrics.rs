//! `--metrics`: what a Prometheus server scrapes from xvrd is valid by
//! `promtool check metrics` (Debian package prometheus) and counts what
//! happened: the ping's frames on their ports, every drop reason and
//! event, the steering program's decisions, and tenants past the cap
//! summed under `_other`.
mod common;

use common::{start_xvrd_with, stop_xvrd, two_vms, TWO_VMS};
use std::io::Write;
use std::process::{Command, Stdio};
use xvr_dataplane::{DropReason, Event};
use xvr_testkit::netns::{require_root, Rig};

/// The value of the sample `series` (name and labels, as written).
fn value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
#[ignore = "needs root and promtool: scripts/test installs prometheus and runs it as root"]
fn a_scrape_passes_promtool_and_counts_what_happened() {
    require_root("running xvrd over veth");
    let (_dir, config) = common::state_file(TWO_VMS);
    let mut rig = Rig::new("metrics");
    let (host, vm1, _vm2) = two_vms(&mut rig);
    // Its own namespace: the port is free whatever else runs.
    let args = ["--metrics", "127.0.0.1:9101", "--metrics-max-tenants", "0"];
    let daemon = start_xvrd_with(&rig, &host, &config, &["a1", "a2"], &args);
    let ping = ["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.11"];
    assert!(rig.try_exec(&vm1, &ping));
    // Workers copy their per-port counters out once a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let scrape = rig.exec(&host, &["curl", "-sf", "http://127.0.0.1:9101/metrics"]);
    assert!(scrape.status.success(), "{scrape:?}");
    let text = String::from_utf8(scrape.stdout).unwrap();

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    assert_eq!(value(&text, r#"xvr_build_info{version="0.1.0"}"#), Some(1));
    assert_eq!(value(&text, r#"xvr_worker_up{worker="0"}"#), Some(1));
    for port in ["a1", "a2"] {
        let rx = value(
            &text,
            &format!(r#"xvr_port_rx_packets_total{{port="{port}"}}"#),
        );
        assert!(rx.is_some_and(|n| n >= 3), "{port}: {rx:?}\n{text}");
    }
    let drops = text
        .lines()
        .filter(|l| l.starts_with("xvr_drops_total{"))
        .count();
    assert_eq!(drops, DropReason::ALL.len(), "every drop reason, zeros too");
    let events = text
        .lines()
        .filter(|l| l.starts_with("xvr_events_total{"))
        .count();
    assert_eq!(events, Event::ALL.len());
    assert!(text.contains("xvr_steering_decisions_total{decision=\"to_socket_vm_port\"}"));
    // With a cap of 0 tenants, tenant t is summed under _other.
    assert!(!text.contains(r#"tenant="t""#), "{text}");
    let other = value(&text, r#"xvr_tenant_rx_packets_total{tenant="_other"}"#);
    assert!(other.is_some_and(|n| n >= 6), "{other:?}");
    // Anything but GET /metrics is a 404.
    assert!(!rig.try_exec(&host, &["curl", "-sf", "http://127.0.0.1:9101/"]));
    stop_xvrd(daemon);
}
