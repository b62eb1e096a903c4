//! Packets built with etherparse go through the real pipeline; what comes
//! out is parsed back with etherparse and every field and checksum checked.
mod common;

use common::*;
use etherparse::{
    EtherType, Ethernet2Header, Icmpv4Header, Icmpv4Type, IpNumber, Ipv4Header, TcpHeader,
    UdpHeader,
};
use xvr_dataplane::{DropReason, Event, Verdict};

/// Parses Ethernet + IPv4 and checks the IPv4 header checksum.
fn eth_ipv4(frame: &[u8]) -> (Ethernet2Header, Ipv4Header, &[u8]) {
    let (eth, rest) = Ethernet2Header::from_slice(frame).unwrap();
    assert_eq!(eth.ether_type, EtherType::IPV4);
    let (ip, payload) = Ipv4Header::from_slice(rest).unwrap();
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 header checksum"
    );
    assert!(checksum_ok(&rest[..ip.header_len()]));
    let payload_len = usize::from(ip.total_len) - ip.header_len();
    (eth, ip, &payload[..payload_len])
}

fn udp_ok(ip: &Ipv4Header, segment: &[u8]) -> (UdpHeader, Vec<u8>) {
    let (udp, payload) = UdpHeader::from_slice(segment).unwrap();
    assert_eq!(usize::from(udp.length), segment.len());
    if udp.checksum != 0 {
        assert_eq!(
            udp.checksum,
            udp.calc_checksum_ipv4(ip, payload).unwrap(),
            "UDP checksum"
        );
    }
    (udp, payload.to_vec())
}

/// Splits a VXLAN frame into its outer headers, VNI and inner frame, and
/// checks the outer headers as a receiving VTEP would.
fn vxlan_parts(frame: &[u8]) -> (Ethernet2Header, Ipv4Header, UdpHeader, u32, Vec<u8>) {
    let (eth, ip, segment) = eth_ipv4(frame);
    assert_eq!(ip.protocol, IpNumber::UDP);
    assert!(ip.dont_fragment, "outer DF");
    assert_eq!(ip.time_to_live, 64);
    assert_eq!(ip.header_len(), 20);
    let (udp, payload) = udp_ok(&ip, segment);
    assert_eq!(udp.destination_port, 4789);
    assert!(
        udp.source_port >= 49152,
        "source port {} outside 49152..",
        udp.source_port
    );
    assert_eq!(udp.checksum, 0, "outer UDP checksum is sent as zero");
    assert_eq!(payload[0], 0x08, "VXLAN I flag");
    assert_eq!(&payload[1..4], &[0, 0, 0]);
    assert_eq!(payload[7], 0);
    let vni = u32::from_be_bytes([0, payload[4], payload[5], payload[6]]);
    (eth, ip, udp, vni, payload[8..].to_vec())
}

#[test]
fn bridged_east_west_is_forwarded_unchanged() {
    let t = tables();
    let frame = udp(
        VM_A10_MAC,
        VM_A11_MAC,
        "10.0.0.10",
        "10.0.0.11",
        64,
        b"hello",
    );
    let (verdict, out, p) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(A3));
    assert_eq!(out, frame);
    assert_eq!(p.stats.events_of(Event::Bridged), 1);
}

#[test]
fn routed_east_west_rewrites_macs_and_ttl() {
    let t = tables();
    let payload = b"routed between two subnets of tenant A";
    let frame = udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.1.10", 64, payload);
    let (verdict, out, p) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(A2));
    let (eth, ip, segment) = eth_ipv4(&out);
    assert_eq!((eth.source, eth.destination), (A2_MAC, VM_A110_MAC));
    assert_eq!(ip.time_to_live, 63);
    assert_eq!(
        (ip.source, ip.destination),
        ([10, 0, 0, 10], [10, 0, 1, 10])
    );
    let (udp, data) = udp_ok(&ip, segment);
    assert_ne!(udp.checksum, 0);
    assert_eq!((udp.source_port, udp.destination_port), (40000, 5001));
    assert_eq!(data, payload);
    assert_eq!(p.stats.events_of(Event::Routed), 1);
}

