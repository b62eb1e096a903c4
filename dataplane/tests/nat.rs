//! Source NAT in memory: a TCP handshake out through SNAT and back, UDP
//! and ICMP echo, port preservation and collisions, expiry, the session
//! limit, and what is refused. Every frame that comes out is parsed back
//! with etherparse and its checksums recomputed independently.
mod common;

use common::*;
use etherparse::{IpNumber, PacketHeaders, TransportHeader};
use xvr_dataplane::conntrack::{self, State, TCP, UDP};
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::pipeline::owner::Workers;
use xvr_dataplane::table::{Action, Firewall, Rule, RuleSet, SourceNat, Tables, TablesBuilder};
use xvr_dataplane::{DropReason, Event, Pipeline, Verdict};
use xvr_testkit::headers;

const PUBLIC_IP: [u8; 4] = [203, 0, 113, 10];
const SERVER: [u8; 4] = [198, 19, 0, 10];
const VM: [u8; 4] = [10, 0, 0, 10];
const VM2: [u8; 4] = [10, 0, 0, 11];

/// Tenant A's internet traffic leaves from PUBLIC_IP, ports `ports`.
fn with_source_nat(b: &mut TablesBuilder, ports: (u16, u16)) {
    let snat = SourceNat {
        ip: PUBLIC_IP.into(),
        ports,
        filtering: Default::default(),
    };
    b.set_source_nat(TENANT_A, snat);
}

fn snat_tables() -> Tables {
    let mut b = builder();
    with_source_nat(&mut b, (1024, 65535));
    b.build()
}

fn send(p: &mut Pipeline, t: &Tables, port: u16, frame: &[u8]) -> (Verdict, Vec<u8>) {
    MemoryIo::new().run_one(p, t, port, frame)
}

/// Parses a frame, checks the IPv4 and transport checksums, and returns
/// (src, sport, dst, dport, ttl); ICMP echo gives its identifier as ports.
fn fields(frame: &[u8]) -> ([u8; 4], u16, [u8; 4], u16, u8) {
    let h = PacketHeaders::from_ethernet_slice(frame).unwrap();
    let Some(etherparse::NetHeaders::Ipv4(ip, _)) = h.net else {
        panic!("not IPv4")
    };
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 checksum"
    );
    let payload = h.payload.slice();
    let (sport, dport) = match h.transport.unwrap() {
        TransportHeader::Tcp(tcp) => {
            let want = tcp.calc_checksum_ipv4(&ip, payload).unwrap();
            assert_eq!(tcp.checksum, want, "TCP checksum");
            (tcp.source_port, tcp.destination_port)
        }
        TransportHeader::Udp(udp) => {
            let want = udp.calc_checksum_ipv4(&ip, payload).unwrap();
            assert_eq!(udp.checksum, want, "UDP checksum");
            (udp.source_port, udp.destination_port)
        }
        TransportHeader::Icmpv4(icmp) => {
            assert_eq!(
                icmp.checksum,
                icmp.icmp_type.calc_checksum(payload),
                "ICMP checksum"
            );
            let id = match icmp.icmp_type {
                etherparse::Icmpv4Type::EchoRequest(e) | etherparse::Icmpv4Type::EchoReply(e) => {
                    e.id
                }
                other => panic!("{other:?}"),
            };
            (id, id)
        }
        other => panic!("{other:?}"),
    };
    assert_ne!(ip.protocol, IpNumber::IPV6_ICMP);
    (ip.source, sport, ip.destination, dport, ip.time_to_live)
}

fn out_of_vm(src: [u8; 4]) -> xvr_testkit::Headers {
    let mac = if src == VM { VM_A10_MAC } else { VM_A11_MAC };
    headers(mac, A1_MAC, src, SERVER)
}

fn from_server() -> xvr_testkit::Headers {
    headers(INTERNET_GW_MAC, UPLINK_MAC, SERVER, PUBLIC_IP)
}

#[test]
fn a_tcp_handshake_goes_out_through_snat_and_back() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    let (verdict, out) = send(&mut p, &t, A1, &out_of_vm(VM).tcp_syn(40000, 80));
    assert_eq!(verdict, Verdict::Tx(UP));
    assert_eq!(&out[0..6], &INTERNET_GW_MAC);
    assert_eq!(&out[6..12], &UPLINK_MAC);
    assert_eq!(
        fields(&out),
        (PUBLIC_IP, 40000, SERVER, 80, 63),
        "port preserved"
    );

    let (verdict, back) = send(&mut p, &t, UP, &from_server().tcp_syn_ack(80, 40000));
    assert_eq!(verdict, Verdict::Tx(A1));
    assert_eq!(&back[0..6], &VM_A10_MAC);
    assert_eq!(fields(&back), (SERVER, 80, VM, 40000, 63));

    let (verdict, _) = send(&mut p, &t, A1, &out_of_vm(VM).tcp_ack(40000, 80, b"GET /"));
    assert_eq!(verdict, Verdict::Tx(UP));
    let s = p.conntrack.iter().next().unwrap();
    assert_eq!(s.state, State::Established);
    assert_eq!(p.stats.events_of(Event::SessionNew), 1);
    assert_eq!(p.stats.events_of(Event::Snat), 2);
    assert_eq!(p.stats.events_of(Event::Unsnat), 1);
}

