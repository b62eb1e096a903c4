//! A hostile VM against the pipeline, in memory: each forgery is dropped
//! under its own name, and the VMs that tell the truth still get through.
//! Tenant A's tiers are 10.0.0.0/24 (ports a1 and a3) and 10.0.1.0/24
//! (a2); the remote VTEP hosts one VM of each tenant.
mod common;

use common::*;
use xvr_dataplane::table::{Tables, TablesBuilder};
use xvr_dataplane::{DropReason, Event, Verdict};
use xvr_testkit::arp_reply;

const THIRD_VTEP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 3);
const VM_B30_MAC: [u8; 6] = [0x02, 0x0b, 0, 0, 0, 0x30];

fn hostile_tables(more: impl FnOnce(&mut TablesBuilder)) -> Tables {
    let mut b = builder();
    // A VTEP that hosts only a VM of tenant B.
    let third = b.add_vtep(THIRD_VTEP, mac(VTEP_MAC));
    b.add_remote_host(TENANT_B, ip("10.0.0.30"), mac(VM_B30_MAC), third);
    more(&mut b);
    b.build()
}

fn dropped(t: &Tables, port: u16, frame: &[u8]) -> DropReason {
    match run(t, port, frame).0 {
        Verdict::Drop(reason) => reason,
        other => panic!("not dropped: {other:?}"),
    }
}

#[test]
fn a_vm_port_takes_only_its_vms_macs_and_addresses() {
    let t = hostile_tables(|_| {});
    let stranger = [0x02, 0x66, 0, 0, 0, 0x66];
    let forged_mac = udp(stranger, A1_MAC, "10.0.0.10", "10.0.1.10", 64, b"x");
    assert_eq!(dropped(&t, A1, &forged_mac), DropReason::PortSecurityMac);
    // Another local VM's MAC, sent from the wrong port.
    let other_port = udp(VM_A11_MAC, A1_MAC, "10.0.0.11", "10.0.1.10", 64, b"x");
    assert_eq!(dropped(&t, A1, &other_port), DropReason::PortSecurityMac);
    let forged_ip = udp(VM_A10_MAC, A1_MAC, "10.0.0.99", "10.0.1.10", 64, b"x");
    assert_eq!(dropped(&t, A1, &forged_ip), DropReason::PortSecurityIp);
    // A source inside the db tier, to get past its ACL as a same-tier pair.
    let db = udp(VM_A10_MAC, A1_MAC, "10.0.1.11", "10.0.1.10", 64, b"x");
    assert_eq!(dropped(&t, A1, &db), DropReason::PortSecurityIp);
    // A forged source toward the internet (source NAT would hide it).
    let out = udp(VM_A10_MAC, A1_MAC, "192.0.2.7", "198.19.0.10", 64, b"x");
    assert_eq!(dropped(&t, A1, &out), DropReason::PortSecurityIp);
    // The truth passes.
    let honest = udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.1.10", 64, b"x");
    assert_eq!(run(&t, A1, &honest).0, Verdict::Tx(A2));
}

#[test]
fn arp_must_name_the_vm_that_sends_it() {
    let t = hostile_tables(|_| {});
    // Poisoning a neighbour: "the gateway is at my MAC".
    let poison = arp_reply(
        VM_A10_MAC,
        VM_A11_MAC,
        VM_A10_MAC,
        ip("10.0.0.1").octets(),
        ip("10.0.0.11").octets(),
    );
    assert_eq!(dropped(&t, A1, &poison), DropReason::PortSecurityArp);
    // Poisoning the gateway: "10.0.0.11 is at my MAC".
    let request = arp_request(VM_A10_MAC, "10.0.0.11", "10.0.0.1");
    assert_eq!(dropped(&t, A1, &request), DropReason::PortSecurityArp);
    // A sender MAC other than the frame's.
    let mut lie = arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.1");
    lie[22..28].copy_from_slice(&VM_A11_MAC);
    assert_eq!(dropped(&t, A1, &lie), DropReason::PortSecurityArp);
    // An honest reply to a neighbour is bridged; an address probe passes.
    let honest = arp_reply(
        VM_A10_MAC,
        VM_A11_MAC,
        VM_A10_MAC,
        ip("10.0.0.10").octets(),
        ip("10.0.0.11").octets(),
    );
    assert_eq!(run(&t, A1, &honest).0, Verdict::Tx(A3));
    let probe = arp_request(VM_A10_MAC, "0.0.0.0", "10.0.0.11");
    assert_eq!(run(&t, A1, &probe).0, Verdict::Tx(A1));
}