#[test]
fn routed_tcp_keeps_a_valid_checksum() {
    let t = tables();
    let frame = tcp(
        VM_A10_MAC,
        A1_MAC,
        "10.0.0.10",
        "10.0.1.10",
        9,
        b"GET / HTTP/1.1\r\n\r\n",
    );
    let (verdict, out, _) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(A2));
    let (_, ip, segment) = eth_ipv4(&out);
    assert_eq!(ip.time_to_live, 8);
    let (tcp, payload) = TcpHeader::from_slice(segment).unwrap();
    assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&ip, payload).unwrap());
}

#[test]
fn bridged_overlay_egress_encapsulates_for_the_remote_vtep() {
    let t = tables();
    let frame = udp(
        VM_A10_MAC,
        VM_A20_MAC,
        "10.0.0.10",
        "10.0.0.20",
        64,
        b"over the overlay",
    );
    let (verdict, out, p) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(UP));
    assert_eq!(out.len(), frame.len() + 50);
    let (eth, ip, udp, vni, inner) = vxlan_parts(&out);
    assert_eq!((eth.source, eth.destination), (UPLINK_MAC, VTEP_MAC));
    assert_eq!(
        (ip.source, ip.destination),
        (LOCAL_VTEP.octets(), REMOTE_VTEP.octets())
    );
    assert_eq!(usize::from(ip.total_len), frame.len() + 36);
    assert_eq!(usize::from(udp.length), frame.len() + 16);
    assert_eq!(vni, VNI_A);
    assert_eq!(inner, frame, "the inner frame is carried unchanged");
    assert_eq!(p.stats.events_of(Event::Encap), 1);
}

#[test]
fn outer_source_port_follows_the_inner_flow() {
    let t = tables();
    let port_of = |sport: u16| {
        let mut frame = udp(VM_A10_MAC, VM_A20_MAC, "10.0.0.10", "10.0.0.20", 64, b"x");
        frame[34..36].copy_from_slice(&sport.to_be_bytes());
        // etherparse computed the UDP checksum for port 40000; it does not
        // matter here, the outer header is what we look at.
        let (_, out, _) = run(&t, A1, &frame);
        vxlan_parts(&out).2.source_port
    };
    assert_eq!(port_of(1000), port_of(1000));
    let distinct: std::collections::HashSet<u16> = (0..64).map(|p| port_of(1000 + p)).collect();
    assert!(
        distinct.len() > 32,
        "64 flows share {} source ports",
        distinct.len()
    );
}

#[test]
fn routed_overlay_egress_uses_the_router_mac() {
    let t = tables();
    let frame = udp(
        VM_A110_MAC,
        A2_MAC,
        "10.0.1.10",
        "10.0.0.20",
        64,
        b"routed then encapsulated",
    );
    let (verdict, out, _) = run(&t, A2, &frame);
    assert_eq!(verdict, Verdict::Tx(UP));
    let (_, _, _, vni, inner) = vxlan_parts(&out);
    assert_eq!(vni, VNI_A);
    let (eth, ip, segment) = eth_ipv4(&inner);
    assert_eq!(
        eth.source,
        [0x02, 0x78, 0x76, 0x00, 0x03, 0xe9],
        "default router MAC of VNI 1001"
    );
    assert_eq!(eth.destination, VM_A20_MAC);
    assert_eq!(ip.time_to_live, 63);
    udp_ok(&ip, segment);
}

#[test]
fn overlay_ingress_decapsulates_to_the_local_vm() {
    let t = tables();
    let inner = udp(
        VM_A20_MAC,
        VM_A10_MAC,
        "10.0.0.20",
        "10.0.0.10",
        64,
        b"from far away",
    );
    let (verdict, out, p) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &inner));
    assert_eq!(verdict, Verdict::Tx(A1));
    assert_eq!(out, inner);
    assert_eq!(p.stats.events_of(Event::Decap), 1);
}

