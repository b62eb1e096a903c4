//! Overlay interop with the Linux kernel's own VXLAN device: a VM behind
//! xvr and a VM behind a kernel VTEP (a `vxlan` device with the same VNI,
//! bridged to its VM) ping each other across a veth underlay. The kernel
//! decapsulates what xvr encapsulates and the other way round, and answers
//! its ARP through the overlay; tcpdump on the kernel side sees the VNI.
use xvr::router::{total_stats, Options, Router};
use xvr_control::State;
use xvr_dataplane::Event;
use xvr_testkit::netns::{privileged, Rig};

const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" }
  ],
  "neighbors": [{ "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" }],
  "vteps": [{ "ip": "198.18.0.2", "mac": "02:00:00:00:00:02" }],
  "remote_vms": [{ "tenant": "t", "ip": "10.0.0.20", "mac": "02:0a:00:00:00:20", "vtep": "198.18.0.2" }]
}"#;

#[test]
fn vm_behind_xvr_and_vm_behind_kernel_vxlan_ping_each_other() {
    if !privileged("the live data path over veth") {
        return;
    }
    let tables = State::from_json(STATE).unwrap().build().unwrap();
    let mut rig = Rig::new("overlay");
    let host = rig.namespace();
    let vm1 = rig.vm(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10");
    let kernel = rig.namespace();
    // vm2 hangs off the kernel VTEP host, bridged to its vxlan device below.
    let vm2 = rig.vm(&kernel, "b1", "10.0.0.20/24", "02:0a:00:00:00:20");
    rig.veth(
        &host,
        "up0",
        Some("198.18.0.1/24"),
        &kernel,
        "eth0",
        Some("198.18.0.2/24"),
    );
    rig.exec(
        &host,
        &["ip", "link", "set", "up0", "address", "02:00:00:00:00:01"],
    );
    rig.exec(
        &kernel,
        &["ip", "link", "set", "eth0", "address", "02:00:00:00:00:02"],
    );
    // The kernel VTEP: vxlan100 to 198.18.0.1, bridged with vm2's veth.
    let k = |args: &[&str]| {
        rig.exec(&kernel, args);
    };
    k(&[
        "ip",
        "link",
        "add",
        "vxlan100",
        "type",
        "vxlan",
        "id",
        "100",
        "local",
        "198.18.0.2",
        "remote",
        "198.18.0.1",
        "dstport",
        "4789",
        "dev",
        "eth0",
    ]);
    k(&["ip", "link", "add", "br0", "type", "bridge"]);
    k(&["ip", "link", "set", "vxlan100", "master", "br0"]);
    k(&["ip", "link", "set", "b1", "master", "br0"]);
    for dev in ["vxlan100", "br0"] {
        k(&["ip", "link", "set", dev, "up"]);
    }

    rig.inside(&host, || {
        let mut router = Router::start(&tables, &Options::default()).unwrap();
        let ((pings, dump), reports) = router
            .run_while(&tables, || {
                let capture = std::process::Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &kernel,
                        "tcpdump",
                        "-n",
                        "-i",
                        "eth0",
                        "-c",
                        "4",
                        "-v",
                        "udp port 4789",
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(std::time::Duration::from_millis(500));
                let ping = |ns: &str, to: &str| {
                    rig.try_exec(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", to])
                };
                let pings = (
                    ping(&vm1, "10.0.0.20"),
                    ping(&vm2, "10.0.0.10"),
                    ping(&kernel, "198.18.0.1"),
                );
                let dump = capture.wait_with_output().unwrap();
                (pings, String::from_utf8_lossy(&dump.stdout).to_string())
            })
            .unwrap();
        let stats = total_stats(&reports);
        let what = "pings vm1->vm2, vm2->vm1, kernel->host underlay";
        assert_eq!(pings, (true, true, true), "{what}; {stats:?}");
        assert!(
            dump.contains("VXLAN") && dump.contains("vni 100"),
            "tcpdump on the kernel VTEP:\n{dump}"
        );
        assert!(stats.events_of(Event::Encap) >= 6, "{stats:?}");
        assert!(stats.events_of(Event::Decap) >= 6, "{stats:?}");
    });
}
