//! Real traffic through the live data path: two VM namespaces of one
//! tenant, each on a veth whose host end is served by the XDP steering
//! program, AF_XDP sockets sharing one UMEM, and a worker running the
//! pipeline. The VMs' own kernels are the independent checkers: ARP
//! resolution (answered by xvr), ping between the VMs (bridged through
//! xvr) and ping to the gateway (answered by xvr).
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use xvr_control::State;
use xvr_dataplane::io::xsk::{Socket, Umem};
use xvr_dataplane::worker::Worker;
use xvr_dataplane::Event;
use xvr_ebpf::{AttachMode, Decision, Steering};
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

fn ifindex(name: &str) -> u32 {
    let name = CString::new(name).unwrap();
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {name:?}");
    index
}

#[test]
fn vms_ping_each_other_and_the_gateway_through_xvr() {
    if !privileged("the live data path over veth") {
        return;
    }
    let tables = State::from_json(STATE).unwrap().build().unwrap();
    let mut rig = Rig::new("eastwest");
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

    rig.inside(&host, || {
        let mut steering = Steering::load().unwrap();
        let mut umem = Umem::new(4096).unwrap();
        let mut sockets = Vec::new();
        for name in ["a1", "a2"] {
            let index = ifindex(name);
            steering.add_vm_port(index).unwrap();
            steering.attach(name, AttachMode::Native).unwrap();
            let socket = Socket::bind(&mut umem, name, 0).unwrap();
            steering.set_socket(index, 0, socket.fd()).unwrap();
            sockets.push((tables.port_by_name(name).unwrap(), socket));
        }
        let mut worker = Worker::new(umem, sockets, tables.ports().len());
        let stop = AtomicBool::new(false);
        let stats = std::thread::scope(|s| {
            let handle = s.spawn(|| {
                worker.run(&tables, &stop);
                worker.pipeline.stats.clone()
            });
            let ping = |ns: &str, to: &str| {
                rig.try_exec(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", to])
            };
            let results = (
                ping(&vm1, "10.0.0.11"),
                ping(&vm2, "10.0.0.10"),
                ping(&vm1, "10.0.0.1"),
            );
            stop.store(true, Ordering::Relaxed);
            let stats = handle.join().unwrap();
            assert_eq!(
                results,
                (true, true, true),
                "pings vm1->vm2, vm2->vm1, vm1->gateway; {stats:?}"
            );
            stats
        });
        assert!(stats.events_of(Event::ArpReply) >= 2, "{stats:?}");
        assert!(stats.events_of(Event::Bridged) >= 12, "{stats:?}");
        assert!(stats.events_of(Event::IcmpEchoReply) >= 3, "{stats:?}");
        let to_socket = steering
            .counters()
            .unwrap()
            .into_iter()
            .find(|(d, _)| *d == Decision::ToSocketVmPort)
            .unwrap()
            .1;
        assert!(to_socket >= 15, "{:?}", steering.counters());
    });
}
