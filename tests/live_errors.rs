//! Starting the router on a host that lacks a configured interface fails
//! with a message naming it, and leaves nothing attached.
use xvr::router::{Options, Router};
use xvr_control::State;
use xvr_dataplane::io::xsk::{Socket, Umem};
use xvr_testkit::netns::{require_root, Rig};

const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.0.1/24" }
  ]
}"#;

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_missing_interface_is_named_and_nothing_stays_attached() {
    require_root("attaching XDP in a network namespace");
    let tables = State::from_json(STATE).unwrap().build().unwrap();
    let mut rig = Rig::new("missing");
    let host = rig.namespace();
    let vm = rig.namespace();
    rig.veth(&host, "a1", None, &vm, "eth0", None);
    let error = rig.inside(&host, || Router::start(&tables, &Options::default()).err());
    let error = error.map(|e| e.to_string());
    let error = error.expect("a2 does not exist");
    assert!(error.contains("a2"), "{error}");
    let link = rig.exec(&host, &["ip", "-d", "link", "show", "dev", "a1"]);
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("prog/xdp"), "XDP left on a1:\n{link}");
}

/// A failed bind (no such interface) must leave the UMEM usable: its fill
/// and completion rings go to the next socket, which then takes frames.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_failed_bind_leaves_the_umem_whole() {
    require_root("binding AF_XDP sockets in a network namespace");
    let mut rig = Rig::new("rebind");
    let host = rig.namespace();
    let vm = rig.namespace();
    rig.veth(&host, "a1", None, &vm, "eth0", None);
    rig.inside(&host, || {
        let mut umem = Umem::new(256).unwrap();
        assert!(Socket::bind(&mut umem, "missing0", 0).is_err());
        let mut socket = Socket::bind(&mut umem, "a1", 0).unwrap();
        assert_eq!(socket.refill(&mut umem, 64), 64);
        assert_eq!(umem.free_frames(), 256 - 64);
    });
}