#[test]
fn udp_and_ping_go_out_and_their_replies_come_back() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    let (_, out) = send(&mut p, &t, A1, &out_of_vm(VM).udp(5353, 53, b"query"));
    assert_eq!(fields(&out), (PUBLIC_IP, 5353, SERVER, 53, 63));
    let (verdict, back) = send(&mut p, &t, UP, &from_server().udp(53, 5353, b"answer"));
    assert_eq!(verdict, Verdict::Tx(A1));
    assert_eq!(fields(&back), (SERVER, 53, VM, 5353, 63));

    let (_, out) = send(&mut p, &t, A1, &out_of_vm(VM).ping(0x4242, 1, b"ping"));
    assert_eq!(fields(&out), (PUBLIC_IP, 0x4242, SERVER, 0x4242, 63));
    let (verdict, back) = send(&mut p, &t, UP, &from_server().pong(0x4242, 1, b"ping"));
    assert_eq!(verdict, Verdict::Tx(A1));
    assert_eq!(fields(&back), (SERVER, 0x4242, VM, 0x4242, 63));
}

#[test]
fn two_vms_with_the_same_port_get_different_public_ports() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    let (_, a) = send(&mut p, &t, A1, &out_of_vm(VM).udp(7000, 53, b"a"));
    let (_, b) = send(&mut p, &t, A3, &out_of_vm(VM2).udp(7000, 53, b"b"));
    let (pa, pb) = (fields(&a).1, fields(&b).1);
    assert_eq!(pa, 7000);
    assert_ne!(pb, 7000);
    let (verdict, back) = send(&mut p, &t, UP, &from_server().udp(53, pb, b"to b"));
    assert_eq!(verdict, Verdict::Tx(A3));
    assert_eq!(fields(&back).2, VM2);
}

#[test]
fn what_no_session_allows_is_dropped() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    // Unsolicited, to the public address.
    let (verdict, _) = send(&mut p, &t, UP, &from_server().tcp_syn(80, 40000));
    assert_eq!(verdict, Verdict::Drop(DropReason::NatNoSession));
    // Mid-stream TCP from inside opens nothing.
    let (verdict, _) = send(&mut p, &t, A1, &out_of_vm(VM).tcp_ack(40000, 80, b"x"));
    assert_eq!(verdict, Verdict::Drop(DropReason::NatNoSession));
    // A reply from another server port than the one contacted.
    send(&mut p, &t, A1, &out_of_vm(VM).udp(5353, 53, b"q"));
    let (verdict, _) = send(&mut p, &t, UP, &from_server().udp(54, 5353, b"a"));
    assert_eq!(verdict, Verdict::Drop(DropReason::NatNoSession));
    assert!(p.conntrack.len() == 1);
}

#[test]
fn an_expired_session_no_longer_lets_replies_in() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    send(&mut p, &t, A1, &out_of_vm(VM).udp(5353, 53, b"q"));
    p.now = 29;
    let (verdict, _) = send(&mut p, &t, UP, &from_server().udp(53, 5353, b"a"));
    assert_eq!(verdict, Verdict::Tx(A1), "a reply within 30 s");
    // Replied: 120 s from the reply.
    p.now = 29 + 121;
    let (verdict, _) = send(&mut p, &t, UP, &from_server().udp(53, 5353, b"late"));
    assert_eq!(verdict, Verdict::Drop(DropReason::NatNoSession));
    assert_eq!(p.stats.events_of(Event::SessionExpired), 1);
}

#[test]
fn a_full_session_table_drops_new_flows_only() {
    // The tenant may use the whole table (its default share is a quarter).
    let t = {
        let mut b = builder();
        with_source_nat(&mut b, (20000, 65535));
        let mut limits = xvr_dataplane::table::TenantLimits::default();
        limits.shares.sessions = Some(2);
        b.set_tenant_limits(TENANT_A, limits);
        b.build()
    };
    let mut p = Pipeline::with_conntrack(conntrack::Config {
        max_sessions: 2,
        ..Default::default()
    });
    for port in [6000, 6001] {
        let (verdict, _) = send(&mut p, &t, A1, &out_of_vm(VM).udp(port, 53, b"q"));
        assert_eq!(verdict, Verdict::Tx(UP));
    }
    let (verdict, _) = send(&mut p, &t, A1, &out_of_vm(VM).udp(6002, 53, b"q"));
    assert_eq!(verdict, Verdict::Drop(DropReason::ConntrackFull));
    let (verdict, _) = send(&mut p, &t, A1, &out_of_vm(VM).udp(6000, 53, b"again"));
    assert_eq!(verdict, Verdict::Tx(UP), "existing sessions keep working");
}

const STATIC_IP: [u8; 4] = [203, 0, 113, 20];

/// acme with source NAT, 10.0.0.11 (on A3) with static NAT 203.0.113.20,
/// and 203.0.113.10 tcp/8080 forwarded to 10.0.0.10:80.
fn dnat_tables() -> Tables {
    let mut b = builder();
    with_source_nat(&mut b, (20000, 65535));
    b.set_static_nat(TENANT_A, VM2.into(), STATIC_IP.into());
    let to = xvr_dataplane::table::Inside {
        tenant: TENANT_A,
        ip: VM.into(),
        port: 80,
    };
    b.add_port_forward(PUBLIC_IP.into(), 6, 8080, to);
    // Ingress is denied unless a rule allows: the forwarded port, and
    // everything to the static address.
    let allow = |dst: &str, proto, ports| Rule {
        src: "0.0.0.0/0".parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto,
        ports,
        action: Action::Allow,
    };
    let ingress = vec![
        allow("203.0.113.10/32", Some(6), (8080, 8080)),
        allow("203.0.113.20/32", None, (0, 65535)),
    ];
    b.set_firewall(
        TENANT_A,
        Firewall {
            ingress: RuleSet::new(ingress, Action::Deny),
            egress: RuleSet::new(Vec::new(), Action::Allow),
        },
    );
    b.build()
}

