//! Source NAT as RFC 4787 describes a well-behaved NAT, checked from the
//! outside: two reflectors on the internet side (STUN-like: each answers
//! a datagram with the address and port it came from) tell what public
//! endpoint each VM socket got. The VMs' and reflectors' own kernels send
//! and receive; nothing is simulated.
//! - REQ-1: one inside endpoint keeps one public endpoint whatever it
//!   talks to (both reflectors see the same port);
//! - port preservation: a free port is kept;
//! - REQ-4: a port taken by another endpoint gives way to one of the same
//!   parity;
//! - REQ-3a: a source port below 1024 gets a port below 1024 (the range
//!   here has some), one above never does;
//! - REQ-8: filtering is the tenant's choice: after a VM sent to one
//!   reflector, that reflector's address from another port reaches it
//!   through its mapping under address-dependent and endpoint-independent
//!   filtering, the other reflector only under endpoint-independent, and
//!   neither under address-and-port-dependent.
mod common;

use common::{python, start_xvrd, stop_xvrd};
use std::process::{Child, Stdio};
use xvr_testkit::netns::{require_root, Rig};

const REFLECTORS: [&str; 2] = [common::INTERNET_SERVER, "198.19.0.11"];
const PORT: u16 = 3478;

/// `common::SNAT_STATE` with a second VM (10.0.0.11 on port a2) and a
/// source-NAT range that starts below 1024.
fn state() -> String {
    let snat = r#""nat": { "source": [{ "tenant": "t", "public_ip": "203.0.113.10" }] }"#;
    let low = r#""nat": { "source": [{ "tenant": "t", "public_ip": "203.0.113.10", "ports": [100, 65535] }] }"#;
    let vm = r#"{ "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" }"#;
    let vm2 = r#"{ "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.0.1/24" }"#;
    let neighbor =
        r#"{ "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" }"#;
    let neighbor2 =
        r#"{ "tenant": "t", "ip": "10.0.0.11", "mac": "02:0a:00:00:00:11", "port": "a2" }"#;
    for part in [snat, vm, neighbor] {
        assert!(common::SNAT_STATE.contains(part), "{part}");
    }
    common::SNAT_STATE
        .replace(snat, low)
        .replace(vm, &format!("{vm},\n    {vm2}"))
        .replace(neighbor, &format!("{neighbor},\n    {neighbor2}"))
}

/// Both reflectors in `ns`, each on its own socket (so that it answers
/// from the address it was asked on), until killed. Asked `other-port`,
/// the first says hello from its address and another port; asked
/// `other-address`, the second says hello.
fn reflectors(ns: &str) -> Child {
    let program = format!(
        "import select, socket\n\
         socks = []\n\
         for addr in {REFLECTORS:?}:\n\
         \x20 s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, {PORT})); socks.append(s)\n\
         other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); other.bind(({first:?}, {PORT} + 1))\n\
         while True:\n\
         \x20 for s in select.select(socks, [], [])[0]:\n\
         \x20   data, peer = s.recvfrom(64)\n\
         \x20   if data == b'other-port': other.sendto(b'hello', peer)\n\
         \x20   elif data == b'other-address': socks[1].sendto(b'hello', peer)\n\
         \x20   else: s.sendto(f'{{peer[0]}}:{{peer[1]}}'.encode(), peer)\n",
        first = REFLECTORS[0],
    );
    let child = common::spawn_python(ns, 60, &program, (Stdio::null(), Stdio::null()));
    // The reflectors answer (both sockets are bound) before any VM asks.
    common::wait_sockets(ns, "-Hlun", PORT, REFLECTORS.len());
    child
}

/// What each reflector saw of a socket in `vm` bound to `source`:port
/// (one "address:port" per reflector, in `REFLECTORS` order). The socket
/// stays open until `hold` exists, so its mapping stays in use.
fn seen_from(vm: &str, source: &str, port: u16) -> Vec<String> {
    let program = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n\
         s.bind(('{source}', {port}))\n\
         for r in {REFLECTORS:?}:\n\
         \x20 s.sendto(b'who', (r, {PORT})); print(s.recv(64).decode())\n"
    );
    let (ok, out, err) = python(vm, &program);
    assert!(ok, "{source}:{port} asking the reflectors: {err}");
    out.lines().map(str::to_string).collect()
}

