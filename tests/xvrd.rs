//! xvrd as a process: it forwards between VMs, exits 0 on SIGTERM with
//! every XDP program detached, and after SIGKILL a restarted daemon
//! attaches again and forwards (the kernel dropped the killed one's XDP
//! links with its file descriptors).
mod common;

use common::{
    start_xvrd, start_xvrd_env, start_xvrd_with, stop_xvrd, two_vms, worker_field, TWO_VMS, XVRD,
};
use std::process::Command;
use xvr_testkit::netns::{require_root, Rig};

/// Runs xvrd in `host` on `config` (its socket and state directory
/// beside it) with `args`, to its exit: for starts that must fail.
fn run_xvrd(host: &str, config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", host, XVRD, "--config"])
        .arg(config)
        .arg("--socket")
        .arg(common::socket_beside(config))
        .arg("--state-dir")
        .arg(common::state_dir_beside(config))
        .arg("--session-dir")
        .arg(common::session_dir_beside(config))
        .args(args)
        .output()
        .unwrap()
}

/// Whether vm1 of `two_vms` reaches vm2 (10.0.0.11).
fn vm1_pings_vm2(rig: &Rig, vm1: &str) -> bool {
    rig.try_exec(
        vm1,
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.0.11"],
    )
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn forwards_stops_cleanly_and_restarts_after_sigkill() {
    require_root("running xvrd over veth");
    let (_dir, config) = common::state_file(TWO_VMS);
    let mut rig = Rig::new("xvrd");
    let (host, vm1, _vm2) = two_vms(&mut rig);
    let ping = || vm1_pings_vm2(&rig, &vm1);

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
    let (_dir, config) = common::state_file(&TWO_VMS.replace("\"vni\": 100", "\"vni\": 0"));
    let out = Command::new(XVRD)
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(common::state_dir_beside(&config))
        .arg("--session-dir")
        .arg(common::session_dir_beside(&config))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tenants[0].vni: 0 is outside"), "{stderr}");
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn two_pinned_workers_each_serve_their_queue() {
    require_root("running xvrd over veth");
    let (_dir, config) = common::state_file(TWO_VMS);
    let mut rig = Rig::new("workers");
    let (host, vm1, _vm2) = two_queue_vms(&mut rig);

    let daemon = start_xvrd_with(
        &rig,
        &host,
        &config,
        &["a1", "a2"],
        &["--workers", "2", "--cores", "0,1"],
    );
    for core in ["0", "1"] {
        let ping = [
            "taskset",
            "-c",
            core,
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "2",
            "10.0.0.11",
        ];
        assert!(rig.try_exec(&vm1, &ping), "ping from core {core}");
    }
    let log = stop_xvrd(daemon);
    // Both workers carried traffic (XPS sends each core's frames to its
    // queue; under load the kernel may move a few), and together all of
    // it: 10 requests and 10 replies.
    let (w0, w1) = (worker_field(&log, 0, "rx"), worker_field(&log, 1, "rx"));
    assert!(w0 >= 1 && w1 >= 1 && w0 + w1 >= 20, "{log}");
    assert!(log.contains("worker 1 (core 1)"), "{log}");
}

/// Two VMs on two-queue veths whose sends from core c go to queue c
/// (XPS), and veth delivers them on the host side's receive queue c,
/// worker c's. Returns (host, vm1, vm2).
fn two_queue_vms(rig: &mut Rig) -> (String, String, String) {
    let host = rig.namespace();
    let vm1 = rig.vm_queues(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10", 2);
    let vm2 = rig.vm_queues(&host, "a2", "10.0.0.11/24", "02:0a:00:00:00:11", 2);
    for vm in [&vm1, &vm2] {
        let xps = "echo 1 > /sys/class/net/eth0/queues/tx-0/xps_cpus && \
                   echo 2 > /sys/class/net/eth0/queues/tx-1/xps_cpus";
        rig.exec(vm, &["sh", "-c", xps]);
    }
    (host, vm1, vm2)
}

/// Pings `to` from `ns` on `core`, `count` times 50 ms apart; the
/// replies received.
fn pings_from_core(ns: &str, core: &str, to: &str, count: u32) -> u32 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "taskset", "-c", core, "ping", "-n", "-q",
        ])
        .args(["-i", "0.05", "-W", "1", "-c", &count.to_string(), to])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text.split(',').find(|p| p.contains("received"));
    received
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("ping output: {text}"))
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_worker_that_panics_outside_a_batch_is_restarted_while_the_other_forwards() {
    require_root("running xvrd over veth");
    let (_dir, config) = common::state_file(TWO_VMS);
    let mut rig = Rig::new("wrestart");
    let (host, vm1, _vm2) = two_queue_vms(&mut rig);
    // Every frame through the workers (the fast path would bridge them).
    let args = ["--workers", "2", "--cores", "0,1", "--xdp-fast-path", "off"];
    let fault = [("XVR_FAULT_WORKER_PANIC", "1@2")];
    let daemon = start_xvrd_env(&rig, &host, &config, (&["a1", "a2"], &args), &fault);
    // 4 s of pings through each worker, across worker 1's panic at 2 s.
    let (through_0, through_1) = std::thread::scope(|s| {
        let other = s.spawn(|| pings_from_core(&vm1, "1", "10.0.0.11", 80));
        let through_0 = pings_from_core(&vm1, "0", "10.0.0.11", 80);
        (through_0, other.join().unwrap())
    });
    // Worker 1 serves its queues again.
    let after = pings_from_core(&vm1, "1", "10.0.0.11", 5);
    let health = common::xvrctl(&common::socket_beside(&config), &["--json", "health"]);
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let log = stop_xvrd(daemon);
    eprintln!("pings through worker 0: {through_0}/80, through worker 1: {through_1}/80");
    assert_eq!(
        through_0, 80,
        "worker 0 lost pings while 1 restarted: {log}"
    );
    assert_eq!(
        after, 5,
        "worker 1 after its restart ({through_1} of 80 during): {log}"
    );
    let workers = health["workers"].as_array().unwrap();
    let restarts: Vec<_> = workers
        .iter()
        .map(|w| w["worker_restarts"].as_u64())
        .collect();
    assert_eq!(restarts, [Some(0), Some(1)], "{health}");
    assert!(workers.iter().all(|w| w["alive"] == true), "{health}");
    assert!(
        log.contains("worker 1 stopped on a panic outside a batch"),
        "{log}"
    );
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn too_few_queues_for_the_workers_is_refused_and_nothing_stays_attached() {
    require_root("running xvrd over veth");
    let (_dir, config) = common::state_file(TWO_VMS);
    let mut rig = Rig::new("queues");
    let (host, _vm1, _vm2) = two_vms(&mut rig);
    let out = run_xvrd(&host, &config, &["--workers", "2"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interface a1: 1 receive queue(s) for 2 workers"),
        "{stderr}"
    );
    assert!(!rig.xdp_attached(&host, "a1") && !rig.xdp_attached(&host, "a2"));
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn an_interface_without_native_xdp_is_named_and_generic_mode_works() {
    require_root("running xvrd over veth");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("state.json");
    // A bridge has no XDP in its driver.
    std::fs::write(&config, TWO_VMS.replace("\"a2\"", "\"d0\"")).unwrap();
    let mut rig = Rig::new("noxdp");
    let host = rig.namespace();
    let _vm1 = rig.vm(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10");
    rig.exec(&host, &["ip", "link", "add", "d0", "type", "bridge"]);
    rig.exec(&host, &["ip", "link", "set", "d0", "up"]);
    let xvrd = |args: &[&str]| run_xvrd(&host, &config, args);
    let out = xvrd(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("d0") && stderr.contains("--xdp-mode generic"),
        "{stderr}"
    );
    assert!(!rig.xdp_attached(&host, "a1"), "XDP left on a1");

    let daemon = start_xvrd_with(
        &rig,
        &host,
        &config,
        &["a1", "d0"],
        &["--xdp-mode", "generic"],
    );
    stop_xvrd(daemon);
    assert!(!rig.xdp_attached(&host, "d0"), "XDP left on d0");
}

/// `xvrctl --json ARGS` against the daemon of `config`, parsed.
fn xvrctl_json(config: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = common::xvrctl(&common::socket_beside(config), &all);
    assert!(out.status.success(), "xvrctl {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn what_was_committed_survives_sigkill_and_sigterm_and_an_edited_config_is_refused() {
    require_root("running xvrd over veth");
    let (dir, config) = common::state_file(TWO_VMS);
    let mut rig = Rig::new("durable");
    let (host, vm1, _vm2) = two_vms(&mut rig);
    let ping = || vm1_pings_vm2(&rig, &vm1);
    let has_route = |prefix: &str| {
        let routes = xvrctl_json(&config, &["dump", "routes"]);
        routes.to_string().contains(prefix)
    };
    let generation = || {
        xvrctl_json(&config, &["health"])["generation"]
            .as_u64()
            .unwrap()
    };
    let commit = |prefix: &str| {
        let changes = dir
            .path()
            .join(format!("{}.json", prefix.replace('/', "_")));
        let entry = serde_json::json!([{"action": "add", "table": "routes",
            "entry": {"tenant": "t", "prefix": prefix, "next_hop": "blackhole"}}]);
        std::fs::write(&changes, entry.to_string()).unwrap();
        xvrctl_json(&config, &["commit", changes.to_str().unwrap()])["generation"]
            .as_u64()
            .unwrap()
    };

    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    let first = commit("10.7.0.0/16");
    // Acknowledged, then killed: nothing may be lost.
    daemon.stop_with(libc::SIGKILL);
    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    assert!(
        has_route("10.7.0.0/16"),
        "the route committed before SIGKILL"
    );
    assert!(
        generation() > first,
        "generations keep rising across restarts"
    );
    assert!(ping(), "forwarding after the restart");
    let second = commit("10.8.0.0/16");
    assert!(second > first);
    stop_xvrd(daemon);
    let daemon = start_xvrd(&rig, &host, &config, &["a1", "a2"]);
    assert!(has_route("10.7.0.0/16") && has_route("10.8.0.0/16"));
    stop_xvrd(daemon);

    // An edited config on a store it no longer matches: refused, named.
    std::fs::write(&config, TWO_VMS.replace("\"vni\": 100", "\"vni\": 101")).unwrap();
    let out = run_xvrd(&host, &config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("differs from the state saved in") && stderr.contains("without --config"),
        "{stderr}"
    );
    assert!(!rig.xdp_attached(&host, "a1"), "nothing attached");
    // Without --config, the saved state comes back.
    let daemon = common::start_xvrd_resuming(&rig, &host, &config, &["a1", "a2"]);
    assert!(has_route("10.8.0.0/16"));
    assert!(ping());
    stop_xvrd(daemon);
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn json_logs_carry_commits_refusals_and_the_exit_report() {
    require_root("running xvrd over veth");
    let (dir, config) = common::state_file(TWO_VMS);
    let mut rig = Rig::new("logs");
    let (host, _vm1, _vm2) = two_vms(&mut rig);
    let args = ["--log-format", "json"];
    let daemon = start_xvrd_with(&rig, &host, &config, &["a1", "a2"], &args);
    let changes = dir.path().join("route.json");
    let route = r#"[{"action": "add", "table": "routes",
        "entry": {"tenant": "t", "prefix": "10.7.0.0/16", "next_hop": "blackhole"}}]"#;
    std::fs::write(&changes, route).unwrap();
    let socket = common::socket_beside(&config);
    let commit =
        |path: &std::path::Path| common::xvrctl(&socket, &["commit", path.to_str().unwrap()]);
    assert!(commit(&changes).status.success());
    // The same again: the route exists, so the commit is refused.
    assert!(!commit(&changes).status.success());
    let log = stop_xvrd(daemon);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().find(|e| pred(e)).cloned();
    let made = find(&|e| e["op"] == "commit" && e["level"] == "INFO");
    let made = made.unwrap_or_else(|| panic!("no commit event in {log}"));
    assert!(made["generation"].as_u64().is_some_and(|g| g > 1), "{made}");
    assert_eq!(made["changes"], "routes +1 -0 ~0", "{made}");
    let refused = find(&|e| e["op"] == "commit" && e["level"] == "WARN");
    let refused = refused.unwrap_or_else(|| panic!("no refusal in {log}"));
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert!(
        find(&|e| e["worker"] == 0 && e["message"].as_str().unwrap_or("").contains("rx "))
            .is_some(),
        "{log}"
    );
}