/// Within a batch the checks run once per source and are remembered: an
/// ARP lie right behind the truth from the same VM is still caught.
#[test]
fn a_remembered_source_does_not_let_the_next_lie_in() {
    use xvr_dataplane::io::memory::MemoryIo;
    use xvr_dataplane::Pipeline;
    let t = hostile_tables(|_| {});
    let honest = arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.1");
    let other_ip = arp_request(VM_A10_MAC, "10.0.0.11", "10.0.0.1");
    let mut other_mac = honest.clone();
    other_mac[22..28].copy_from_slice(&VM_A11_MAC);
    let truncated = &honest[..32];
    let forged_ip = udp(VM_A10_MAC, A1_MAC, "10.0.0.99", "10.0.1.10", 64, b"x");
    let batch: Vec<(u16, &[u8])> = vec![
        (A1, &honest),
        (A1, &other_ip),
        (A1, &honest),
        (A1, &other_mac),
        (A1, truncated),
        (A1, &forged_ip),
    ];
    let mut p = Pipeline::new();
    let mut verdicts = Vec::new();
    MemoryIo::new().run(&mut p, &t, batch, |_, v, _| verdicts.push(v));
    assert_eq!(
        verdicts,
        [
            Verdict::Tx(A1),
            Verdict::Drop(DropReason::PortSecurityArp),
            Verdict::Tx(A1),
            Verdict::Drop(DropReason::PortSecurityArp),
            Verdict::Drop(DropReason::ArpMalformed),
            Verdict::Drop(DropReason::PortSecurityIp),
        ]
    );
}

#[test]
fn allowed_addresses_and_ports_without_port_security() {
    let t = hostile_tables(|b| {
        b.allow_addresses(TENANT_A, "10.0.0.50/32".parse().unwrap(), mac(VM_A10_MAC));
        b.disable_port_security(B1);
    });
    let vip = udp(VM_A10_MAC, A1_MAC, "10.0.0.50", "10.0.1.10", 64, b"x");
    assert_eq!(run(&t, A1, &vip).0, Verdict::Tx(A2));
    // The address is A10's to use, not A11's.
    let not_yours = udp(VM_A11_MAC, A3_MAC, "10.0.0.50", "10.0.1.10", 64, b"x");
    assert_eq!(dropped(&t, A3, &not_yours), DropReason::PortSecurityIp);
    let gratuitous = arp_request(VM_A10_MAC, "10.0.0.50", "10.0.0.50");
    assert_ne!(
        run(&t, A1, &gratuitous).0,
        Verdict::Drop(DropReason::PortSecurityArp)
    );
    // B1 opted out: any source, still only inside tenant B.
    let any = udp(
        [0x02, 0x66, 0, 0, 0, 1],
        B1_MAC,
        "10.0.0.99",
        "10.0.0.20",
        64,
        b"x",
    );
    let (verdict, _, p) = run(&t, B1, &any);
    assert_eq!(verdict, Verdict::Tx(UP));
    assert_eq!(p.stats.events_of(Event::Encap), 1);
}

#[test]
fn tiers_are_separate_l2_domains() {
    let t = hostile_tables(|_| {});
    // Straight to the db VM's MAC, around the gateway and its ACL.
    let around = udp(VM_A10_MAC, VM_A110_MAC, "10.0.0.10", "10.0.1.10", 64, b"x");
    assert_eq!(dropped(&t, A1, &around), DropReason::L2CrossTier);
    // The same tier still bridges, locally and across the overlay.
    let same = udp(VM_A10_MAC, VM_A11_MAC, "10.0.0.10", "10.0.0.11", 64, b"x");
    assert_eq!(run(&t, A1, &same).0, Verdict::Tx(A3));
    let remote = udp(VM_A10_MAC, VM_A20_MAC, "10.0.0.10", "10.0.0.20", 64, b"x");
    assert_eq!(run(&t, A1, &remote).0, Verdict::Tx(UP));
    // The ARP responder answers for the asker's tier and gateway only.
    let other_tier = arp_request(VM_A10_MAC, "10.0.0.10", "10.0.1.10");
    assert_eq!(dropped(&t, A1, &other_tier), DropReason::ArpNotOurs);
    let own_tier = arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.11");
    assert_eq!(run(&t, A1, &own_tier).0, Verdict::Tx(A1));
    let gateway = arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.1");
    assert_eq!(run(&t, A1, &gateway).0, Verdict::Tx(A1));
    // From the overlay: the remote web VM cannot bridge into the db tier.
    let inner = udp(VM_A20_MAC, VM_A110_MAC, "10.0.0.20", "10.0.1.10", 64, b"x");
    let overlay = vxlan(REMOTE_VTEP, VNI_A, &inner);
    assert_eq!(dropped(&t, UP, &overlay), DropReason::L2CrossTier);
}