#[test]
fn a_port_forward_opens_a_session_to_the_vm_and_its_replies_go_back_out() {
    let t = dnat_tables();
    let mut p = Pipeline::new();
    let syn = from_server().tcp_syn(51000, 8080);
    let (verdict, inside) = send(&mut p, &t, UP, &syn);
    assert_eq!(verdict, Verdict::Tx(A1));
    assert_eq!(fields(&inside), (SERVER, 51000, VM, 80, 63));
    let syn_ack = out_of_vm(VM).tcp_syn_ack(80, 51000);
    let (verdict, out) = send(&mut p, &t, A1, &syn_ack);
    assert_eq!(verdict, Verdict::Tx(UP));
    assert_eq!(fields(&out), (PUBLIC_IP, 8080, SERVER, 51000, 63));
    let (verdict, _) = send(&mut p, &t, UP, &from_server().tcp_ack(51000, 8080, b"hi"));
    assert_eq!(verdict, Verdict::Tx(A1));
    assert_eq!(p.conntrack.iter().next().unwrap().state, State::Established);
    // Another port of the same address is not forwarded.
    let (verdict, _) = send(&mut p, &t, UP, &from_server().tcp_syn(51000, 8081));
    assert_eq!(verdict, Verdict::Drop(DropReason::NatNoSession));
}

#[test]
fn static_nat_maps_a_vm_one_to_one_both_ways() {
    let t = dnat_tables();
    let mut p = Pipeline::new();
    // Out: the VM's own public address, its port kept.
    let (verdict, out) = send(&mut p, &t, A3, &out_of_vm(VM2).udp(5353, 53, b"q"));
    assert_eq!(verdict, Verdict::Tx(UP));
    assert_eq!(fields(&out), (STATIC_IP, 5353, SERVER, 53, 63));
    // In: any port, and ping, reach the VM.
    let to_static = headers(INTERNET_GW_MAC, UPLINK_MAC, SERVER, STATIC_IP);
    let (verdict, inside) = send(&mut p, &t, UP, &to_static.tcp_syn(40000, 22));
    assert_eq!(verdict, Verdict::Tx(A3));
    assert_eq!(fields(&inside), (SERVER, 40000, VM2, 22, 63));
    let (verdict, inside) = send(&mut p, &t, UP, &to_static.ping(9, 1, b"hello"));
    assert_eq!(verdict, Verdict::Tx(A3));
    assert_eq!(fields(&inside), (SERVER, 9, VM2, 9, 63));
    let reply = headers(VM_A11_MAC, A3_MAC, VM2, SERVER).pong(9, 1, b"hello");
    let (verdict, out) = send(&mut p, &t, A3, &reply);
    assert_eq!(verdict, Verdict::Tx(UP));
    assert_eq!(fields(&out), (STATIC_IP, 9, SERVER, 9, 63));
    // The other VM still leaves through source NAT.
    let (_, out) = send(&mut p, &t, A1, &out_of_vm(VM).udp(5353, 53, b"q"));
    assert_eq!(fields(&out).0, PUBLIC_IP);
}

/// An ICMP error from `router` to the public address quoting the first
/// 28 bytes of `sent` (a frame that left through NAT), as a router on the
/// internet would send it.
fn error_about(sent: &[u8], router: [u8; 4], to: [u8; 4]) -> Vec<u8> {
    let quote = &sent[14..14 + 28];
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(INTERNET_GW_MAC, UPLINK_MAC)
        .ipv4(router, to, 64)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut out, quote)
        .unwrap();
    out
}

/// The outer destination of an ICMP error and the quoted (src, sport);
/// checks the ICMP and quoted IPv4 checksums.
fn quoted(frame: &[u8]) -> ([u8; 4], [u8; 4], u16) {
    let h = PacketHeaders::from_ethernet_slice(frame).unwrap();
    let Some(etherparse::NetHeaders::Ipv4(ip, _)) = h.net else {
        panic!("not IPv4")
    };
    let Some(TransportHeader::Icmpv4(icmp)) = h.transport else {
        panic!("not ICMP")
    };
    let payload = h.payload.slice();
    assert_eq!(
        icmp.checksum,
        icmp.icmp_type.calc_checksum(payload),
        "ICMP checksum"
    );
    let (inner, rest) = etherparse::Ipv4Header::from_slice(payload).unwrap();
    assert_eq!(
        inner.header_checksum,
        inner.calc_header_checksum(),
        "quoted IPv4 checksum"
    );
    (
        ip.destination,
        inner.source,
        u16::from_be_bytes([rest[0], rest[1]]),
    )
}

#[test]
fn an_icmp_error_about_a_translated_flow_reaches_the_vm_translated() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    let probe = headers(VM_A10_MAC, A1_MAC, VM, SERVER)
        .ttl(5)
        .udp(33434, 33435, b"probe");
    let (verdict, sent) = send(&mut p, &t, A1, &probe);
    assert_eq!(verdict, Verdict::Tx(UP));
    let error = error_about(&sent, [198, 19, 0, 1], PUBLIC_IP);
    let (verdict, back) = send(&mut p, &t, UP, &error);
    assert_eq!(verdict, Verdict::Tx(A1));
    assert_eq!(
        quoted(&back),
        (VM, VM, 33434),
        "(outer dst, quoted src, quoted sport)"
    );
    // An error quoting a flow nobody sent is dropped.
    let stray = headers(VM_A10_MAC, A1_MAC, VM, SERVER).udp(40404, 53, b"x");
    let mut stray = send(&mut Pipeline::new(), &t, A1, &stray).1;
    stray[14 + 12..14 + 16].copy_from_slice(&PUBLIC_IP);
    let (verdict, _) = send(
        &mut p,
        &t,
        UP,
        &error_about(&stray, [198, 19, 0, 1], PUBLIC_IP),
    );
    assert_eq!(verdict, Verdict::Drop(DropReason::NatNoSession));
}

