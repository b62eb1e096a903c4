//! Real traffic through the live data path: two VM namespaces of one
//! tenant, each on a veth whose host end is served by the XDP steering
//! program, AF_XDP sockets sharing one UMEM, and a worker running the
//! pipeline. The VMs' own kernels are the independent checkers: ARP
//! resolution (answered by xvr), ping between the VMs (bridged through
//! xvr) and ping to the gateway (answered by xvr).
mod common;

use common::{two_vms, TWO_VMS};
use xvr::router::{total_stats, Options, Router};
use xvr_control::State;
use xvr_dataplane::Event;
use xvr_ebpf::Decision;
use xvr_testkit::netns::{require_root, Rig};

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
    common::wait_listening(server_ns, 5001);
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

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn vms_ping_each_other_and_the_gateway_through_xvr() {
    require_root("the live data path over veth");
    let tables = State::from_json(TWO_VMS).unwrap().build().unwrap();
    let mut rig = Rig::new("eastwest");
    let (host, vm1, vm2) = two_vms(&mut rig);
    rig.exec(&vm1, &["ip", "route", "add", "default", "via", "10.0.0.1"]);

    rig.inside(&host, || {
        let mut router = Router::start(&tables, &Options::default()).unwrap();
        let ((pings, tcp, errors), reports) = router
            .run_while(&tables, || {
                let ping = |ns: &str, to: &str| {
                    rig.try_exec(ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", to])
                };
                let pings = (
                    ping(&vm1, "10.0.0.11"),
                    ping(&vm2, "10.0.0.10"),
                    ping(&vm1, "10.0.0.1"),
                );
                // Routed through the gateway: TTL 1 and an unrouted network
                // get ICMP errors from xvr, as the VM's ping reports them.
                let probe = |args: &[&str]| {
                    let mut full = vec!["ping", "-c", "1", "-W", "2"];
                    full.extend_from_slice(args);
                    let out = std::process::Command::new("ip")
                        .args(["netns", "exec", vm1.as_str()])
                        .args(&full)
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout).to_string()
                };
                let errors = (probe(&["-t", "1", "10.0.5.1"]), probe(&["10.0.5.1"]));
                (pings, tcp_transfer(&rig, &vm2, &vm1, "10.0.0.11"), errors)
            })
            .unwrap();
        let stats = total_stats(&reports);
        let what = "pings vm1->vm2, vm2->vm1, vm1->gateway";
        assert_eq!(pings, (true, true, true), "{what}; {stats:?}");
        assert_eq!(tcp, Ok(TCP_BYTES), "TCP vm1->vm2, offload on; {stats:?}");
        assert!(
            errors.0.contains("From 10.0.0.1") && errors.0.contains("Time to live exceeded"),
            "TTL 1: {}",
            errors.0
        );
        assert!(
            errors.1.contains("From 10.0.0.1") && errors.1.contains("Destination Net Unreachable"),
            "no route: {}",
            errors.1
        );
        assert!(stats.events_of(Event::ArpReply) >= 2, "{stats:?}");
        assert!(stats.events_of(Event::Bridged) >= 12, "{stats:?}");
        assert!(stats.events_of(Event::IcmpEchoReply) >= 3, "{stats:?}");
        // The VMs' kernels left TCP checksums to offload; xvr finished them.
        assert!(stats.events_of(Event::ChecksumFinished) > 100, "{stats:?}");
        let counters = router.xdp_counters().read().unwrap();
        let to_socket = counters
            .iter()
            .find(|(d, _)| *d == Decision::ToSocketVmPort)
            .unwrap()
            .1;
        assert!(to_socket >= 15, "{counters:?}");
    });
}
