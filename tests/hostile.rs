//! A hostile VM against xvrd, live: each attack is sent as raw frames from
//! a VM's (or the underlay's) namespace, and checked twice: at the would-be
//! receiver, whose kernel socket sniffs every frame that reaches it, and by
//! the named counter in xvrd's stats. Honest frames sent alongside prove
//! the receivers listen.
//!
//! Tenant t has a web tier (10.0.0.0/24: vm1 on a1, vm3 on a3) and a db
//! tier (10.0.1.0/24: db on a2) whose ACL takes UDP 5001, TCP 5432 and
//! pings from the web tier. Tenant u uses the same subnet (vmu on b1,
//! 10.0.0.10, as vm1). The remote VTEP 198.18.0.2 hosts one VM of u only.
mod common;

use common::{socket_beside, start_xvrd, stop_xvrd, xvrctl};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use xvr_testkit::netns::{require_root, Rig};
use xvr_testkit::{arp_reply, arp_request, headers, Mac};

const STATE: &str = r#"{
  "tenants": [{ "name": "t", "vni": 100 }, { "name": "u", "vni": 200 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a3", "mac": "02:aa:00:00:00:03", "tenant": "t", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "a2", "mac": "02:aa:00:00:00:02", "tenant": "t", "gateway": "10.0.1.1/24" },
    { "role": "vm", "name": "b1", "mac": "02:bb:00:00:00:01", "tenant": "u", "gateway": "10.0.0.1/24" }
  ],
  "neighbors": [
    { "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "t", "ip": "10.0.0.11", "mac": "02:0a:00:00:00:11", "port": "a3" },
    { "tenant": "t", "ip": "10.0.1.10", "mac": "02:0a:00:00:01:10", "port": "a2" },
    { "tenant": "u", "ip": "10.0.0.10", "mac": "02:0b:00:00:00:10", "port": "b1" }
  ],
  "vteps": [{ "ip": "198.18.0.2", "mac": "02:00:00:00:00:02" }],
  "remote_vms": [
    { "tenant": "u", "ip": "10.0.0.20", "mac": "02:0b:00:00:00:20", "vtep": "198.18.0.2" }
  ],
  "network_acls": [
    { "tenant": "t", "tier": "10.0.1.0/24", "rules": [
      { "direction": "ingress", "action": "allow", "protocol": "udp", "source": "10.0.0.0/24", "ports": [5001, 5001] },
      { "direction": "ingress", "action": "allow", "protocol": "tcp", "source": "10.0.0.0/24", "ports": [5432, 5432] },
      { "direction": "ingress", "action": "allow", "protocol": "icmp", "icmp_type": 8, "source": "10.0.0.0/24" }
    ] }
  ]
}"#;

const VM1: Mac = [2, 0x0a, 0, 0, 0, 0x10];
const VM3: Mac = [2, 0x0a, 0, 0, 0, 0x11];
const DB: Mac = [2, 0x0a, 0, 0, 1, 0x10];
const VMU: Mac = [2, 0x0b, 0, 0, 0, 0x10];
const REMOTE_U: Mac = [2, 0x0b, 0, 0, 0, 0x20];
const GW_A1: Mac = [2, 0xaa, 0, 0, 0, 1];
const UPLINK: Mac = [2, 0, 0, 0, 0, 1];
const UNDERLAY: Mac = [2, 0, 0, 0, 0, 2];
const STRANGER: Mac = [2, 0x66, 0, 0, 0, 0x66];

/// Seconds every sniffer listens: long enough for all the attacks.
const SNIFF_SECONDS: u32 = 10;

/// Starts a sniffer on `ns`'s eth0 that prints every frame it receives
/// (hex, one a line; not the ones it sends) for `SNIFF_SECONDS`: the receiver's own kernel
/// socket, independent of xvr.
fn sniff(ns: &str) -> Child {
    let program = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))\n\
         s.bind(('eth0', 0)); s.settimeout(0.2)\n\
         end = time.time() + {SNIFF_SECONDS}\n\
         while time.time() < end:\n\
         \x20   try: frame, addr = s.recvfrom(65535)\n\
         \x20   except socket.timeout: continue\n\
         \x20   if addr[2] != socket.PACKET_OUTGOING: print(frame.hex(), flush=True)\n"
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &program])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The frames a sniffer saw.
fn seen(sniffer: Child) -> Vec<Vec<u8>> {
    let out = sniffer.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(l.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .collect()
}

/// Sends `frames` as they are from `ns`'s eth0 (a raw socket: any bytes).
fn send_raw(r: &Rig, ns: &str, frames: &[Vec<u8>]) {
    let hex: Vec<String> = frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let program = "import socket, sys\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('eth0', 0))\n\
         for h in sys.argv[1:]: s.send(bytes.fromhex(h))\n";
    let mut args = vec!["python3", "-c", program];
    args.extend(hex.iter().map(String::as_str));
    r.exec(ns, &args);
}

fn contains(frame: &[u8], marker: &[u8]) -> bool {
    frame.windows(marker.len()).any(|w| w == marker)
}

/// The named drop counters of xvrd's stats.
fn drops(socket: &std::path::Path) -> Value {
    let out = xvrctl(socket, &["--json", "stats"]);
    assert!(out.status.success(), "{out:?}");
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    stats["drops"].clone()
}

fn count(drops: &Value, reason: &str) -> u64 {
    drops[reason].as_u64().unwrap_or(0)
}

/// Truncated and lying headers on every layer, from vm1 (its own MAC and
/// address where there is one): each must be dropped, none may stop a
/// worker.
fn torture() -> Vec<Vec<u8>> {
    let honest = headers(VM1, GW_A1, [10, 0, 0, 10], [10, 0, 1, 10]);
    let udp = honest.udp(40000, 5001, b"torture");
    let ping = honest.ping(7, 1, b"torture");
    let syn = honest.tcp_syn(40000, 5432);
    let mut frames = Vec::new();
    // The 35-byte frame: IPv4 header + 1 byte of ICMP type 3, into the
    // db tier's ACL.
    let mut icmp1 = ping.clone();
    icmp1.truncate(35);
    icmp1[16..18].copy_from_slice(&21u16.to_be_bytes());
    icmp1[34] = 3;
    xvr_testkit::fix_ipv4_checksum(&mut icmp1);
    frames.push(icmp1);
    for base in [&udp, &ping, &syn] {
        for cut in [14, 15, 20, 33, 34, 35, 36, 38, 41, 42, 45, 53] {
            frames.push(base[..cut.min(base.len())].to_vec());
        }
        // Lying lengths: total length beyond the frame, below the header,
        // IHL beyond the frame, IHL below 5, UDP length past the packet.
        for (at, value) in [(16, 0xff), (17, 0x05), (14, 0x4f), (14, 0x43), (38, 0xff)] {
            let mut lie = base.clone();
            lie[at] = value;
            xvr_testkit::fix_ipv4_checksum(&mut lie);
            frames.push(lie);
        }
        // A later fragment and a first fragment with a 1-byte payload.
        let mut later = base.clone();
        later[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
        xvr_testkit::fix_ipv4_checksum(&mut later);
        frames.push(later);
    }
    // ICMP errors quoting too little, or quoting another tier's flow.
    for quote in [&udp[14..20], &udp[14..34], &syn[14..40]] {
        let mut error = Vec::new();
        etherparse::PacketBuilder::ethernet2(VM1, GW_A1)
            .ipv4([10, 0, 0, 10], [10, 0, 1, 10], 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut error, quote)
            .unwrap();
        frames.push(error);
    }
    // VLAN tags, an unknown ethertype, ARP cut short, ARP with other sizes.
    let mut tagged = udp.clone();
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    frames.push(tagged);
    let mut odd = udp.clone();
    odd[12..14].copy_from_slice(&[0x88, 0xb5]);
    frames.push(odd);
    let arp = arp_request(VM1, [10, 0, 0, 10], [10, 0, 0, 1]);
    frames.push(arp[..30].to_vec());
    let mut sizes = arp.clone();
    sizes[18] = 8;
    frames.push(sizes);
    frames
}

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_hostile_vm_reaches_nobody_and_stops_nothing() {
    require_root("running xvrd over veth with hostile VMs");
    let (_dir, config) = common::state_file(STATE);
    let socket = socket_beside(&config);
    let mut r = Rig::new("hostile");
    let host = r.namespace();
    let vm1 = r.vm(&host, "a1", "10.0.0.10/24", "02:0a:00:00:00:10");
    let vm3 = r.vm(&host, "a3", "10.0.0.11/24", "02:0a:00:00:00:11");
    let db = r.vm(&host, "a2", "10.0.1.10/24", "02:0a:00:00:01:10");
    let vmu = r.vm(&host, "b1", "10.0.0.10/24", "02:0b:00:00:00:10");
    let underlay = r.namespace();
    r.veth(
        &host,
        "up0",
        Some("198.18.0.1/24"),
        &underlay,
        "eth0",
        Some("198.18.0.2/24"),
    );
    r.exec(
        &host,
        &["ip", "link", "set", "up0", "address", "02:00:00:00:00:01"],
    );
    r.exec(
        &underlay,
        &["ip", "link", "set", "eth0", "address", "02:00:00:00:00:02"],
    );
    r.exec(&vm1, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    r.exec(&vm3, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    r.exec(&db, &["ip", "route", "add", "default", "via", "10.0.1.1"]);
    let daemon = start_xvrd(&r, &host, &config, &["a1", "a2", "a3", "b1", "up0"]);

    // Before: vm3 knows its gateway; the web tier reaches the db.
    let ping =
        |ns: &str, to: &str| r.try_exec(ns, &["ping", "-c", "2", "-i", "0.2", "-W", "2", to]);
    assert!(ping(&vm3, "10.0.0.1"), "vm3 pings its gateway");
    assert!(ping(&vm1, "10.0.1.10"), "vm1 pings the db");
    let gateway_mac = |ns: &str| {
        let out = r.exec(ns, &["ip", "neigh", "show", "10.0.0.1", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(
        gateway_mac(&vm3).contains("02:aa:00:00:00:03"),
        "{}",
        gateway_mac(&vm3)
    );

    let sniffers = [&vm1, &vm3, &db, &vmu].map(|ns| sniff(ns));
    std::thread::sleep(Duration::from_millis(500));
    let web = headers(VM1, GW_A1, [10, 0, 0, 10], [10, 0, 1, 10]);
    let attacks = vec![
        // Forged source MAC, forged source address.
        headers(STRANGER, GW_A1, [10, 0, 0, 10], [10, 0, 1, 10]).udp(4000, 5001, b"ATTACK-mac"),
        headers(VM1, GW_A1, [10, 0, 0, 99], [10, 0, 1, 10]).udp(4000, 5001, b"ATTACK-ip"),
        // A source inside the db tier, to db:22, which its ACL denies to
        // the web tier (same-tier pairs skip the rules).
        headers(VM1, GW_A1, [10, 0, 1, 11], [10, 0, 1, 10]).tcp_syn(4000, 22),
        // Straight to the db VM's MAC, around the gateway and its ACL.
        headers(VM1, DB, [10, 0, 0, 10], [10, 0, 1, 10]).udp(4000, 5001, b"ATTACK-cross-tier"),
        // ARP poisoning of a neighbour ("the gateway is at vm1") and of
        // the gateway ("vm3 is at vm1").
        arp_reply(VM1, VM3, VM1, [10, 0, 0, 1], [10, 0, 0, 11]),
        arp_request(VM1, [10, 0, 0, 11], [10, 0, 0, 1]),
        // Tenant u's VM, same addresses as vm1: nothing of it in t.
        headers(VM1, VMU, [10, 0, 0, 10], [10, 0, 0, 10]).udp(4000, 5001, b"ATTACK-tenant"),
    ];
    send_raw(&r, &vm1, &attacks);
    send_raw(&r, &vm1, &torture());
    send_raw(&r, &vm1, &[web.udp(4000, 5001, b"HONEST-web")]);
    // VXLAN into tenant t's VNI from an unknown VTEP and from a VTEP that
    // hosts only tenant u; in u's VNI a lying inner source, then the
    // truth.
    let outer = |src: [u8; 4]| headers(UNDERLAY, UPLINK, src, [198, 18, 0, 1]);
    let inner_to_vm1 = headers(REMOTE_U, VM1, [10, 0, 0, 20], [10, 0, 0, 10]);
    let inner_to_vmu = |src_ip| headers(REMOTE_U, VMU, src_ip, [10, 0, 0, 10]);
    let overlay = vec![
        outer([198, 18, 0, 99]).vxlan(50000, 100, 8, &inner_to_vm1.udp(1, 5001, b"ATTACK-vtep")),
        outer([198, 18, 0, 2]).vxlan(50000, 100, 8, &inner_to_vm1.udp(1, 5001, b"ATTACK-vni")),
        outer([198, 18, 0, 2]).vxlan(
            50000,
            200,
            8,
            &inner_to_vmu([10, 0, 0, 21]).udp(1, 5001, b"ATTACK-inner"),
        ),
        outer([198, 18, 0, 2]).vxlan(
            50000,
            200,
            8,
            &inner_to_vmu([10, 0, 0, 20]).udp(1, 5001, b"HONEST-overlay"),
        ),
    ];
    send_raw(&r, &underlay, &overlay);

    let [vm1_saw, vm3_saw, db_saw, vmu_saw] = sniffers.map(seen);
    let everything: Vec<&Vec<u8>> = [&vm1_saw, &vm3_saw, &db_saw, &vmu_saw]
        .into_iter()
        .flatten()
        .collect();
    for f in &everything {
        assert!(
            !contains(f, b"ATTACK-"),
            "an attack was delivered: {f:02x?}"
        );
    }
    let syn_to_22 = |f: &&Vec<u8>| f.len() >= 38 && f[23] == 6 && f[36..38] == [0, 22];
    assert!(
        !db_saw.iter().any(|f| syn_to_22(&f)),
        "db saw a SYN to port 22"
    );
    assert!(
        db_saw.iter().any(|f| contains(f, b"HONEST-web")),
        "db heard the honest frame"
    );
    assert!(
        vmu_saw.iter().any(|f| contains(f, b"HONEST-overlay")),
        "vmu heard the honest VXLAN"
    );
    assert!(
        gateway_mac(&vm3).contains("02:aa:00:00:00:03"),
        "vm3's gateway entry was poisoned: {}",
        gateway_mac(&vm3)
    );

    // After: pings still work, and no worker panicked.
    assert!(
        ping(&vm1, "10.0.1.10"),
        "vm1 pings the db after the attacks"
    );
    assert!(
        ping(&vm3, "10.0.1.10"),
        "vm3 reaches the db after the attacks"
    );
    assert!(ping(&vmu, "10.0.0.1"), "vmu pings its gateway");
    let d = drops(&socket);
    for (reason, at_least) in [
        ("port_security_mac", 1),
        ("port_security_ip", 2),
        ("port_security_arp", 2),
        ("l2_cross_tier", 1),
        ("l2_unknown_unicast", 1),
        ("vxlan_unknown_vtep", 1),
        ("vxlan_vtep_not_member", 1),
        ("vxlan_inner_source", 1),
        ("l4_truncated", 1),
    ] {
        assert!(count(&d, reason) >= at_least, "{reason} in {d}");
    }
    assert_eq!(count(&d, "worker_panic"), 0, "{d}");
    let health = xvrctl(&socket, &["--json", "health"]);
    let health: Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(health["workers"][0]["worker_panics"], 0, "{health}");
    assert_eq!(health["workers"][0]["alive"], true, "{health}");
    stop_xvrd(daemon);
}

/// Tenant "a" is listed before "t"; t's VM streams TCP through source NAT
/// to the internet. Deleting a while the stream runs must not move t's
/// sessions to another tenant (ids were list positions once): the stream
/// goes on, in t, to the end.
const TWO_TENANTS_NAT: &str = r#"{
  "tenants": [{ "name": "a", "vni": 99 }, { "name": "t", "vni": 100 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "t", "gateway": "10.0.0.1/24" }
  ],
  "routes": [
    { "tenant": "a", "prefix": "0.0.0.0/0", "next_hop": "internet" },
    { "tenant": "t", "prefix": "0.0.0.0/0", "next_hop": "internet" }
  ],
  "neighbors": [{ "tenant": "t", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" }],
  "nat": { "source": [
    { "tenant": "a", "public_ip": "203.0.113.9" },
    { "tenant": "t", "public_ip": "203.0.113.10" }
  ] }
}"#;

#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn deleting_a_tenant_listed_before_another_leaves_its_connections_alone() {
    require_root("running xvrd with source NAT over veth");
    let (_dir, config) = common::state_file(TWO_TENANTS_NAT);
    let socket = socket_beside(&config);
    let mut r = Rig::new("tenant-delete");
    let (host, vm, internet) = common::internet_rig(&mut r, 1);
    let daemon = start_xvrd(&r, &host, &config, &["a1", "up0"]);
    let stream = std::thread::scope(|s| {
        let stream =
            s.spawn(|| r.iperf3(&internet, &vm, common::INTERNET_SERVER, 4, &["-b", "200M"]));
        std::thread::sleep(Duration::from_millis(1500));
        let gone =
            serde_json::json!({ "action": "del", "table": "tenants", "entry": { "name": "a" } });
        let routes = serde_json::json!({ "action": "del", "table": "routes",
            "entry": { "tenant": "a", "prefix": "0.0.0.0/0" } });
        let nat = serde_json::json!({ "action": "del", "table": "nat.source",
            "entry": { "tenant": "a", "public_ip": "203.0.113.9" } });
        common::call(
            &socket,
            serde_json::json!({ "op": "commit", "changes": [nat, routes, gone] }),
        );
        let sessions = common::call(
            &socket,
            serde_json::json!({ "op": "sessions", "tenant": "t", "protocol": "tcp" }),
        );
        (stream.join().unwrap(), sessions)
    });
    let (stream, sessions) = stream;
    let stream = stream.unwrap_or_else(|e| panic!("the stream broke when a went: {e}"));
    // 4 s at 200 Mbit/s; well over half must arrive, after the delete too.
    assert!(stream.bytes_received > 50_000_000, "{stream:?}");
    assert!(
        sessions["matched"].as_u64().unwrap_or(0) >= 1,
        "t's sessions, in t: {sessions}"
    );
    let dump = xvrctl(&socket, &["--json", "dump", "tenants"]);
    assert!(!String::from_utf8_lossy(&dump.stdout).contains("\"a\""));

    // t's default route leads to the internet, not to the underlay: the
    // underlay router (198.18.0.254) and the host's own uplink address
    // hear nothing of t's pings, which are dropped by name.
    let echoes = |ns: &str| common::echo_requests_received(&r, ns);
    let before = (echoes(&internet), echoes(&host));
    for target in ["198.18.0.254", "198.18.0.1"] {
        let ping = ["ping", "-c", "2", "-i", "0.2", "-W", "1", target];
        assert!(
            !r.try_exec(&vm, &ping),
            "t reached {target} on the underlay"
        );
    }
    assert_eq!(
        (echoes(&internet), echoes(&host)),
        before,
        "the underlay heard t"
    );
    assert!(count(&drops(&socket), "underlay_guard") >= 4);
    stop_xvrd(daemon);
}

/// Tenants a and b on one subnet, each with source NAT; the worker's
/// table holds 8,192 sessions, so each tenant's default share is 2,048.
const FLOOD_STATE: &str = r#"{
  "tenants": [{ "name": "a", "vni": 100 }, { "name": "b", "vni": 200 }],
  "ports": [
    { "role": "uplink", "name": "up0", "mac": "02:00:00:00:00:01", "ip": "198.18.0.1",
      "internet_gateway_mac": "02:00:00:00:00:fe" },
    { "role": "vm", "name": "a1", "mac": "02:aa:00:00:00:01", "tenant": "a", "gateway": "10.0.0.1/24" },
    { "role": "vm", "name": "b1", "mac": "02:bb:00:00:00:01", "tenant": "b", "gateway": "10.0.0.1/24" }
  ],
  "routes": [
    { "tenant": "a", "prefix": "0.0.0.0/0", "next_hop": "internet" },
    { "tenant": "b", "prefix": "0.0.0.0/0", "next_hop": "internet" }
  ],
  "neighbors": [
    { "tenant": "a", "ip": "10.0.0.10", "mac": "02:0a:00:00:00:10", "port": "a1" },
    { "tenant": "b", "ip": "10.0.0.10", "mac": "02:0b:00:00:00:10", "port": "b1" }
  ],
  "nat": { "source": [
    { "tenant": "a", "public_ip": "203.0.113.10" },
    { "tenant": "b", "public_ip": "203.0.113.11" }
  ] },
  "conntrack": { "max_sessions": 8192 }
}"#;

/// Tenant a floods UDP to 30,000 ports (a new session each) for seconds
/// on end, while tenant b opens 1,000 TCP connections through NAT: a
/// fills its own share of the worker's sessions, never b's.
#[test]
#[ignore = "needs root: scripts/test runs it as root"]
fn a_session_flood_from_one_tenant_leaves_the_others_their_share() {
    require_root("running xvrd with source NAT over veth");
    let (_dir, config) = common::state_file(FLOOD_STATE);
    let socket = socket_beside(&config);
    let mut r = Rig::new("flood");
    let (host, vma, internet) = common::internet_rig(&mut r, 1);
    let vmb = r.vm(&host, "b1", "10.0.0.10/24", "02:0b:00:00:00:10");
    r.exec(&vmb, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    let daemon = start_xvrd(&r, &host, &config, &["a1", "b1", "up0"]);

    let server = format!(
        "import socket, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{}', 7000)); s.listen(4096); s.settimeout(1)\n\
         held = []; end = time.time() + 40\n\
         while time.time() < end and len(held) < 1000:\n\
         \x20   try: held.append(s.accept()[0])\n\
         \x20   except socket.timeout: pass\n\
         print(len(held))\n",
        common::INTERNET_SERVER
    );
    let server = Command::new("ip")
        .args(["netns", "exec", &internet, "python3", "-c", &server])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let flood = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         end = time.time() + 8\n\
         while time.time() < end:\n\
         \x20   for port in range(1024, 31024): s.sendto(b'flood', ('{}', port))\n",
        common::INTERNET_SERVER
    );
    let flood = Command::new("ip")
        .args(["netns", "exec", &vma, "python3", "-c", &flood])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let connect = format!(
        "import socket\n\
         held = []\n\
         for i in range(1000):\n\
         \x20   c = socket.create_connection(('{}', 7000), timeout=5); held.append(c)\n\
         print(len(held))\n",
        common::INTERNET_SERVER
    );
    let (ok, opened, err) = common::python(&vmb, &connect);
    let flood_status = wait_child(flood);
    let accepted = String::from_utf8_lossy(&server.wait_with_output().unwrap().stdout)
        .trim()
        .to_string();
    assert!(ok, "b's connections: {err}");
    assert_eq!(opened.trim(), "1000", "b opened");
    assert_eq!(accepted, "1000", "the server accepted");
    assert!(flood_status, "the flood ran");
    let d = drops(&socket);
    assert!(
        count(&d, "tenant_session_limit") > 0,
        "a hit its share: {d}"
    );
    let a = common::call(
        &socket,
        serde_json::json!({ "op": "sessions", "tenant": "a", "limit": 0 }),
    );
    let a_sessions = a["matched"].as_u64().unwrap();
    assert!(
        a_sessions <= 2048,
        "a holds {a_sessions} sessions, over its share"
    );
    stop_xvrd(daemon);
}

fn wait_child(mut child: Child) -> bool {
    child.wait().map(|s| s.success()).unwrap_or(false)
}