#[test]
fn overlay_ingress_keeps_tenants_apart() {
    let t = tables();
    // Tenant A's VM MAC inside tenant B's VNI: unknown in B.
    let inner = udp(VM_B20_MAC, VM_A10_MAC, "10.0.0.20", "10.0.0.10", 64, b"x");
    let (verdict, _, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_B, &inner));
    assert_eq!(verdict, Verdict::Drop(DropReason::L2UnknownUnicast));
    // The same addresses in B reach B's VM, on B's port.
    let inner = udp(VM_B20_MAC, VM_B10_MAC, "10.0.0.20", "10.0.0.10", 64, b"x");
    let (verdict, out, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_B, &inner));
    assert_eq!(verdict, Verdict::Tx(B1));
    assert_eq!(out, inner);
}

#[test]
fn overlay_frames_are_not_reflected_into_the_overlay() {
    let t = tables();
    // The remote VM to a MAC behind the overlay (its own): not sent back.
    let inner = udp(VM_A20_MAC, VM_A20_MAC, "10.0.0.20", "10.0.0.20", 64, b"x");
    let (verdict, _, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &inner));
    assert_eq!(verdict, Verdict::Drop(DropReason::SplitHorizon));
    // A local VM's MAC and address, claimed by the overlay: never its own.
    let inner = udp(VM_A10_MAC, VM_A20_MAC, "10.0.0.10", "10.0.0.20", 64, b"x");
    let (verdict, _, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &inner));
    assert_eq!(verdict, Verdict::Drop(DropReason::VxlanInnerSource));
    let router = xvr_dataplane::table::Tenant::default_router_mac(VNI_A).0;
    // Routed by the remote router toward a remote VM, or the internet.
    for dst in ["10.0.0.20", "198.19.0.10"] {
        let inner = udp(router, router, "10.0.0.20", dst, 64, b"x");
        let (verdict, _, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &inner));
        assert_eq!(verdict, Verdict::Drop(DropReason::OverlayNotLocal), "{dst}");
    }
}

#[test]
fn uplink_traffic_that_is_not_ours_goes_to_the_kernel() {
    let t = tables();
    let to_host = udp(
        VTEP_MAC,
        UPLINK_MAC,
        "198.18.0.2",
        "198.18.0.1",
        64,
        b"ssh?",
    );
    let (verdict, out, p) = run(&t, UP, &to_host);
    assert_eq!(verdict, Verdict::Kernel);
    assert_eq!(out, to_host);
    assert_eq!(p.stats.events_of(Event::ToKernel), 1);
    let mut other_port = vxlan(REMOTE_VTEP, VNI_A, b"");
    other_port[36..38].copy_from_slice(&4790u16.to_be_bytes());
    assert_eq!(run(&t, UP, &other_port).0, Verdict::Kernel);
    let arp = arp_request(VTEP_MAC, "198.18.0.2", "198.18.0.1");
    assert_eq!(run(&t, UP, &arp).0, Verdict::Kernel);
}

fn arp_reply_fields(out: &[u8]) -> (Ethernet2Header, etherparse::ArpEthIpv4Packet) {
    let (eth, rest) = Ethernet2Header::from_slice(out).unwrap();
    assert_eq!(eth.ether_type, EtherType::ARP);
    let arp = etherparse::ArpPacket::from_slice(rest)
        .unwrap()
        .try_eth_ipv4()
        .unwrap();
    assert_eq!(arp.operation, etherparse::ArpOperation::REPLY);
    (eth, arp)
}