#[test]
fn ingress_is_denied_unless_a_rule_allows_it() {
    let mut b = builder();
    b.set_static_nat(TENANT_A, VM2.into(), STATIC_IP.into());
    let t = b.build();
    let mut p = Pipeline::new();
    let to_static = headers(INTERNET_GW_MAC, UPLINK_MAC, SERVER, STATIC_IP);
    let (verdict, _) = send(&mut p, &t, UP, &to_static.tcp_syn(40000, 22));
    assert_eq!(verdict, Verdict::Drop(DropReason::FirewallIngressDenied));
    assert!(p.conntrack.is_empty());
}

#[test]
fn egress_rules_apply_in_order_to_the_first_packet_of_a_session() {
    let mut b = builder();
    with_source_nat(&mut b, (1024, 65535));
    let rule = |dst: &str, proto, ports, action| Rule {
        src: "10.0.0.0/16".parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto,
        ports,
        action,
    };
    // Port 53 to 198.19.0.10 allowed, the rest of 198.19.0.0/16 denied;
    // everything else allowed by default.
    let egress = vec![
        rule("198.19.0.10/32", Some(17), (53, 53), Action::Allow),
        rule("198.19.0.0/16", None, (0, 65535), Action::Deny),
    ];
    b.set_firewall(
        TENANT_A,
        Firewall {
            ingress: RuleSet::new(Vec::new(), Action::Deny),
            egress: RuleSet::new(egress, Action::Allow),
        },
    );
    let t = b.build();
    let mut p = Pipeline::new();
    let (verdict, _) = send(&mut p, &t, A1, &out_of_vm(VM).udp(5353, 53, b"q"));
    assert_eq!(verdict, Verdict::Tx(UP), "first rule allows");
    let (verdict, _) = send(&mut p, &t, A1, &out_of_vm(VM).udp(5353, 54, b"q"));
    assert_eq!(verdict, Verdict::Drop(DropReason::FirewallEgressDenied));
    let elsewhere = headers(VM_A10_MAC, A1_MAC, VM, [192, 0, 2, 1]).udp(5353, 54, b"q");
    let (verdict, _) = send(&mut p, &t, A1, &elsewhere);
    assert_eq!(verdict, Verdict::Tx(UP), "default allow");
    // Replies of the allowed session pass without any ingress rule.
    let (verdict, _) = send(&mut p, &t, UP, &from_server().udp(53, 5353, b"a"));
    assert_eq!(verdict, Verdict::Tx(A1));
}

#[test]
fn fragments_follow_their_first_fragment_through_nat_both_ways() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    let big = out_of_vm(VM).udp(5353, 53, &[7u8; 3000]);
    let mut sent = Vec::new();
    for f in fragments(&big, 1480, 77) {
        let (verdict, out) = send(&mut p, &t, A1, &f);
        assert_eq!(verdict, Verdict::Tx(UP));
        assert_eq!(&out[26..30], &PUBLIC_IP, "every fragment's source");
        assert!(checksum_ok(&out[14..34]), "fragment IPv4 checksum");
        sent.push(out);
    }
    // Reassembled, it is the datagram translated: ports and checksum.
    assert_eq!(
        fields(&reassemble(&sent)),
        (PUBLIC_IP, 5353, SERVER, 53, 63)
    );

    let answer = from_server().udp(53, 5353, &[9u8; 3000]);
    let mut back = Vec::new();
    for f in fragments(&answer, 1480, 99) {
        let (verdict, out) = send(&mut p, &t, UP, &f);
        assert_eq!(verdict, Verdict::Tx(A1));
        back.push(out);
    }
    assert_eq!(fields(&reassemble(&back)), (SERVER, 53, VM, 5353, 63));

    // A later fragment whose first never came.
    let stray = fragments(&from_server().udp(53, 5353, &[1u8; 3000]), 1480, 100);
    let (verdict, _) = send(&mut p, &t, UP, &stray[1]);
    assert_eq!(verdict, Verdict::Drop(DropReason::NatFragment));
}

#[test]
fn fragments_in_one_batch_with_their_first_all_go_through() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    let big = out_of_vm(VM).udp(5353, 53, &[7u8; 3000]);
    let frags = fragments(&big, 1480, 78);
    let mut verdicts = Vec::new();
    MemoryIo::new().run(
        &mut p,
        &t,
        frags.iter().map(|f| (A1, f.as_slice())),
        |_, v, _| verdicts.push(v),
    );
    assert_eq!(verdicts, vec![Verdict::Tx(UP); 3], "{:?}", p.stats);
}

#[test]
fn a_vm_reaches_a_forwarded_port_of_its_own_public_address() {
    let t = dnat_tables();
    let mut p = Pipeline::new();
    // VM2 (whose packets leave from its static address 203.0.113.20) to
    // 203.0.113.10:8080, which is forwarded to VM:80.
    let to_own = headers(VM_A11_MAC, A3_MAC, VM2, PUBLIC_IP).tcp_syn(41000, 8080);
    let (verdict, inside) = send(&mut p, &t, A3, &to_own);
    assert_eq!(verdict, Verdict::Tx(A1), "{:?}", p.stats);
    // The server sees the client's public address, so it answers through
    // xvr too.
    let (src, sport, dst, dport, _) = fields(&inside);
    assert_eq!((src, dst, dport), (STATIC_IP, VM, 80));
    let reply = headers(VM_A10_MAC, A1_MAC, VM, src).tcp_syn_ack(80, sport);
    let (verdict, back) = send(&mut p, &t, A1, &reply);
    assert_eq!(verdict, Verdict::Tx(A3), "{:?}", p.stats);
    let (src, sport, dst, dport, _) = fields(&back);
    assert_eq!((src, sport, dst, dport), (PUBLIC_IP, 8080, VM2, 41000));
    assert_eq!(p.stats.events_of(Event::Hairpin), 2);
}