#[test]
fn vxlan_is_taken_only_from_members_and_their_vms() {
    let t = hostile_tables(|_| {});
    let inner = udp(VM_A20_MAC, VM_A10_MAC, "10.0.0.20", "10.0.0.10", 64, b"x");
    let stranger = std::net::Ipv4Addr::new(198, 18, 0, 99);
    assert_eq!(
        dropped(&t, UP, &vxlan(stranger, VNI_A, &inner)),
        DropReason::VxlanUnknownVtep
    );
    // A known VTEP, in a VNI it hosts no VM of.
    let from_b_host = udp(VM_B30_MAC, VM_A10_MAC, "10.0.0.30", "10.0.0.10", 64, b"x");
    assert_eq!(
        dropped(&t, UP, &vxlan(THIRD_VTEP, VNI_A, &from_b_host)),
        DropReason::VxlanNotMember
    );
    // A member VTEP lying about its VM: another address, another MAC,
    // tenant B's VM in A's VNI, and ARP naming someone else.
    let lies = [
        udp(VM_A20_MAC, VM_A10_MAC, "10.0.0.21", "10.0.0.10", 64, b"x"),
        udp(VM_A20_MAC, VM_A10_MAC, "10.0.1.10", "10.0.0.10", 64, b"x"),
        udp(
            [0x02, 0x66, 0, 0, 0, 1],
            VM_A10_MAC,
            "10.0.0.20",
            "10.0.0.10",
            64,
            b"x",
        ),
        udp(VM_B20_MAC, VM_A10_MAC, "10.0.0.20", "10.0.0.10", 64, b"x"),
        arp_request(VM_A20_MAC, "10.0.0.1", "10.0.0.10"),
    ];
    for lie in lies {
        assert_eq!(
            dropped(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &lie)),
            DropReason::VxlanInnerSource
        );
    }
    assert_eq!(
        run(&t, UP, &vxlan(REMOTE_VTEP, VNI_A, &inner)).0,
        Verdict::Tx(A1)
    );
}

/// Answers the router sends for a tenant (ICMP errors, ARP replies) are
/// limited per tenant and second; another tenant's still go out.
#[test]
fn each_tenant_gets_its_share_of_icmp_errors_and_arp_replies() {
    use xvr_dataplane::io::memory::MemoryIo;
    use xvr_dataplane::table::TenantLimits;
    use xvr_dataplane::Pipeline;
    let t = hostile_tables(|b| {
        let limits = TenantLimits {
            icmp_errors_per_second: Some(5),
            arp_replies_per_second: Some(3),
            ..TenantLimits::default()
        };
        b.set_tenant_limits(TENANT_A, limits);
    });
    let expired = udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.1.10", 1, b"ttl");
    let arp = arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.1");
    let mut frames: Vec<(u16, &[u8])> = vec![(A1, &expired); 8];
    frames.extend([(A1, arp.as_slice()); 6]);
    // Tenant B provokes an error in the same second.
    let b_expired = udp(VM_B10_MAC, B1_MAC, "10.0.0.10", "10.0.0.20", 1, b"ttl");
    frames.push((B1, &b_expired));
    let mut p = Pipeline::new();
    let mut verdicts = Vec::new();
    MemoryIo::new().run(&mut p, &t, frames, |_, v, _| verdicts.push(v));
    let sent = |range: std::ops::Range<usize>| {
        verdicts[range]
            .iter()
            .filter(|v| matches!(v, Verdict::Tx(_)))
            .count()
    };
    assert_eq!(sent(0..8), 5, "{verdicts:?}");
    assert_eq!(sent(8..14), 3, "{verdicts:?}");
    assert_eq!(verdicts[14], Verdict::Tx(B1), "B's own error still goes");
    assert_eq!(p.stats.drops_of(DropReason::IcmpErrorRateLimited), 3);
    assert_eq!(p.stats.drops_of(DropReason::ArpReplyRateLimited), 3);
    // The next second, A gets its share again.
    p.now = 1;
    let (verdict, _) = MemoryIo::new().run_one(&mut p, &t, A1, &expired);
    assert_eq!(verdict, Verdict::Tx(A1));
}