#[test]
fn arp_for_the_gateway_is_answered_with_the_port_mac() {
    let t = tables();
    let (verdict, out, p) = run(&t, A1, &arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.1"));
    assert_eq!(verdict, Verdict::Tx(A1));
    let (eth, arp) = arp_reply_fields(&out);
    assert_eq!((eth.source, eth.destination), (A1_MAC, VM_A10_MAC));
    assert_eq!((arp.sender_mac, arp.sender_ipv4), (A1_MAC, [10, 0, 0, 1]));
    assert_eq!(
        (arp.target_mac, arp.target_ipv4),
        (VM_A10_MAC, [10, 0, 0, 10])
    );
    assert_eq!(p.stats.events_of(Event::ArpReply), 1);
    // The same gateway address on tenant B's port answers with B's port MAC.
    let (_, out, _) = run(&t, B1, &arp_request(VM_B10_MAC, "10.0.0.10", "10.0.0.1"));
    assert_eq!(arp_reply_fields(&out).1.sender_mac, B1_MAC);
}

#[test]
fn arp_for_a_known_vm_is_answered_with_its_mac() {
    let t = tables();
    let (verdict, out, _) = run(&t, A1, &arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.20"));
    assert_eq!(verdict, Verdict::Tx(A1));
    let (_, arp) = arp_reply_fields(&out);
    assert_eq!(
        (arp.sender_mac, arp.sender_ipv4),
        (VM_A20_MAC, [10, 0, 0, 20])
    );
    // Tenant B asking for the same address gets B's VM.
    let (_, out, _) = run(&t, B1, &arp_request(VM_B10_MAC, "10.0.0.10", "10.0.0.20"));
    assert_eq!(arp_reply_fields(&out).1.sender_mac, VM_B20_MAC);
}

#[test]
fn arp_for_unknown_addresses_is_dropped() {
    let t = tables();
    let (verdict, _, _) = run(&t, A1, &arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.99"));
    assert_eq!(verdict, Verdict::Drop(DropReason::ArpNotOurs));
    let gratuitous = arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.10");
    assert_eq!(
        run(&t, A1, &gratuitous).0,
        Verdict::Drop(DropReason::ArpNotOurs)
    );
}

#[test]
fn arp_from_the_overlay_is_answered_through_the_overlay() {
    let t = tables();
    let request = arp_request(VM_A20_MAC, "10.0.0.20", "10.0.0.10");
    let (verdict, out, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &request));
    assert_eq!(verdict, Verdict::Tx(UP));
    let (_, ip, _, vni, inner) = vxlan_parts(&out);
    assert_eq!(ip.destination, REMOTE_VTEP.octets());
    assert_eq!(vni, VNI_A);
    let (eth, arp) = arp_reply_fields(&inner);
    assert_eq!(eth.destination, VM_A20_MAC);
    assert_eq!(
        (arp.sender_mac, arp.sender_ipv4),
        (VM_A10_MAC, [10, 0, 0, 10])
    );
    // Remote VMs are not answered for toward the overlay.
    let request = arp_request(VM_A20_MAC, "10.0.0.20", "10.0.0.20");
    let (verdict, _, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &request));
    assert_eq!(verdict, Verdict::Drop(DropReason::ArpNotOurs));
    // The gateway of the asker's tier is the tenant's router (for a VM
    // behind a VTEP with no router of its own); another tier's is not.
    let request = arp_request(VM_A20_MAC, "10.0.0.20", "10.0.0.1");
    let (verdict, out, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &request));
    assert_eq!(verdict, Verdict::Tx(UP));
    let router = xvr_dataplane::table::Tenant::default_router_mac(VNI_A).0;
    let (_, arp) = arp_reply_fields(&vxlan_parts(&out).4);
    assert_eq!((arp.sender_mac, arp.sender_ipv4), (router, [10, 0, 0, 1]));
    let request = arp_request(VM_A20_MAC, "10.0.0.20", "10.0.1.1");
    let (verdict, _, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &request));
    assert_eq!(verdict, Verdict::Drop(DropReason::ArpNotOurs));
}