#[test]
fn with_two_workers_each_flow_is_translated_by_its_owner_wherever_it_arrives() {
    let t = dnat_tables();
    let mut w = two_workers();
    let view = w[0].pipeline.workers.clone();
    let owner = usize::from(view.of_inside(TENANT_A, VM.into(), TCP, 40000));
    let other = 1 - owner;
    let block = Workers::all(2)[owner].port_block((20000, 65535)).unwrap();

    // Out: the SYN lands on the other worker, which hands it over; the
    // owner translates it once (TTL 63: routed once) from its own block.
    let sent = deliver(&mut w, &t, other, A1, &out_of_vm(VM).tcp_syn(40000, 80));
    assert_eq!(
        sent.len(),
        1,
        "{:?} {:?}",
        w[0].pipeline.stats,
        w[1].pipeline.stats
    );
    let (by, port, out) = &sent[0];
    assert_eq!((*by, *port), (owner, UP));
    assert_eq!(&out[0..6], &INTERNET_GW_MAC);
    let (src, public_port, dst, dport, ttl) = fields(out);
    assert_eq!((src, dst, dport, ttl), (PUBLIC_IP, SERVER, 80, 63));
    assert!(
        (block.0..=block.1).contains(&public_port),
        "{public_port} in {block:?}"
    );
    assert_eq!(w[other].pipeline.stats.events_of(Event::HandedOff), 1);
    assert_eq!(w[owner].counters.handed_in, 1);
    assert_eq!(w[other].pipeline.conntrack.len(), 0);

    // Back: the reply reaches the owner from either worker.
    for at in [other, owner] {
        let reply = from_server().tcp_syn_ack(80, public_port);
        let sent = deliver(&mut w, &t, at, UP, &reply);
        assert_eq!(sent.len(), 1, "reply at worker {at}");
        assert_eq!((sent[0].0, sent[0].1), (owner, A1));
        assert_eq!(fields(&sent[0].2), (SERVER, 80, VM, 40000, 63));
    }

    // A port forward opens its session on the owner of the VM's endpoint
    // (port 80), and the VM's reply, arriving anywhere, finds it.
    let owner_80 = usize::from(view.of_inside(TENANT_A, VM.into(), TCP, 80));
    let sent = deliver(
        &mut w,
        &t,
        1 - owner_80,
        UP,
        &from_server().tcp_syn(51000, 8080),
    );
    assert_eq!((sent[0].0, sent[0].1), (owner_80, A1));
    // An ICMP error the VM sends about it belongs to the endpoint it
    // quotes as destination, wherever it arrives.
    let unreachable = port_unreachable((VM_A10_MAC, A1_MAC), (VM, SERVER), &sent[0].2[14..]);
    let error = deliver(&mut w, &t, 1 - owner_80, A1, &unreachable);
    assert_eq!(error.len(), 1, "{:?}", w[1 - owner_80].pipeline.stats);
    assert_eq!((error[0].0, error[0].1), (owner_80, UP));
    assert_eq!(&error[0].2[26..30], &PUBLIC_IP);
    assert_eq!(quoted(&error[0].2), (SERVER, SERVER, 51000));
    let sent = deliver(
        &mut w,
        &t,
        1 - owner_80,
        A1,
        &out_of_vm(VM).tcp_syn_ack(80, 51000),
    );
    assert_eq!((sent[0].0, sent[0].1), (owner_80, UP));
    assert_eq!(fields(&sent[0].2), (PUBLIC_IP, 8080, SERVER, 51000, 63));

    // Fragments of a reply: the first at the owner, the rest at the
    // other worker, which finds their owner in the shared table.
    let owner = usize::from(view.of_inside(TENANT_A, VM.into(), UDP, 5353));
    let other = 1 - owner;
    let out = deliver(&mut w, &t, other, A1, &out_of_vm(VM).udp(5353, 53, b"q"));
    let (_, udp_port, ..) = fields(&out[0].2);
    let answer = from_server().udp(53, udp_port, &[9u8; 3000]);
    let frags = fragments(&answer, 1480, 4242);
    let mut back = deliver(&mut w, &t, owner, UP, &frags[0]);
    for f in &frags[1..] {
        back.extend(deliver(&mut w, &t, other, UP, f));
    }
    assert_eq!(back.len(), 3, "{:?}", w[other].pipeline.stats);
    assert!(back.iter().all(|(by, port, _)| (*by, *port) == (owner, A1)));
    let bytes: Vec<Vec<u8>> = back.into_iter().map(|(_, _, b)| b).collect();
    assert_eq!(fields(&reassemble(&bytes)), (SERVER, 53, VM, 5353, 63));
    // Each session once, on its owner: the TCP flow, the port forward's
    // and the UDP one.
    let sessions = |w: &[xvr_dataplane::worker::Worker<MemoryIo>]| {
        w.iter().map(|w| w.pipeline.conntrack.len()).sum::<usize>()
    };
    assert_eq!(sessions(&w), 3);
}

