//! DHCP live: VMs without addresses behind xvrd run Debian's `udhcpc`
//! (busybox), and the client is the judge. It must get its bound
//! address, mask, router, lease, host name, domain and (where the tenant
//! spans hosts) the overlay's MTU, configure them, reach its gateway, and
//! renew. Hostile VMs try to take another VM's lease, and to crowd the
//! others out with a flood of requests.
mod common;

use common::{count, start_xvrd, stats_of, stop_xvrd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xvr_testkit::netns::{require_root, Rig};

/// Tenant `acme` with web-1 (10.0.0.10, port a1) and db-1 (10.0.0.11,
/// port a2) in 10.0.0.0/24, a VTEP hosting another of its VMs (so the
/// tenant spans hosts, and DHCP tells the overlay's MTU), and the uplink.
const STATE: &str = r#"{
  "tenants": [{ "name": "acme", "vni": 100 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "acme", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "acme", "gateway": "10.0.0.1/24" }
  ],
  "neighbors": [
    { "tenant": "acme", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1", "hostname": "web-1" },
    { "tenant": "acme", "ip": "10.0.0.11", "mac": "02:0a:00:00:00:11", "port": "a2", "hostname": "db-1" }
  ],
  "vteps": [{ "ip": "198.18.0.2", "mac": "02:00:00:00:00:02" }],
  "remote_vms": [{ "tenant": "acme", "ip": "10.0.0.20", "mac": "02:0a:00:00:00:20", "vtep": "198.18.0.2" }]
}"#;

/// host (xvrd: up0, a1, a2) and two VMs without addresses: vm1 on a1,
/// vm2 on a2, with the MACs of web-1 and db-1.
fn rig(rig: &mut Rig) -> (String, String, String) {
    let host = rig.namespace();
    let internet = rig.namespace();
    rig.veth(&host, "up0", Some("198.18.0.1/24"), &internet, "eth0", None);
    let vm = |rig: &mut Rig, port: &str, mac: &str| {
        let vm = rig.namespace();
        rig.veth(&host, port, None, &vm, "eth0", None);
        rig.exec(&vm, &["ip", "link", "set", "eth0", "address", mac]);
        vm
    };
    let vm1 = vm(rig, "a1", "02:0a:00:00:00:10");
    let vm2 = vm(rig, "a2", "02:0a:00:00:00:11");
    (host, vm1, vm2)
}

/// The udhcpc script: configures the interface on `bound` and `renew`
/// as Debian's default script does, then logs each event with what the
/// server said (after: a test that sees `bound` may use the address).
const SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    for r in $router; do ip route replace default via "$r" dev "$interface"; done
    ;;
esac
echo "$1 ip=$ip subnet=$subnet router=$router mtu=$mtu hostname=$hostname domain=$domain lease=$lease serverid=$serverid" >> "$LOG"
"#;

struct Client {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Client {
    /// udhcpc in `ns` on eth0, in the foreground, asking for the MTU,
    /// host name and domain; `once`: quit after a lease (or after three
    /// tries without one).
    fn start(ns: &str, once: bool) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, SCRIPT).unwrap();
        let mut mode = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
        std::fs::set_permissions(&script, mode).unwrap();
        let log = dir.path().join("events");
        let script = script.to_str().unwrap();
        let mut args = vec![
            "netns", "exec", ns, "udhcpc", "-f", "-i", "eth0", "-s", script,
        ];
        args.extend([
            "-t", "3", "-T", "1", "-O", "mtu", "-O", "hostname", "-O", "domain",
        ]);
        if once {
            args.extend(["-q", "-n"]);
        }
        let child = Command::new("ip")
            .args(&args)
            .env("LOG", &log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Client {
            child,
            log,
            _dir: dir,
        }
    }

    fn events(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (10 s at most) for an event line starting with `event`.
    fn wait_for(&self, event: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let found = self
                .events()
                .lines()
                .find(|l| l.starts_with(&format!("{event} ")))
                .map(str::to_string);
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Waits for a `once` client to finish: whether it got a lease, and
    /// its events.
    fn finished(mut self) -> (bool, String) {
        let leased = self.child.wait().unwrap().success();
        (leased, self.events())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_vm_gets_its_lease_and_renews_it() {
    require_root("creating namespaces and running xvrd");
    let mut r = Rig::new("dhcp-lease");
    let (host, vm1, _) = rig(&mut r);
    let (_dir, config) = common::state_file(STATE);
    let daemon = start_xvrd(&r, &host, &config, &["up0", "a1", "a2"]);
    let client = Client::start(&vm1, false);
    let bound = client.wait_for("bound");
    let log = || format!("udhcpc: {}\nxvrd: {}", client.events(), daemon.log());
    let bound = bound.unwrap_or_else(|| panic!("no lease\n{}", log()));
    for option in [
        "ip=10.0.0.10 ",
        "subnet=255.255.255.0 ",
        "router=10.0.0.1 ",
        // The uplink's 1500 less VXLAN's 50: the tenant spans hosts.
        "mtu=1450 ",
        "hostname=web-1 ",
        "domain=acme.internal ",
        "lease=86400 ",
        "serverid=10.0.0.1",
    ] {
        assert!(bound.contains(option), "{option} in {bound:?}\n{}", log());
    }
    // The kernel took the lease: its address and route reach the gateway.
    let ping = r.exec(&vm1, &["ping", "-c", "1", "-W", "2", "10.0.0.1"]);
    assert!(ping.status.success(), "ping the gateway\n{}", log());
    // Renewal: unicast to the server, from the leased address.
    let pid = client.child.id().to_string();
    let sent = Command::new("kill").args(["-USR1", &pid]).status().unwrap();
    assert!(sent.success());
    let renewed = client.wait_for("renew");
    let renewed = renewed.unwrap_or_else(|| panic!("no renewal\n{}", log()));
    assert!(renewed.contains("ip=10.0.0.10 "), "{renewed}\n{}", log());
    let stats = stats_of(&config);
    let dhcp = &stats["services"]["dhcp_by_tenant"]["acme"];
    assert!(
        count(dhcp, &["offers"]) >= 1 && count(dhcp, &["acks"]) >= 2,
        "an offer and two acks for acme: {stats}"
    );
    drop(client);
    stop_xvrd(daemon);
}

/// A DHCP DISCOVER from `mac` asking for `chaddr`'s lease, `count` times,
/// sent raw on eth0 of `ns` (a hostile VM crafts its own frames).
fn raw_discovers(ns: &str, mac: [u8; 6], chaddr: [u8; 6], count: u32) -> (bool, String, String) {
    let program = format!(
        r#"
import socket, struct
mac, chaddr, count = bytes({mac:?}), bytes({chaddr:?}), {count}
dhcp = struct.pack("!BBBBIHHIIII", 1, 1, 6, 0, 0x1234, 0, 0x8000, 0, 0, 0, 0)
dhcp += chaddr + bytes(10) + bytes(192) + bytes([99, 130, 83, 99, 53, 1, 1, 255])
udp = struct.pack("!HHHH", 68, 67, 8 + len(dhcp), 0) + dhcp
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                 bytes(4), bytes([255] * 4))
csum = sum(struct.unpack("!10H", ip))
csum = (csum & 0xffff) + (csum >> 16)
ip = ip[:10] + struct.pack("!H", ~csum & 0xffff) + ip[12:]
frame = bytes([255] * 6) + mac + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(count):
    s.send(frame)
"#
    );
    common::python(ns, &program)
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_vm_cannot_take_another_vms_lease_or_crowd_it_out() {
    require_root("creating namespaces and running xvrd");
    let mut r = Rig::new("dhcp-hostile");
    let (host, vm1, vm2) = rig(&mut r);
    let (_dir, config) = common::state_file(STATE);
    let daemon = start_xvrd(&r, &host, &config, &["up0", "a1", "a2"]);
    let web = [2, 0x0a, 0, 0, 0, 0x10];
    let db = [2, 0x0a, 0, 0, 0, 0x11];
    // vm1 (web-1) asks for db-1's lease, from its own MAC: not its client.
    let (ok, _, err) = raw_discovers(&vm1, web, db, 3);
    assert!(ok, "{err}");
    // ... and from db-1's MAC, on its own port: port security.
    let (ok, _, err) = raw_discovers(&vm1, db, db, 3);
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let stats = stats_of(&config);
    assert_eq!(
        count(&stats, &["services", "dhcp", "not_our_client"]),
        3,
        "{stats}"
    );
    assert_eq!(count(&stats, &["services", "dhcp", "offers"]), 0, "{stats}");
    assert!(
        count(&stats, &["drops", "port_security_mac"]) >= 3,
        "{stats}"
    );
    // vm1 floods DISCOVERs while vm2 asks for its lease: vm1 is held to
    // its port's share, and vm2 is answered.
    let flood = std::thread::spawn({
        let vm1 = vm1.clone();
        move || {
            let started = Instant::now();
            let sent = raw_discovers(&vm1, web, web, 200_000);
            (sent, started.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let (leased, events) = Client::start(&vm2, true).finished();
    let ((ok, _, err), lasted) = flood.join().unwrap();
    assert!(ok, "{err}");
    let stats = stats_of(&config);
    assert!(
        leased && events.contains("bound ip=10.0.0.11 "),
        "vm2's lease during the flood: {events}\n{stats}\n{}",
        daemon.log()
    );
    assert!(
        count(&stats, &["drops", "service_rate_limited"]) > 100_000,
        "the flood was held to its share: {stats}"
    );
    // The services answered vm1 within its port's share only: a
    // second's worth for each second the flood touched, besides vm2's
    // own few (udhcpc asks 3 times at most).
    let offers = count(&stats, &["services", "dhcp", "offers"]);
    let seconds = lasted.as_secs() + 2;
    let share = u64::from(xvr_dataplane::service::REQUESTS_PER_PORT_SECOND);
    assert!(
        offers <= seconds * share + 3,
        "{offers} offers in {lasted:?}: {stats}"
    );
    stop_xvrd(daemon);
}