#[test]
fn echo_to_the_gateway_is_answered() {
    let t = tables();
    let frame = ping(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.0.1", 3);
    let (verdict, out, p) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(A1));
    let (eth, ip, message) = eth_ipv4(&out);
    assert_eq!((eth.source, eth.destination), (A1_MAC, VM_A10_MAC));
    assert_eq!((ip.source, ip.destination), ([10, 0, 0, 1], [10, 0, 0, 10]));
    assert_eq!(ip.time_to_live, 64);
    assert!(checksum_ok(message), "ICMP checksum");
    let (icmp, payload) = Icmpv4Header::from_slice(message).unwrap();
    assert_eq!(
        icmp.icmp_type,
        Icmpv4Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x1234, seq: 7 })
    );
    assert_eq!(payload, b"xvr-ping-payload");
    assert_eq!(p.stats.events_of(Event::IcmpEchoReply), 1);
}

#[test]
fn echo_to_a_gateway_from_the_overlay_is_answered_through_the_overlay() {
    let t = tables();
    let tenant_router = [0x02, 0x78, 0x76, 0x00, 0x03, 0xe9];
    let inner = ping(VM_A20_MAC, tenant_router, "10.0.0.20", "10.0.0.1", 64);
    let (verdict, out, _) = run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &inner));
    assert_eq!(verdict, Verdict::Tx(UP));
    let (_, _, _, vni, inner) = vxlan_parts(&out);
    assert_eq!(vni, VNI_A);
    let (_, ip, message) = eth_ipv4(&inner);
    assert_eq!(ip.destination, [10, 0, 0, 20]);
    assert!(checksum_ok(message));
}

/// Checks an ICMP error sent back to 10.0.0.10 on A1 and returns its type
/// and the embedded original.
fn icmp_error_to_a10(out: &[u8], original: &[u8]) -> Icmpv4Type {
    let (eth, ip, message) = eth_ipv4(out);
    assert_eq!((eth.source, eth.destination), (A1_MAC, VM_A10_MAC));
    assert_eq!((ip.source, ip.destination), ([10, 0, 0, 1], [10, 0, 0, 10]));
    assert_eq!(ip.protocol, IpNumber::ICMP);
    assert!(checksum_ok(message), "ICMP checksum");
    let (icmp, embedded) = Icmpv4Header::from_slice(message).unwrap();
    assert_eq!(
        embedded,
        &original[14..],
        "the error carries the original IP packet"
    );
    icmp.icmp_type
}

#[test]
fn ttl_one_gets_time_exceeded() {
    let t = tables();
    let frame = udp(
        VM_A10_MAC,
        A1_MAC,
        "10.0.0.10",
        "10.0.1.10",
        1,
        b"traceroute probe",
    );
    let (verdict, out, p) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(A1));
    let kind = icmp_error_to_a10(&out, &frame);
    assert!(
        matches!(
            kind,
            Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit)
        ),
        "{kind:?}"
    );
    assert_eq!(p.stats.drops_of(DropReason::TtlExceeded), 1);
    assert_eq!(p.stats.events_of(Event::IcmpErrorSent), 1);
}

#[test]
fn no_route_gets_net_unreachable() {
    let t = tables();
    // Tenant B has no default route.
    let frame = udp(VM_B10_MAC, B1_MAC, "10.0.0.10", "198.19.0.1", 64, b"x");
    let (verdict, out, p) = run(&t, B1, &frame);
    assert_eq!(verdict, Verdict::Tx(B1));
    let (_, ip, message) = eth_ipv4(&out);
    assert_eq!(ip.source, [10, 0, 0, 1]);
    let (icmp, _) = Icmpv4Header::from_slice(message).unwrap();
    assert!(
        matches!(
            icmp.icmp_type,
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Network)
        ),
        "{:?}",
        icmp.icmp_type
    );
    assert_eq!(p.stats.drops_of(DropReason::NoRoute), 1);
}