#[test]
fn with_two_workers_one_vms_flows_spread_and_its_fragments_find_their_owner() {
    let t = snat_tables();
    let mut w = two_workers();
    // 64 flows of one VM arriving at worker 0: both workers translate
    // some (each endpoint has one owner, a VM has many).
    assert_flows_spread(&mut w, &t, A1, |sport| out_of_vm(VM).udp(sport, 53, b"q"));

    // A fragmented datagram of an endpoint the other worker owns, its
    // fragments in one batch at worker 0: the first is handed over and
    // noted, so the later ones follow it.
    let view = w[0].pipeline.workers.clone();
    let sport = (5000..)
        .find(|&p| view.of_inside(TENANT_A, VM.into(), UDP, p) == 1)
        .unwrap();
    let frags = fragments(&out_of_vm(VM).udp(sport, 53, &[7u8; 3000]), 1480, 79);
    let out = deliver_batch(&mut w, &t, 0, A1, &frags);
    assert_eq!(out.len(), 3, "{:?}", w[0].pipeline.stats);
    assert!(out.iter().all(|(by, port, _)| (*by, *port) == (1, UP)));
    let out: Vec<_> = out.into_iter().map(|(_, _, b)| b).collect();
    let (src, public_port, dst, dport, _) = fields(&reassemble(&out));
    assert_eq!((src, dst, dport), (PUBLIC_IP, SERVER, 53));

    // The answer's fragments, in one batch at worker 0, likewise.
    let answer = from_server().udp(53, public_port, &[9u8; 3000]);
    let back = deliver_batch(&mut w, &t, 0, UP, &fragments(&answer, 1480, 80));
    assert_eq!(back.len(), 3, "{:?}", w[0].pipeline.stats);
    assert!(back.iter().all(|(by, port, _)| (*by, *port) == (1, A1)));
    let back: Vec<_> = back.into_iter().map(|(_, _, b)| b).collect();
    assert_eq!(fields(&reassemble(&back)), (SERVER, 53, VM, sport, 63));
}

/// A hostile VM spraying new flows reaches its tenant's share of each
/// worker's sessions, and no more: its flows spread over both workers,
/// and another tenant's still open on both.
#[test]
fn with_two_workers_a_flooding_tenant_holds_its_share_of_each_and_no_more() {
    use xvr_dataplane::table::NextHop;
    let mut b = builder();
    with_source_nat(&mut b, (1024, 65535));
    b.add_route(TENANT_B, "0.0.0.0/0".parse().unwrap(), NextHop::Internet);
    with_public_ip(&mut b, TENANT_B, [203, 0, 113, 30]);
    let t = b.build();
    // 400 sessions a worker: each tenant may hold a quarter, 100.
    let config = conntrack::Config {
        max_sessions: 400,
        ..Default::default()
    };
    let mut w = two_workers_with(|| Pipeline::with_conntrack(config));
    let flood: Vec<Vec<u8>> = (0..1000)
        .map(|i| out_of_vm(VM).udp(20000 + i, 53, b"x"))
        .collect();
    let mut out = 0;
    for batch in flood.chunks(64) {
        out += deliver_batch(&mut w, &t, 0, A1, batch).len();
    }
    assert_eq!(out, 200, "{:?}", w[0].pipeline.stats);
    for w in &w {
        assert_eq!(w.pipeline.conntrack.sessions_of(TENANT_A), 100);
    }
    let limited: u64 = w
        .iter()
        .map(|w| w.pipeline.stats.drops_of(DropReason::TenantSessionLimit))
        .sum();
    assert_eq!(limited, 800);

    // Tenant b's VM, at the same worker, opens flows on both.
    let vm_b = headers(VM_B10_MAC, B1_MAC, VM, SERVER);
    for sport in 40000..40016 {
        let sent = deliver(&mut w, &t, 0, B1, &vm_b.udp(sport, 53, b"b"));
        assert_eq!(sent.len(), 1, "{sport}: {:?}", w[0].pipeline.stats);
        assert_eq!(&sent[0].2[26..30], &[203, 0, 113, 30]);
    }
    for w in &w {
        assert!(w.pipeline.conntrack.sessions_of(TENANT_B) > 0);
    }
}

#[test]
fn established_packets_take_the_fast_path_with_the_slow_paths_result() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    let syn = out_of_vm(VM).tcp_syn(40000, 80);
    let syn_ack = from_server().tcp_syn_ack(80, 40000);
    let data = out_of_vm(VM).tcp_ack(40000, 80, b"GET / HTTP/1.1");
    // The first packet takes the slow path, which marks the session.
    assert_eq!(send(&mut p, &t, A1, &syn).0, Verdict::Tx(UP));
    assert_eq!(send(&mut p, &t, UP, &syn_ack).0, Verdict::Tx(A1));
    assert_eq!(p.stats.events_of(Event::NatShortcut), 0);
    let (verdict, fast_out) = send(&mut p, &t, A1, &data);
    assert_eq!(verdict, Verdict::Tx(UP));
    assert_eq!(p.stats.events_of(Event::NatShortcut), 1);
    assert_eq!(p.stats.events_of(Event::Routed), 3);
    // Byte for byte what the slow path makes of it: with other tables
    // (another generation) for each packet, nothing is ever cached.
    let mut reference = Pipeline::new();
    send(&mut reference, &snat_tables(), A1, &syn);
    let (_, slow_out) = send(&mut reference, &snat_tables(), A1, &data);
    assert_eq!(reference.stats.events_of(Event::NatShortcut), 0);
    assert_eq!(fast_out, slow_out);
    assert_eq!(fields(&fast_out), (PUBLIC_IP, 40000, SERVER, 80, 63));

    // What varies per packet goes the slow way: TTL 1 gets its ICMP error
    // (back to the VM), fragments their own handling.
    let ttl1 = out_of_vm(VM).ttl(1).tcp_ack(40000, 80, b"x");
    assert_eq!(send(&mut p, &t, A1, &ttl1).0, Verdict::Tx(A1));
    assert_eq!(p.stats.events_of(Event::IcmpErrorSent), 1);
    let big = out_of_vm(VM).tcp_ack(40000, 80, &[1u8; 2000]);
    for f in fragments(&big, 1480, 9) {
        assert_eq!(send(&mut p, &t, A1, &f).0, Verdict::Tx(UP));
    }
    assert_eq!(p.stats.events_of(Event::NatShortcut), 1);
    // A FIN on the fast path still moves the session's state.
    let fin = out_of_vm(VM).tcp_fin(40000, 80);
    assert_eq!(send(&mut p, &t, A1, &fin).0, Verdict::Tx(UP));
    assert_eq!(p.stats.events_of(Event::NatShortcut), 2);
    assert_eq!(p.conntrack.iter().next().unwrap().state, State::FinWait);

    // New tables (a new generation): the slow path decides again first.
    let t2 = snat_tables();
    send(&mut p, &t2, A1, &data);
    assert_eq!(p.stats.events_of(Event::NatShortcut), 2);
    send(&mut p, &t2, A1, &data);
    assert_eq!(p.stats.events_of(Event::NatShortcut), 3);
}

