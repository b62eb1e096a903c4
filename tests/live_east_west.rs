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

/// Bytes sent over TCP; more than fit in the socket buffers, so the
/// transfer only completes if segments and ACKs cross xvr intact.
const TCP_BYTES: usize = 4 << 20;

/// Sends `TCP_BYTES` from `client_ns` to a server in `server_ns` with the
/// kernels' TCP stacks (TX checksum offload left on, as veth has it by
/// default) and returns what the server received.
fn tcp_transfer(
    rig: &Rig,
    server_ns: &str,
    client_ns: &str,
    server_ip: &str,
) -> Result<usize, String> {
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", server_ns, "python3", "-c"])
        .arg(concat!(
            "import socket\n",
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n",
            "s.bind(('0.0.0.0', 5001)); s.listen(1); s.settimeout(10)\n",
            "c,_=s.accept(); c.settimeout(10); n=0\n",
            "while True:\n  b=c.recv(65536)\n  if not b: break\n  n+=len(b)\n",
            "print(n)\n",
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let send = format!(
        "import socket\ns=socket.create_connection(('{server_ip}', 5001), timeout=10)\ns.sendall(b'x'*{TCP_BYTES})\ns.close()\n"
    );
    let client_ok = rig.try_exec(client_ns, &["timeout", "20", "python3", "-c", &send]);
    let out = server.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text
        .trim()
        .parse::<usize>()
        .map_err(|_| format!("server printed {text:?}"))?;
    if !client_ok {
        return Err(format!(
            "the client failed after the server got {received} bytes"
        ));
    }
    Ok(received)
}

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
            let tcp = tcp_transfer(&rig, &vm2, &vm1, "10.0.0.11");
            stop.store(true, Ordering::Relaxed);
            let stats = handle.join().unwrap();
            assert_eq!(
                results,
                (true, true, true),
                "pings vm1->vm2, vm2->vm1, vm1->gateway; {stats:?}"
            );
            assert_eq!(
                tcp,
                Ok(TCP_BYTES),
                "TCP vm1->vm2, checksum offload on; {stats:?}"
            );
            stats
        });
        assert!(stats.events_of(Event::ArpReply) >= 2, "{stats:?}");
        assert!(stats.events_of(Event::Bridged) >= 12, "{stats:?}");
        assert!(stats.events_of(Event::IcmpEchoReply) >= 3, "{stats:?}");
        // The VMs' kernels left TCP checksums to offload; xvr finished them.
        assert!(stats.events_of(Event::ChecksumFinished) > 100, "{stats:?}");
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