#[test]
fn unknown_host_gets_host_unreachable() {
    let t = tables();
    let frame = udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.1.99", 64, b"x");
    let (verdict, out, p) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(A1));
    let kind = icmp_error_to_a10(&out, &frame);
    assert!(
        matches!(
            kind,
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Host)
        ),
        "{kind:?}"
    );
    assert_eq!(p.stats.drops_of(DropReason::HostUnknown), 1);
}

#[test]
fn no_icmp_error_about_an_icmp_error() {
    let t = tables();
    let (_, error, _) = run(
        &t,
        A1,
        &udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.1.99", 64, b"x"),
    );
    // Send that error (re-addressed) to an unknown host: dropped silently.
    let mut again = error.clone();
    again[0..6].copy_from_slice(&A1_MAC);
    again[6..12].copy_from_slice(&VM_A10_MAC);
    let (eth, mut ip, message) = eth_ipv4(&error);
    let _ = eth;
    ip.source = [10, 0, 0, 10];
    ip.destination = [10, 0, 1, 99];
    ip.header_checksum = ip.calc_header_checksum();
    let mut frame = again[..14].to_vec();
    frame.extend_from_slice(&ip.to_bytes());
    frame.extend_from_slice(message);
    let (verdict, _, p) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Drop(DropReason::HostUnknown));
    assert_eq!(p.stats.events_of(Event::IcmpErrorSent), 0);
}

#[test]
fn blackhole_internet_and_via_routes() {
    let t = tables();
    let to = |dst: &str| run(&t, A1, &udp(VM_A10_MAC, A1_MAC, "10.0.0.10", dst, 64, b"x"));
    assert_eq!(to("10.9.1.1").0, Verdict::Drop(DropReason::Blackhole));
    let (verdict, out, _) = to("198.19.0.1");
    assert_eq!(verdict, Verdict::Tx(UP));
    let (eth, ip, _) = eth_ipv4(&out);
    assert_eq!((eth.source, eth.destination), (UPLINK_MAC, INTERNET_GW_MAC));
    assert_eq!(ip.time_to_live, 63);
    let (verdict, out, _) = to("10.5.3.4");
    assert_eq!(verdict, Verdict::Tx(A1), "via 10.0.0.10, a VM on A1");
    let (eth, ip, _) = eth_ipv4(&out);
    assert_eq!(eth.destination, VM_A10_MAC);
    assert_eq!(ip.destination, [10, 5, 3, 4]);
}