#[test]
fn a_ping_flow_is_one_session_through_the_fast_path() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    for seq in 1..=3 {
        let (verdict, _) = send(&mut p, &t, A1, &out_of_vm(VM).ping(0x4242, seq, b"ping"));
        assert_eq!(verdict, Verdict::Tx(UP));
        let (verdict, _) = send(&mut p, &t, UP, &from_server().pong(0x4242, seq, b"ping"));
        assert_eq!(verdict, Verdict::Tx(A1));
    }
    let (listed, matched) = p.conntrack.select(
        &xvr_dataplane::conntrack::SessionFilter::default(),
        10,
        false,
    );
    assert_eq!(matched, 1, "{listed:?}");
    assert_eq!(p.conntrack.len(), 1);
}

#[test]
fn a_new_flows_packets_in_one_batch_open_one_session() {
    let t = snat_tables();
    let mut p = Pipeline::new();
    let burst: Vec<Vec<u8>> = (0..5)
        .map(|i| out_of_vm(VM).udp(5353, 53, &[i; 8]))
        .collect();
    let mut verdicts = Vec::new();
    MemoryIo::new().run(
        &mut p,
        &t,
        burst.iter().map(|f| (A1, f.as_slice())),
        |_, v, _| verdicts.push(v),
    );
    assert_eq!(verdicts, vec![Verdict::Tx(UP); 5]);
    assert_eq!(p.conntrack.len(), 1, "one flow, one session");
    assert_eq!(p.stats.events_of(Event::SessionNew), 1);
}

/// A worker already on a newer commit hands its owner a frame of a tenant
/// that the owner's tables do not hold yet: the owner drops it as
/// `stale_tables` (not as some other check that happened to run first),
/// and once on the same commit translates the flow.
#[test]
fn a_frame_of_a_tenant_its_owner_does_not_know_yet_is_dropped_by_name() {
    use xvr_dataplane::table::{NextHop, Port, PortRole, Tenant};
    const VNI_C: u32 = 1003;
    const C1_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 0x01];
    const VM_C10_MAC: [u8; 6] = [0x02, 0x0c, 0, 0, 0, 0x10];
    let old = snat_tables();
    let mut b = builder();
    with_source_nat(&mut b, (1024, 65535));
    let c = b.add_tenant(Tenant::new("c", VNI_C, Tenant::default_router_mac(VNI_C)));
    let c1 = b.add_port(Port {
        name: "c1".into(),
        mac: mac(C1_MAC),
        role: PortRole::Vm {
            tenant: c,
            gateway: "10.0.0.1/24".parse().unwrap(),
        },
    });
    b.add_local_host(c, VM.into(), mac(VM_C10_MAC), c1);
    b.add_route(c, "0.0.0.0/0".parse().unwrap(), NextHop::Internet);
    with_public_ip(&mut b, c, [203, 0, 113, 30]);
    let new = b.build();

    let mut w = two_workers();
    let owner = usize::from(w[0].pipeline.workers.of_inside(c, VM.into(), TCP, 40000));
    let other = 1 - owner;
    let syn = headers(VM_C10_MAC, C1_MAC, VM, SERVER).tcp_syn(40000, 80);
    let run = |w: &mut [xvr_dataplane::worker::Worker<MemoryIo>], owner_tables: &Tables| {
        w[other].io.push(c1, &syn);
        while w[other].poll(&new) + w[owner].poll(owner_tables) > 0 {}
        (w[other].io.sent.len(), w[owner].io.sent.drain(..).count())
    };
    assert_eq!(run(&mut w, &old), (0, 0));
    let stats = &w[owner].pipeline.stats;
    assert_eq!(w[other].pipeline.stats.events_of(Event::HandedOff), 1);
    let drops: Vec<_> = stats.nonzero_drops().collect();
    assert_eq!(stats.drops_of(DropReason::StaleTables), 1, "{drops:?}");
    assert_eq!(stats.drops_of(DropReason::WorkerPanic), 0);
    // Once the owner is on the same commit, the flow goes out.
    assert_eq!(run(&mut w, &new), (0, 1));
}

/// Source NAT with `filtering`, its ingress firewall letting UDP in (it
/// judges flows that filtering lets open, as it judges port forwards').
fn filtering_tables(filtering: xvr_dataplane::table::Filtering) -> Tables {
    let mut b = builder();
    let snat = SourceNat {
        ip: PUBLIC_IP.into(),
        ports: (1024, 65535),
        filtering,
    };
    b.set_source_nat(TENANT_A, snat);
    let udp_in = Rule {
        src: "0.0.0.0/0".parse().unwrap(),
        dst: "0.0.0.0/0".parse().unwrap(),
        proto: Some(17),
        ports: (0, 65535),
        action: Action::Allow,
    };
    b.set_firewall(
        TENANT_A,
        Firewall {
            ingress: RuleSet::new(vec![udp_in], Action::Deny),
            egress: RuleSet::new(Vec::new(), Action::Allow),
        },
    );
    b.build()
}