/// The outer UDP checksum of VXLAN is checked when a VTEP sends one, and
/// outer fragments are named for what they are.
#[test]
fn vxlan_outer_checksums_are_verified_and_fragments_named() {
    let t = hostile_tables(|_| {});
    let inner = udp(VM_A20_MAC, VM_A10_MAC, "10.0.0.20", "10.0.0.10", 64, b"x");
    let outer = xvr_testkit::headers(
        VTEP_MAC,
        UPLINK_MAC,
        REMOTE_VTEP.octets(),
        LOCAL_VTEP.octets(),
    );
    let summed = outer.vxlan_checksummed(50000, VNI_A, 8, &inner);
    assert_ne!(summed[40..42], [0, 0]);
    assert_eq!(run(&t, UP, &summed).0, Verdict::Tx(A1));
    let mut wrong = summed.clone();
    wrong[41] ^= 0x5a;
    assert_eq!(dropped(&t, UP, &wrong), DropReason::UdpBadChecksum);
    // A first fragment (more fragments, offset 0), cut where a kernel
    // VTEP would cut it: its UDP length covers the whole datagram.
    let mut first = outer.vxlan(50000, VNI_A, 8, &inner);
    first[20] = 0x20;
    first.truncate(first.len() - 8);
    let ip_len = (first.len() - 14) as u16;
    first[16..18].copy_from_slice(&ip_len.to_be_bytes());
    fix_ipv4_checksum(&mut first);
    assert_eq!(dropped(&t, UP, &first), DropReason::VxlanFragmented);
}

/// A tenant's internet route does not lead to the host's own networks
/// (the underlay): only a route that names such a prefix does.
#[test]
fn the_internet_route_does_not_reach_the_underlay() {
    let underlay: ipnet::Ipv4Net = "198.18.0.0/24".parse().unwrap();
    let host: ipnet::Ipv4Net = "198.18.0.1/32".parse().unwrap();
    let t = hostile_tables(|b| {
        let named = "198.18.0.128/25".parse().unwrap();
        b.add_route(TENANT_A, named, xvr_dataplane::table::NextHop::Internet);
    })
    .with_protected(vec![underlay, host]);
    for dst in ["198.18.0.5", "198.18.0.1"] {
        let probe = udp(VM_A10_MAC, A1_MAC, "10.0.0.10", dst, 64, b"x");
        assert_eq!(dropped(&t, A1, &probe), DropReason::UnderlayGuard, "{dst}");
    }
    // Named by a route of its own: that prefix goes out.
    let named = udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "198.18.0.200", 64, b"x");
    assert_eq!(run(&t, A1, &named).0, Verdict::Tx(UP));
    let internet = udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "198.19.0.10", 64, b"x");
    assert_eq!(run(&t, A1, &internet).0, Verdict::Tx(UP));
}

/// A VM behind a VTEP that goes out through this router's source NAT
/// gets no further than a local VM: not to the underlay, and not with a
/// forged source.
#[test]
fn a_vm_behind_a_vtep_reaches_the_internet_but_not_the_underlay() {
    let underlay: ipnet::Ipv4Net = "198.18.0.0/24".parse().unwrap();
    let t = hostile_tables(|b| {
        let snat = xvr_dataplane::table::SourceNat {
            ip: [203, 0, 113, 10].into(),
            ports: (1024, 65535),
            filtering: Default::default(),
        };
        b.set_source_nat(TENANT_A, snat);
    })
    .with_protected(vec![underlay]);
    let router = xvr_dataplane::table::Tenant::default_router_mac(VNI_A).0;
    let far = |src: &str, dst: &str| {
        let inner = udp(VM_A20_MAC, router, src, dst, 64, b"x");
        vxlan(REMOTE_VTEP, VNI_A, &inner)
    };
    for dst in ["198.18.0.1", "198.18.0.2", "198.18.0.9"] {
        let probe = far("10.0.0.20", dst);
        assert_eq!(dropped(&t, UP, &probe), DropReason::UnderlayGuard, "{dst}");
    }
    let forged = far("10.0.0.99", "198.19.0.10");
    assert_eq!(dropped(&t, UP, &forged), DropReason::VxlanInnerSource);
    assert_eq!(
        run(&t, UP, &far("10.0.0.20", "198.19.0.10")).0,
        Verdict::Tx(UP)
    );
}