#[test]
fn malformed_frames_are_named_drops() {
    let t = tables();
    let good_inner = udp(VM_A20_MAC, VM_A10_MAC, "10.0.0.20", "10.0.0.10", 64, b"x");
    let good = vxlan(REMOTE_VTEP, VNI_A, &good_inner);
    let routed = udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.1.10", 64, b"x");
    let patched = |base: &[u8], f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = base.to_vec();
        f(&mut v);
        v
    };
    let cases: Vec<(&str, xvr_dataplane::table::PortId, Vec<u8>, DropReason)> = vec![
        ("runt", A1, vec![0u8; 10], DropReason::EthTruncated),
        (
            "runt on uplink",
            UP,
            good[..12].to_vec(),
            DropReason::EthTruncated,
        ),
        (
            "truncated IPv4",
            UP,
            good[..30].to_vec(),
            DropReason::Ipv4Truncated,
        ),
        (
            "bad IHL",
            UP,
            patched(&good, &|v| {
                v[14] = 0x44;
                fix_ipv4_checksum(v)
            }),
            DropReason::Ipv4BadIhl,
        ),
        (
            "IHL past the end",
            A1,
            patched(&routed, &|v| {
                v[14] = 0x4f;
                v.truncate(50);
            }),
            DropReason::Ipv4Truncated,
        ),
        (
            "bad version",
            A1,
            patched(&routed, &|v| v[14] = 0x65),
            DropReason::Ipv4BadVersion,
        ),
        (
            "total length too long",
            UP,
            patched(&good, &|v| {
                v[16..18].copy_from_slice(&2000u16.to_be_bytes());
                fix_ipv4_checksum(v)
            }),
            DropReason::Ipv4BadLength,
        ),
        (
            "total length too short",
            A1,
            patched(&routed, &|v| {
                v[16..18].copy_from_slice(&10u16.to_be_bytes());
                fix_ipv4_checksum(v)
            }),
            DropReason::Ipv4BadLength,
        ),
        (
            "bad IPv4 checksum",
            UP,
            patched(&good, &|v| v[24] ^= 0xff),
            DropReason::Ipv4BadChecksum,
        ),
        (
            "bad IPv4 checksum routed",
            A1,
            patched(&routed, &|v| v[24] ^= 0xff),
            DropReason::Ipv4BadChecksum,
        ),
        (
            "UDP length past IP",
            UP,
            patched(&good, &|v| {
                v[38..40].copy_from_slice(&3000u16.to_be_bytes())
            }),
            DropReason::UdpBadLength,
        ),
        (
            "VXLAN truncated",
            UP,
            vxlan(REMOTE_VTEP, VNI_A, &[])[..48]
                .to_vec()
                .into_iter()
                .collect::<Vec<_>>()
                .pipe_udp_len(),
            DropReason::VxlanTruncated,
        ),
        (
            "VXLAN without I flag",
            UP,
            patched(&good, &|v| v[42] = 0),
            DropReason::VxlanBadFlags,
        ),
        (
            "unknown VNI",
            UP,
            vxlan(REMOTE_VTEP, 4242, &good_inner),
            DropReason::VxlanUnknownVni,
        ),
        (
            "unknown VTEP",
            UP,
            vxlan("198.18.0.77".parse().unwrap(), VNI_A, &good_inner),
            DropReason::VxlanUnknownVtep,
        ),
        (
            "inner runt",
            UP,
            vxlan(REMOTE_VTEP, VNI_A, &good_inner[..8]),
            DropReason::EthTruncated,
        ),
        (
            "fragmented VXLAN",
            UP,
            patched(&good, &|v| {
                v[20] |= 0x20;
                fix_ipv4_checksum(v)
            }),
            DropReason::VxlanFragmented,
        ),
        (
            "ARP truncated",
            A1,
            arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.1")[..30].to_vec(),
            DropReason::ArpMalformed,
        ),
        (
            "VLAN tag",
            A1,
            patched(&routed, &|v| v[12..14].copy_from_slice(&[0x81, 0x00])),
            DropReason::VlanUnsupported,
        ),
        (
            "IPv6 to the router",
            A1,
            patched(&routed, &|v| v[12..14].copy_from_slice(&[0x86, 0xdd])),
            DropReason::EthertypeUnsupported,
        ),
        (
            "broadcast IPv4",
            A1,
            patched(&routed, &|v| v[0..6].fill(0xff)),
            DropReason::L2Broadcast,
        ),
        (
            "unknown unicast",
            A1,
            patched(&routed, &|v| v[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9])),
            DropReason::L2UnknownUnicast,
        ),
        ("unknown port", 99, routed.clone(), DropReason::PortUnknown),
        (
            "TCP to the gateway",
            A1,
            tcp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.0.1", 64, b""),
            DropReason::GatewayProtoUnsupported,
        ),
        (
            "echo with a bad checksum",
            A1,
            patched(
                &ping(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.0.1", 64),
                &|v| v[36] ^= 1,
            ),
            DropReason::IcmpMalformed,
        ),
    ];
    let mut total = xvr_dataplane::Stats::default();
    for (name, port, frame, reason) in &cases {
        let (verdict, _, p) = run(&t, *port, frame);
        assert_eq!(verdict, Verdict::Drop(*reason), "{name}");
        assert_eq!(p.stats.drops_of(*reason), 1, "{name}");
        assert_eq!(p.stats.total_drops(), 1, "{name}");
        total.add(&p.stats);
    }
    assert_eq!(total.total_drops(), cases.len() as u64);
}