#[test]
fn filtering_is_the_tenants_choice_as_rfc_4787_describes() {
    use xvr_dataplane::table::Filtering::*;
    const OTHER: [u8; 4] = [198, 19, 0, 99];
    let to_mapping = |from: [u8; 4], sport: u16, port: u16| {
        headers(INTERNET_GW_MAC, UPLINK_MAC, from, PUBLIC_IP).udp(sport, port, b"hi")
    };
    // (filtering, from the server's other port, from another address)
    let cases = [
        (EndpointIndependent, true, true),
        (AddressDependent, true, false),
        (AddressAndPortDependent, false, false),
    ];
    for (filtering, other_port, other_address) in cases {
        let t = filtering_tables(filtering);
        let mut p = Pipeline::new();
        let (_, out) = send(&mut p, &t, A1, &out_of_vm(VM).udp(5353, 53, b"q"));
        let (_, port, _, _, _) = fields(&out);
        for (from, sport, admitted, what) in [
            (SERVER, 53, true, "the reply"),
            (SERVER, 9999, other_port, "the server's other port"),
            (OTHER, 53, other_address, "another address"),
        ] {
            let (verdict, back) = send(&mut p, &t, UP, &to_mapping(from, sport, port));
            if admitted {
                assert_eq!(verdict, Verdict::Tx(A1), "{filtering:?}: {what}");
                let (src, sport_in, dst, dport, _) = fields(&back);
                assert_eq!((src, sport_in, dst, dport), (from, sport, VM, 5353));
            } else {
                let reason = match filtering {
                    AddressAndPortDependent => DropReason::NatNoSession,
                    _ => DropReason::NatFiltered,
                };
                assert_eq!(verdict, Verdict::Drop(reason), "{filtering:?}: {what}");
            }
        }
        // What filtering let in is a session like any: the VM answers it
        // from its mapping.
        if other_address {
            let (verdict, out) = send(
                &mut p,
                &t,
                A1,
                &headers(VM_A10_MAC, A1_MAC, VM, OTHER).udp(5353, 53, b"a"),
            );
            assert_eq!(verdict, Verdict::Tx(UP));
            assert_eq!(fields(&out).1, port, "the same public port (REQ-1)");
        }
    }
}

#[test]
fn a_mapping_opened_from_outside_frees_its_port_with_its_last_session() {
    let t = filtering_tables(xvr_dataplane::table::Filtering::EndpointIndependent);
    let mut p = Pipeline::new();
    let (_, out) = send(&mut p, &t, A1, &out_of_vm(VM).udp(5353, 53, b"q"));
    let (_, port, _, _, _) = fields(&out);
    let poke = headers(INTERNET_GW_MAC, UPLINK_MAC, [198, 19, 0, 99], PUBLIC_IP).udp(7, port, b"x");
    assert_eq!(send(&mut p, &t, UP, &poke).0, Verdict::Tx(A1));
    assert_eq!(p.conntrack.len(), 2);
    // Both sessions expire; the mapping goes with the last one, so the
    // port no longer leads anywhere.
    p.now = 10 * 3600;
    let tick = headers(VM_A110_MAC, A2_MAC, [10, 0, 1, 10], SERVER).udp(1, 2, b"t");
    send(&mut p, &t, A2, &tick);
    assert_eq!(p.conntrack.len(), 1, "only the tick's session");
    let (verdict, _) = send(&mut p, &t, UP, &poke);
    assert_eq!(verdict, Verdict::Drop(DropReason::NatFiltered));
}

#[test]
fn a_vm_behind_a_vtep_goes_out_through_this_routers_nat_and_back() {
    let router = xvr_dataplane::table::Tenant::default_router_mac(VNI_A).0;
    let far_out = headers(VM_A20_MAC, router, [10, 0, 0, 20], SERVER);
    let query = vxlan(REMOTE_VTEP, VNI_A, &far_out.udp(5353, 53, b"query"));

    // Without NAT here the remote VM has no way out through this router.
    let (verdict, _, _) = run(&tables(), UP, &query);
    assert_eq!(verdict, Verdict::Drop(DropReason::OverlayNotLocal));

    let t = snat_tables();
    let mut p = Pipeline::new();
    let (verdict, out) = send(&mut p, &t, UP, &query);
    assert_eq!(verdict, Verdict::Tx(UP));
    assert_eq!(&out[0..12], &[INTERNET_GW_MAC, UPLINK_MAC].concat());
    assert_eq!(fields(&out), (PUBLIC_IP, 5353, SERVER, 53, 63));

    // The answer is translated back and encapsulated toward the VTEP.
    let (verdict, back) = send(&mut p, &t, UP, &from_server().udp(53, 5353, b"answer"));
    assert_eq!(verdict, Verdict::Tx(UP));
    let inner = back.get(50..).unwrap();
    assert_eq!(&back[30..34], &REMOTE_VTEP.octets(), "to the VM's VTEP");
    assert_eq!(&inner[0..12], &[VM_A20_MAC, router].concat());
    assert_eq!(fields(inner), (SERVER, 53, [10, 0, 0, 20], 5353, 63));

    // What a remote router routed to the internet had its own way out.
    let routed = headers(router, router, [10, 0, 0, 20], SERVER).udp(5354, 53, b"x");
    let (verdict, _) = send(&mut p, &t, UP, &vxlan(REMOTE_VTEP, VNI_A, &routed));
    assert_eq!(verdict, Verdict::Drop(DropReason::OverlayNotLocal));
}