fn public_port(seen: &[String]) -> u16 {
    let (ip, port) = seen[0].split_once(':').unwrap();
    assert_eq!(ip, "203.0.113.10", "{seen:?}");
    port.parse().unwrap()
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn source_nat_behaves_as_rfc_4787_asks_seen_from_two_reflectors() {
    require_root("running xvrd with source NAT over veth");
    let (_dir, config) = common::state_file(&state());
    let mut r = Rig::new("nat-rfc");
    let (host, vm1, internet) = common::internet_rig(&mut r, 1);
    let vm2 = r.vm(&host, "a2", "10.0.0.11/24", "02:0a:00:00:00:11");
    r.exec(&vm2, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    r.exec(
        &internet,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/32", REFLECTORS[1]),
            "dev",
            "lo",
        ],
    );
    let daemon = start_xvrd(&r, &host, &config, &["up0", "a1", "a2"]);
    let mut reflecting = reflectors(&internet);

    // The sessions outlive each Python socket (UDP mappings last 5
    // minutes), so vm1's mappings still hold the ports when vm2 asks.
    let high = seen_from(&vm1, "10.0.0.10", 40001);
    let low = seen_from(&vm1, "10.0.0.10", 500);
    let high_taken = seen_from(&vm2, "10.0.0.11", 40001);
    let low_taken = seen_from(&vm2, "10.0.0.11", 500);
    let _ = reflecting.kill();
    let _ = reflecting.wait();
    let log = stop_xvrd(daemon);

    for seen in [&high, &low, &high_taken, &low_taken] {
        assert_eq!(seen.len(), 2, "{seen:?}\n{log}");
        assert_eq!(seen[0], seen[1], "REQ-1: both reflectors see one endpoint");
    }
    assert_eq!(public_port(&high), 40001, "a free port is preserved");
    assert_eq!(public_port(&low), 500, "a free port is preserved");
    let port = public_port(&high_taken);
    assert!(
        port != 40001 && !port.is_multiple_of(2) && port >= 1024,
        "40001 taken: {port} (REQ-4 parity, REQ-3a range)"
    );
    let port = public_port(&low_taken);
    assert!(
        port != 500 && port.is_multiple_of(2) && port < 1024,
        "500 taken: {port} (REQ-4 parity, REQ-3a range)"
    );
}

/// Whether a VM socket that sent to the first reflector hears from that
/// reflector's other port, and from the second reflector.
fn reached_through_mapping(vm: &str, port: u16) -> (bool, bool) {
    let program = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\n\
         s.bind(('10.0.0.10', {port}))\n\
         s.sendto(b'who', ({first:?}, {PORT})); s.recv(64)\n\
         for ask in ['other-port', 'other-address']:\n\
         \x20 s.sendto(ask.encode(), ({first:?}, {PORT}))\n\
         \x20 try: print(ask, s.recv(64).decode())\n\
         \x20 except socket.timeout: print(ask, 'nothing')\n",
        first = REFLECTORS[0],
    );
    let (ok, out, err) = python(vm, &program);
    assert!(ok, "{err}");
    (
        out.contains("other-port hello"),
        out.contains("other-address hello"),
    )
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn filtering_is_the_tenants_choice_seen_from_two_reflectors() {
    require_root("running xvrd with source NAT over veth");
    let snat = r#""nat": { "source": [{ "tenant": "t", "public_ip": "203.0.113.10" }] }"#;
    assert!(common::SNAT_STATE.contains(snat));
    // (filtering, from the other port, from the other address)
    let cases = [
        ("endpoint_independent", true, true),
        ("address_dependent", true, false),
        ("address_and_port_dependent", false, false),
    ];
    for (i, (filtering, other_port, other_address)) in cases.into_iter().enumerate() {
        let with = format!(
            r#""nat": {{ "source": [{{ "tenant": "t", "public_ip": "203.0.113.10", "filtering": "{filtering}" }}] }},
  "firewall": [{{ "tenant": "t", "direction": "ingress", "action": "allow", "protocol": "udp",
                 "destination": "203.0.113.10/32" }}]"#
        );
        let (_dir, config) = common::state_file(&common::SNAT_STATE.replace(snat, &with));
        let mut r = Rig::new("nat-filter");
        let (host, vm, internet) = common::internet_rig(&mut r, 1);
        let reflector = format!("{}/32", REFLECTORS[1]);
        r.exec(&internet, &["ip", "addr", "add", &reflector, "dev", "lo"]);
        let daemon = start_xvrd(&r, &host, &config, &["up0", "a1"]);
        let mut reflecting = reflectors(&internet);
        let reached = reached_through_mapping(&vm, 41000 + i as u16);
        let _ = reflecting.kill();
        let _ = reflecting.wait();
        let log = stop_xvrd(daemon);
        assert_eq!(
            reached,
            (other_port, other_address),
            "{filtering}: (from the other port, from the other address)\n{log}"
        );
        if !other_address {
            let refused = match filtering {
                "address_and_port_dependent" => "nat_no_session",
                _ => "nat_filtered",
            };
            assert!(log.contains(refused), "{filtering}: {refused} in\n{log}");
        }
    }
}
