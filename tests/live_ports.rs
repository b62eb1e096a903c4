//! Ports come and go while xvrd runs: a commit that adds a port attaches
//! to its interface and binds every worker's sockets to it before the
//! tables name it; one that removes a port detaches and retires them, and
//! the interface's queues are free to bind again. Checked with ping
//! between VM namespaces, the interfaces' XDP state, and the workers'
//! UMEM accounting (no chunk lost to a retired socket).
mod common;

use common::{start_xvrd_with, stop_xvrd, TWO_VMS};
use serde_json::Value;
use std::path::Path;
use xvr_testkit::netns::{require_root, Rig};

const WORKERS: u32 = 2;

fn port(name: &str, n: u8) -> String {
    format!(
        r#"{{ "role": "vm", "name": "{name}", "mac": "02:aa:00:00:00:{n:02x}", "tenant": "t", "gateway": "10.0.0.1/24" }}"#
    )
}

fn neighbor(name: &str, n: u8) -> String {
    format!(
        r#"{{ "tenant": "t", "ip": "10.0.0.{}", "mac": "02:0a:00:00:00:{}", "port": "{name}" }}"#,
        9 + n,
        9 + n
    )
}

/// The changes that add (or delete) port `a<n>` and its VM's neighbor.
fn vm_port(action: &str, n: u8) -> String {
    let name = format!("a{n}");
    format!(
        r#"{{ "action": "{action}", "table": "ports", "entry": {} }},
           {{ "action": "{action}", "table": "neighbors", "entry": {} }}"#,
        port(&name, n),
        neighbor(&name, n)
    )
}

/// Commits `changes` (a JSON list's items) through xvrctl; returns
/// whether it was taken, and what xvrctl said.
fn commit(socket: &Path, dir: &Path, changes: &str) -> (bool, String) {
    let file = dir.join("changes.json");
    std::fs::write(&file, format!("[{changes}]")).unwrap();
    let out = common::xvrctl(socket, &["commit", file.to_str().unwrap()]);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

fn json(socket: &Path, args: &[&str]) -> Value {
    let out = common::xvrctl(socket, &[&["--json"], args].concat());
    assert!(out.status.success(), "xvrctl {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every worker's UMEM: free + lent = all, once it has reported after
/// the last change (reports come every idle pass, ~10 ms).
fn no_chunk_lost(socket: &Path) {
    std::thread::sleep(std::time::Duration::from_millis(200));
    let stats = json(socket, &["stats"]);
    let workers = stats["workers"].as_array().unwrap();
    assert_eq!(workers.len(), WORKERS as usize);
    for w in workers {
        let umem = &w["umem"];
        let all = umem["chunks"].as_u64().unwrap();
        assert!(all > 0, "{w}");
        assert_eq!(
            umem["free"].as_u64().unwrap() + umem["lent"].as_u64().unwrap(),
            all,
            "chunks lost: {w}"
        );
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn ports_are_added_and_removed_while_xvrd_forwards() {
    require_root("running xvrd over veth");
    let (dir, config) = common::state_file(TWO_VMS);
    let socket = common::socket_beside(&config);
    let mut rig = Rig::new("live-ports");
    let host = rig.namespace();
    let mut vm = |n: u8| {
        let mac = format!("02:0a:00:00:00:{}", 9 + n);
        let addr = format!("10.0.0.{}/24", 9 + n);
        rig.vm_queues(&host, &format!("a{n}"), &addr, &mac, WORKERS)
    };
    let (vm1, vm2, vm3) = (vm(1), vm(2), vm(3));
    let workers = WORKERS.to_string();
    let daemon = start_xvrd_with(
        &rig,
        &host,
        &config,
        &["a1", "a2"],
        &["--workers", &workers],
    );
    let ping = |from: &str, n: u8| {
        let to = format!("10.0.0.{}", 9 + n);
        rig.try_exec(from, &["ping", "-c", "2", "-i", "0.2", "-W", "1", &to])
    };
    let attached = |dev: &str| rig.xdp_attached(&host, dev);
    let ports = || json(&socket, &["dump", "ports"]).as_array().unwrap().len();

    assert!(ping(&vm1, 2), "vm1 -> vm2 before any change");
    assert!(!attached("a3"));
    assert!(!ping(&vm1, 3), "vm3 is no port yet");

    // Added: attached, bound, forwarding.
    let (taken, said) = commit(&socket, dir.path(), &vm_port("add", 3));
    assert!(taken, "adding a3: {said}");
    assert!(attached("a3"), "XDP on the added port");
    assert!(
        ping(&vm1, 3) && ping(&vm3, 2),
        "traffic to and from the added port"
    );
    no_chunk_lost(&socket);

    // Removed (a1 holds each worker's first socket, the one libxdp
    // registers the UMEM on): detached, its VM cut off, the others still
    // forwarding, no chunk lost.
    let (taken, said) = commit(&socket, dir.path(), &vm_port("del", 1));
    assert!(taken, "removing a1: {said}");
    assert!(!attached("a1"), "XDP left on the removed port");
    assert!(!ping(&vm1, 2), "the removed port still forwards");
    assert!(ping(&vm2, 3), "vm2 -> vm3 after a1 went");
    no_chunk_lost(&socket);

    // Added again: its queues bind again (a socket left bound to them
    // would make this fail).
    let (taken, said) = commit(&socket, dir.path(), &vm_port("add", 1));
    assert!(taken, "adding a1 again: {said}");
    assert!(ping(&vm1, 2) && ping(&vm1, 3), "a1 forwards again");

    // Every port removed, then two added back: the workers start new
    // UMEMs.
    let all: Vec<String> = [1, 2, 3].iter().map(|&n| vm_port("del", n)).collect();
    let (taken, said) = commit(&socket, dir.path(), &all.join(","));
    assert!(taken, "removing every port: {said}");
    assert!(!attached("a1") && !attached("a2") && !attached("a3"));
    assert_eq!(ports(), 0);
    let back: Vec<String> = [2, 3].iter().map(|&n| vm_port("add", n)).collect();
    let (taken, said) = commit(&socket, dir.path(), &back.join(","));
    assert!(taken, "adding a2 and a3 back: {said} {}", daemon.log());
    assert!(ping(&vm2, 3), "vm2 -> vm3 on fresh UMEMs");
    no_chunk_lost(&socket);

    // A port whose interface does not exist: refused whole, naming it,
    // and nothing changed.
    let missing = format!("{},{}", vm_port("add", 1), vm_port("add", 9));
    let (taken, said) = commit(&socket, dir.path(), &missing);
    assert!(!taken, "a port on a missing interface was taken");
    assert!(said.contains("ports: interface a9"), "{said}");
    assert_eq!(ports(), 2, "a refused commit changed the ports");
    assert!(!attached("a1"), "a refused commit attached");
    assert!(ping(&vm2, 3));

    let log = stop_xvrd(daemon);
    assert!(!log.contains("not recovered"), "{log}");
    assert!(!attached("a2") && !attached("a3"), "XDP left attached");
}