/// Sets a short VXLAN frame's IP and UDP lengths to what it holds, so only
/// the VXLAN header is short.
trait PipeUdpLen {
    fn pipe_udp_len(self) -> Vec<u8>;
}

impl PipeUdpLen for Vec<u8> {
    fn pipe_udp_len(mut self) -> Vec<u8> {
        let ip_len = (self.len() - 14) as u16;
        self[16..18].copy_from_slice(&ip_len.to_be_bytes());
        self[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
        fix_ipv4_checksum(&mut self);
        self
    }
}

/// A UDP packet whose IPv4 total length is `ip_len`.
fn sized(dst_mac: [u8; 6], dst: &str, ip_len: usize) -> Vec<u8> {
    udp(
        VM_A10_MAC,
        dst_mac,
        "10.0.0.10",
        dst,
        64,
        &vec![0x42; ip_len - 28],
    )
}

#[test]
fn packets_that_fit_the_underlay_are_encapsulated() {
    let t = tables();
    let frame = sized(VM_A20_MAC, "10.0.0.20", 1500);
    let (verdict, out, _) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(UP));
    let (_, ip, _, _, inner) = vxlan_parts(&out);
    assert_eq!(usize::from(ip.total_len), usize::from(UPLINK_MTU));
    assert_eq!(inner, frame);
}

/// Checks a "fragmentation needed" error sent back to 10.0.0.10 on A1.
fn frag_needed(out: &[u8], src_mac: [u8; 6], src: [u8; 4], original: &[u8]) {
    let (eth, ip, message) = eth_ipv4(out);
    assert_eq!((eth.source, eth.destination), (src_mac, VM_A10_MAC));
    assert_eq!((ip.source, ip.destination), (src, [10, 0, 0, 10]));
    assert!(
        usize::from(ip.total_len) <= 576,
        "RFC 1812: at most 576 bytes"
    );
    assert!(checksum_ok(message), "ICMP checksum");
    assert_eq!(
        (message[0], message[1]),
        (3, 4),
        "destination unreachable, fragmentation needed"
    );
    assert_eq!(
        u16::from_be_bytes([message[6], message[7]]),
        UPLINK_MTU - 50,
        "next-hop MTU"
    );
    assert_eq!(&message[8..], &original[14..14 + message.len() - 8]);
}

#[test]
fn too_big_with_df_gets_fragmentation_needed() {
    let t = tables();
    // Bridged: the error comes from the destination, as Linux's VXLAN device sends it.
    let frame = sized(VM_A20_MAC, "10.0.0.20", 1501);
    let (verdict, out, p) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(A1));
    frag_needed(&out, VM_A20_MAC, [10, 0, 0, 20], &frame);
    assert_eq!(p.stats.drops_of(DropReason::MtuExceeded), 1);
    assert_eq!(p.stats.events_of(Event::IcmpErrorSent), 1);
    // Routed (sent to the router's MAC): from the gateway.
    let frame = sized(A1_MAC, "10.0.0.20", 1501);
    let (verdict, out, _) = run(&t, A1, &frame);
    assert_eq!(verdict, Verdict::Tx(A1));
    frag_needed(&out, A1_MAC, [10, 0, 0, 1], &frame);
}

/// Without DF it is cut before encapsulation, bridged or routed (the
/// pieces themselves are checked in `fragment.rs`).
#[test]
fn too_big_without_df_is_cut_bridged_or_routed() {
    let t = tables();
    for dst_mac in [VM_A20_MAC, A1_MAC] {
        let mut frame = sized(dst_mac, "10.0.0.20", 1501);
        frame[20] &= !0x40;
        fix_ipv4_checksum(&mut frame);
        let (verdict, _, p) = run(&t, A1, &frame);
        assert_eq!(verdict, Verdict::Tx(UP));
        assert_eq!(p.stats.events_of(Event::Fragmented), 1);
        assert_eq!(p.stats.events_of(Event::IcmpErrorSent), 0);
    }
}
