//! The router's DHCP service in memory: the pipeline hands a VM's
//! request to the services, which answer from the tables; replies are
//! read with etherparse and by hand, independently of smoltcp's DHCP
//! views the service uses. Hostile requests: another VM's lease, a
//! forged source, bytes that only look like DHCP.
mod common;

use common::*;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use xvr_dataplane::pipeline::Meta;
use xvr_dataplane::pipeline::Stage;
use xvr_dataplane::service::{dhcp, links, DhcpCounters, PortBudget, ServiceCounters, ServiceLink};
use xvr_dataplane::table::{Guest, Tables, TenantDns, TenantId};
use xvr_dataplane::{DropReason, Frame, Pipeline, Verdict};
use xvr_testkit::headers;

/// `common::tables()` with tenant a's DNS domain `a.internal`.
fn tables() -> Tables {
    let mut b = builder();
    let dns = TenantDns {
        domain: "a.internal".into(),
        upstreams: vec![UPSTREAM.into()],
    };
    b.set_tenant_dns(TENANT_A, dns);
    let b_dns = TenantDns {
        domain: "b.internal".into(),
        upstreams: vec![],
    };
    b.set_tenant_dns(TENANT_B, b_dns);
    let named = |name: &str| Guest {
        hostname: Some(name.into()),
        ..Guest::default()
    };
    b.describe_guest(TENANT_A, ip("10.0.0.10"), named("vm10"));
    b.describe_guest(TENANT_B, ip("10.0.0.10"), named("other"));
    b.build()
}

/// Tenant a's upstream resolver.
const UPSTREAM: [u8; 4] = [198, 51, 100, 53];

const DISCOVER: u8 = 1;
const REQUEST: u8 = 3;
const RELEASE: u8 = 7;
const BROADCAST: [u8; 6] = [0xff; 6];

/// A DHCP client message of `kind` for `chaddr`, with `options` after
/// the message type.
fn message(kind: u8, chaddr: [u8; 6], ciaddr: [u8; 4], options: &[u8]) -> Vec<u8> {
    let mut m = vec![1, 1, 6, 0];
    m.extend(0x1234_5678u32.to_be_bytes());
    m.extend([0, 0, 0x80, 0]); // secs, flags: broadcast
    m.extend(ciaddr);
    m.extend([0; 12]); // yiaddr, siaddr, giaddr
    m.extend(chaddr);
    m.extend([0; 10 + 192]);
    m.extend([99, 130, 83, 99, 53, 1, kind]);
    m.extend(options);
    m.push(255);
    m
}

/// `message` from `src_mac` as a client without an address broadcasts it.
fn broadcast(src_mac: [u8; 6], dhcp: &[u8]) -> Vec<u8> {
    headers(src_mac, BROADCAST, [0; 4], [255; 4]).udp(68, 67, dhcp)
}

/// A frame the services sent a worker, and its meta.
type Sent = (Vec<u8>, Meta);

/// Runs `frames` (arriving on `port`) through a pipeline and, those it
/// marks for the services, through them; returns the pipeline's
/// verdicts, what the services sent the worker (frame and meta) and
/// their counters.
fn through_services(
    tables: &Tables,
    port: u16,
    frames: &[Vec<u8>],
) -> (Vec<Verdict>, Vec<Sent>, ServiceCounters) {
    let (mut services, mut link) = links(1).unwrap();
    let link = link.remove(0);
    let mut pipeline = Pipeline::new();
    let mut bufs: Vec<Vec<u8>> = frames.iter().map(|_| vec![0u8; 4096]).collect();
    let mut batch: Vec<Frame<'_>> = bufs
        .iter_mut()
        .zip(frames)
        .map(|(buf, f)| Frame::with_data(buf, f, port))
        .collect();
    pipeline.run(tables, &mut batch);
    let verdicts = batch.iter().map(|f| f.meta.verdict).collect();
    let budget = (tables, &mut PortBudget::default(), 0);
    link.send(&mut batch, budget, &mut pipeline.stats);
    services.serve_waiting(tables);
    let mut sent = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Some((len, meta)) = link.receive_into(&mut buf) {
        sent.push((buf[..len].to_vec(), meta));
    }
    let counters = services.counters().lock().unwrap().clone();
    (verdicts, sent, counters)
}

/// Posts `n` copies of `frame` into the services through `link`, as a
/// worker does once the pipeline marked them (arrived on `port`, of
/// `tenant`), within `budget` at second `now`.
fn post(
    link: &ServiceLink,
    (t, budget, now): (&Tables, &mut PortBudget, u32),
    (frame, port, tenant): (&[u8], u16, TenantId),
    n: usize,
    stats: &mut xvr_dataplane::Stats,
) {
    let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; 4096]).collect();
    let mut batch: Vec<Frame<'_>> = bufs
        .iter_mut()
        .map(|buf| {
            let mut f = Frame::with_data(buf, frame, port);
            f.meta.tenant = tenant;
            f.meta.verdict = Verdict::Local;
            f
        })
        .collect();
    link.send(&mut batch, (t, budget, now), stats);
}

/// `through_services` for DHCP: every reply goes out of the request's
/// port.
fn serve(
    tables: &Tables,
    port: u16,
    frames: &[Vec<u8>],
) -> (Vec<Verdict>, Vec<Vec<u8>>, DhcpCounters) {
    let (verdicts, sent, counters) = through_services(tables, port, frames);
    for (_, meta) in &sent {
        assert_eq!(meta.verdict, Verdict::Tx(port), "out of the request's port");
    }
    let replies = sent.into_iter().map(|(frame, _)| frame).collect();
    (verdicts, replies, counters.dhcp)
}

/// A reply's Ethernet and IPv4 destinations, `yiaddr`, and its options
/// by code.
struct Reply {
    eth_dst: [u8; 6],
    ip_src: [u8; 4],
    ip_dst: [u8; 4],
    yiaddr: [u8; 4],
    options: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    fn parse(frame: &[u8]) -> Reply {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let Some(TransportSlice::Udp(udp)) = &p.transport else {
            panic!("not UDP")
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (67, 68));
        let dhcp = udp.payload();
        assert!(dhcp.len() >= 300, "BOOTP's minimum: {}", dhcp.len());
        assert_eq!(&dhcp[236..240], &[99, 130, 83, 99]);
        let mut options = Vec::new();
        let mut rest = &dhcp[240..];
        while let [code, len, tail @ ..] = rest {
            if *code == 255 {
                break;
            }
            let len = usize::from(*len);
            options.push((*code, tail[..len].to_vec()));
            rest = &tail[len..];
        }
        Reply {
            eth_dst: p
                .link
                .unwrap()
                .to_header()
                .unwrap()
                .ethernet2()
                .unwrap()
                .destination,
            ip_src: ip.header().source(),
            ip_dst: ip.header().destination(),
            yiaddr: dhcp[16..20].try_into().unwrap(),
            options,
        }
    }

    fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| &v[..])
    }
}

#[test]
fn a_vm_is_offered_and_given_its_bound_address() {
    let t = tables();
    let discover = broadcast(VM_A10_MAC, &message(DISCOVER, VM_A10_MAC, [0; 4], &[]));
    let (verdicts, replies, counters) = serve(&t, A1, &[discover]);
    assert_eq!(verdicts, [Verdict::Local]);
    assert_eq!((counters.offers, replies.len()), (1, 1));
    let offer = Reply::parse(&replies[0]);
    assert_eq!(offer.yiaddr, [10, 0, 0, 10]);
    assert_eq!(offer.option(53), Some(&[2][..]), "OFFER");
    assert_eq!(offer.option(54), Some(&[10, 0, 0, 1][..]), "server id");
    assert_eq!(offer.option(1), Some(&[255, 255, 255, 0][..]), "mask");
    assert_eq!(offer.option(3), Some(&[10, 0, 0, 1][..]), "router");
    let lease = dhcp::LEASE_SECONDS.to_be_bytes();
    assert_eq!(offer.option(51), Some(&lease[..]));
    // Tenant A spans hosts (a VTEP hosts its VMs): the overlay's MTU.
    let mtu = (UPLINK_MTU - 50).to_be_bytes();
    assert_eq!(offer.option(26), Some(&mtu[..]));
    assert_eq!(offer.option(15), Some(&b"a.internal"[..]));
    assert_eq!(
        offer.option(6),
        Some(&[10, 0, 0, 1][..]),
        "DNS: the gateway"
    );
    // Asked to broadcast.
    assert_eq!((offer.eth_dst, offer.ip_dst), (BROADCAST, [255; 4]));
    assert_eq!(offer.ip_src, [10, 0, 0, 1]);

    let asks = |ip: [u8; 4]| {
        let options = [[50, 4].as_slice(), &ip, &[54, 4, 10, 0, 0, 1]].concat();
        broadcast(VM_A10_MAC, &message(REQUEST, VM_A10_MAC, [0; 4], &options))
    };
    let (_, replies, counters) = serve(&t, A1, &[asks([10, 0, 0, 10]), asks([10, 0, 0, 99])]);
    assert_eq!((counters.acks, counters.naks), (1, 1));
    assert_eq!(Reply::parse(&replies[0]).option(53), Some(&[5][..]), "ACK");
    let nak = Reply::parse(&replies[1]);
    assert_eq!(
        (nak.option(53), nak.yiaddr),
        (Some(&[6][..]), [0; 4]),
        "NAK"
    );
}

#[test]
fn a_renewal_to_the_gateway_is_answered_to_the_vm() {
    let t = tables();
    let mut renew = message(REQUEST, VM_A10_MAC, [10, 0, 0, 10], &[]);
    renew[10] = 0; // no broadcast flag
    let frame = headers(VM_A10_MAC, A1_MAC, [10, 0, 0, 10], [10, 0, 0, 1]).udp(68, 67, &renew);
    let (verdicts, replies, counters) = serve(&t, A1, &[frame]);
    assert_eq!((verdicts[0], counters.acks), (Verdict::Local, 1));
    let ack = Reply::parse(&replies[0]);
    assert_eq!((ack.eth_dst, ack.ip_dst), (VM_A10_MAC, [10, 0, 0, 10]));
    // RELEASE: noted, unanswered.
    let release = message(RELEASE, VM_A10_MAC, [10, 0, 0, 10], &[]);
    let frame = headers(VM_A10_MAC, A1_MAC, [10, 0, 0, 10], [10, 0, 0, 1]).udp(68, 67, &release);
    let (_, replies, counters) = serve(&t, A1, &[frame]);
    assert_eq!((replies.len(), counters.noted), (0, 1));
}

#[test]
fn a_vm_gets_no_other_vms_lease() {
    let t = tables();
    // Another VM's MAC as the client, from its own source MAC.
    let theft = broadcast(VM_A10_MAC, &message(DISCOVER, VM_A11_MAC, [0; 4], &[]));
    // The other VM's MAC as the source too: port security.
    let forged = broadcast(VM_A11_MAC, &message(DISCOVER, VM_A11_MAC, [0; 4], &[]));
    // Another tenant's VM with the same address, asking on A's port.
    let tenant_b = broadcast(VM_B10_MAC, &message(DISCOVER, VM_B10_MAC, [0; 4], &[]));
    let (verdicts, replies, counters) = serve(&t, A1, &[theft, forged, tenant_b]);
    assert_eq!(
        verdicts,
        [
            Verdict::Local,
            Verdict::Drop(DropReason::PortSecurityMac),
            Verdict::Drop(DropReason::PortSecurityMac),
        ]
    );
    assert_eq!((replies.len(), counters.not_our_client), (0, 1));
}

#[test]
fn only_a_dhcp_request_may_come_from_no_address() {
    let t = tables();
    let discover = broadcast(VM_A10_MAC, &message(DISCOVER, VM_A10_MAC, [0; 4], &[]));
    // Right after it, from the same MAC and 0.0.0.0: not DHCP.
    let to_vm = headers(VM_A10_MAC, A1_MAC, [0; 4], [10, 0, 1, 10]).udp(68, 67, b"x");
    let other_port = headers(VM_A10_MAC, BROADCAST, [0; 4], [255; 4]).udp(68, 53, b"x");
    let (verdicts, _, _) = serve(&t, A1, &[discover, to_vm, other_port]);
    assert_eq!(
        verdicts,
        [
            Verdict::Local,
            Verdict::Drop(DropReason::PortSecurityIp),
            Verdict::Drop(DropReason::PortSecurityIp),
        ]
    );
}

#[test]
fn requests_over_a_ports_share_are_dropped() {
    let t = tables();
    let discover = broadcast(VM_A10_MAC, &message(DISCOVER, VM_A10_MAC, [0; 4], &[]));
    let share = xvr_dataplane::service::REQUESTS_PER_PORT_SECOND as usize;
    let many = vec![discover; share + 100];
    let (mut services, mut link) = links(1).unwrap();
    let link = link.remove(0);
    let mut budget = PortBudget::default();
    let mut pipeline = Pipeline::new();
    for chunk in many.chunks(50) {
        let mut bufs: Vec<Vec<u8>> = chunk.iter().map(|_| vec![0u8; 4096]).collect();
        let mut batch: Vec<Frame<'_>> = bufs
            .iter_mut()
            .zip(chunk)
            .map(|(buf, f)| Frame::with_data(buf, f, A1))
            .collect();
        pipeline.run(&t, &mut batch);
        link.send(&mut batch, (&t, &mut budget, 7), &mut pipeline.stats);
    }
    let limited = pipeline.stats.drops_of(DropReason::ServiceRateLimited);
    assert_eq!(limited, 100);
    assert_eq!(services.serve_waiting(&t), share);
}

proptest! {
    /// Whatever follows the UDP header to port 67, the service answers
    /// or refuses, and never panics.
    #[test]
    fn any_bytes_to_port_67_are_answered_or_refused(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        kind in 0u8..10,
    ) {
        let t = tables();
        let mut dhcp = message(kind, VM_A10_MAC, [0; 4], &[]);
        let cut = body.len().min(dhcp.len());
        dhcp[..cut].copy_from_slice(&body[..cut]);
        dhcp.extend_from_slice(&body[cut..]);
        let frame = broadcast(VM_A10_MAC, &dhcp);
        let mut reply = vec![0u8; dhcp::MAX_REPLY];
        let _ = dhcp::answer(&t, A1, &frame, &mut reply);
    }
}

/// A DNS query for `name` of `qtype` with `id`, by hand.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.push(0);
    q.extend(qtype.to_be_bytes());
    q.extend(1u16.to_be_bytes()); // IN
    q
}

/// What VM 10.0.0.10 of tenant a sends its gateway.
fn from_vm(dns: &[u8]) -> Vec<u8> {
    headers(VM_A10_MAC, A1_MAC, [10, 0, 0, 10], [10, 0, 0, 1]).udp(40000, 53, dns)
}

/// A DNS message's ID, flags, and answer count, from a frame.
fn dns_header(frame: &[u8]) -> (u16, u16, u16) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    let d = udp.payload();
    let at = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
    (at(0), at(2), at(6))
}

const NXDOMAIN: u16 = 3;
const REFUSED: u16 = 5;

#[test]
fn a_tenants_names_are_its_own() {
    let t = tables();
    let queries = [
        from_vm(&dns_query(1, "vm10.a.internal", 1)),
        from_vm(&dns_query(2, "other.b.internal", 1)),
        from_vm(&dns_query(3, "nobody.a.internal", 1)),
    ];
    let (verdicts, sent, counters) = through_services(&t, A1, &queries);
    assert!(verdicts.iter().all(|v| *v == Verdict::Local));
    assert_eq!(counters.dns.authoritative, 3);
    let (id, flags, answers) = dns_header(&sent[0].0);
    assert_eq!(
        (id, flags & 0x8400, flags & 0xf, answers),
        (1, 0x8400, 0, 1),
        "AA answer"
    );
    assert!(sent[0].0.ends_with(&[10, 0, 0, 10]), "its address");
    // Tenant b's VM with the same address: another tenant's name is
    // NXDOMAIN here, and never asked of an upstream.
    for (frame, _) in &sent[1..] {
        let (_, flags, answers) = dns_header(frame);
        assert_eq!((flags & 0xf, answers), (NXDOMAIN, 0));
    }
    assert_eq!(counters.dns.forwarded, 0);
    // Tenant b has no upstream: other names are refused.
    let from_b = headers(VM_B10_MAC, B1_MAC, [10, 0, 0, 10], [10, 0, 0, 1]).udp(
        40000,
        53,
        &dns_query(4, "www.example.test", 1),
    );
    let (_, sent, counters) = through_services(&t, B1, &[from_b]);
    assert_eq!(dns_header(&sent[0].0).1 & 0xf, REFUSED);
    assert_eq!(counters.dns.refused, 1);
}

#[test]
fn a_forwarded_query_leaves_from_the_gateway_and_a_vm_cannot_answer_it() {
    let t = tables();
    let query = from_vm(&dns_query(9, "www.example.test", 1));
    let (_, sent, counters) = through_services(&t, A1, &[query]);
    assert_eq!(counters.dns.forwarded, 1);
    // Into the pipeline at L3, from the gateway to the upstream.
    let (frame, meta) = &sent[0];
    assert_eq!((meta.stage, meta.tenant), (Stage::L3, TENANT_A));
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip.header().source(), ip.header().destination()),
        ([10, 0, 0, 1], UPSTREAM)
    );
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!()
    };
    let (port, id) = (udp.source_port(), dns_header(frame).0);
    assert_ne!(id, 9, "its own random ID");
    // The VM forges the answer, to the right port with the right ID.
    let mut forged = dns_query(id, "www.example.test", 1);
    forged[2] |= 0x80;
    let forged = headers(VM_A10_MAC, A1_MAC, [10, 0, 0, 10], [10, 0, 0, 1]).udp(53, port, &forged);
    let (verdicts, sent, counters) = through_services(&t, A1, &[forged]);
    assert_eq!(verdicts, [Verdict::Local]);
    assert_eq!((sent.len(), counters.dns.unmatched), (0, 1));
}

#[test]
fn one_tenants_answers_on_the_uplink_leave_anothers_share() {
    let t = tables();
    let share = xvr_dataplane::service::REQUESTS_PER_PORT_SECOND as usize;
    let (_services, mut link) = links(1).unwrap();
    let link = link.remove(0);
    let mut budget = PortBudget::default();
    let mut stats = xvr_dataplane::Stats::default();
    let answer = headers(UPLINK_MAC, UPLINK_MAC, UPSTREAM, [10, 0, 0, 1]).udp(53, 40000, &[0; 12]);
    // As the pipeline hands them over after NAT: arrived on the uplink,
    // each of its tenant.
    let mut arrive = |tenant, n: usize, stats: &mut xvr_dataplane::Stats| {
        post(&link, (&t, &mut budget, 3), (&answer, UP, tenant), n, stats);
    };
    arrive(TENANT_A, share + 10, &mut stats);
    assert_eq!(stats.drops_of(DropReason::ServiceRateLimited), 10);
    arrive(TENANT_B, 10, &mut stats);
    assert_eq!(
        stats.drops_of(DropReason::ServiceRateLimited),
        10,
        "B's answers are within B's share"
    );
}

proptest! {
    /// Whatever a VM sends to its gateway's port 53, the service answers
    /// or drops it, and never panics.
    #[test]
    fn any_bytes_to_port_53_are_answered_or_dropped(
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let t = tables();
        let (_, _, counters) = through_services(&t, A1, &[from_vm(&body)]);
        prop_assert_eq!(counters.panics, 0);
    }
}

proptest! {
    /// Whatever TCP a VM sends the metadata service or its gateway's
    /// DNS, its port's stack answers or drops it, and never panics.
    #[test]
    fn any_tcp_to_the_ports_services_is_answered_or_dropped(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        syn in any::<bool>(),
        dns in any::<bool>(),
    ) {
        let t = tables();
        let (to, port) = match dns {
            true => ([10, 0, 0, 1], 53),
            false => ([169, 254, 169, 254], 80),
        };
        let vm = headers(VM_A10_MAC, A1_MAC, [10, 0, 0, 10], to);
        let frame = match syn {
            true => vm.tcp_syn(40000, port),
            false => vm.tcp_ack(40000, port, &body),
        };
        let (verdicts, _, counters) = through_services(&t, A1, &[frame]);
        prop_assert_eq!(verdicts, vec![Verdict::Local]);
        prop_assert_eq!(counters.panics, 0);
    }
}

#[test]
fn a_vms_tcp_to_its_gateways_dns_is_answered_by_its_ports_stack() {
    let t = tables();
    let syn = headers(VM_A10_MAC, A1_MAC, [10, 0, 0, 10], [10, 0, 0, 1]).tcp_syn(40000, 53);
    let (verdicts, sent, _) = through_services(&t, A1, &[syn]);
    assert_eq!(verdicts, [Verdict::Local]);
    let (frame, meta) = &sent[0];
    assert_eq!(meta.verdict, Verdict::Tx(A1));
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("{p:?}")
    };
    assert!(tcp.syn() && tcp.ack(), "SYN-ACK from the gateway's port 53");
    assert_eq!((tcp.source_port(), tcp.destination_port()), (53, 40000));
}

#[test]
fn a_truncated_upstream_answer_is_asked_again_over_tcp() {
    let t = tables();
    let (mut services, mut link) = links(1).unwrap();
    let link = link.remove(0);
    let mut stats = xvr_dataplane::Stats::default();
    let mut budget = PortBudget::default();
    let mut send = |frame: &[u8], link: &ServiceLink| {
        post(
            link,
            (&t, &mut budget, 0),
            (frame, A1, TENANT_A),
            1,
            &mut stats,
        );
    };
    send(&from_vm(&dns_query(5, "big.example.test", 16)), &link);
    services.serve_waiting(&t);
    let mut buf = vec![0u8; 4096];
    let (len, _) = link.receive_into(&mut buf).unwrap();
    let port = u16::from_be_bytes([buf[34], buf[35]]);
    let (id, _, _) = dns_header(&buf[..len]);
    // The upstream says: truncated, no records.
    let mut answer = dns_query(id, "big.example.test", 16);
    answer[2] |= 0x82;
    let upstream = headers(A1_MAC, A1_MAC, UPSTREAM, [10, 0, 0, 1]).udp(53, port, &answer);
    send(&upstream, &link);
    services.serve_waiting(&t);
    // Not passed on: a SYN from the gateway to the same upstream's port
    // 53, into the pipeline at L3 (so through the tenant's NAT).
    let (len, meta) = link.receive_into(&mut buf).unwrap();
    assert_eq!((meta.stage, meta.tenant), (Stage::L3, TENANT_A));
    let syn = buf[..len].to_vec();
    let p = SlicedPacket::from_ethernet(&syn).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip.header().source(), ip.header().destination()),
        ([10, 0, 0, 1], UPSTREAM)
    );
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("{p:?}")
    };
    assert!(tcp.syn() && !tcp.ack() && tcp.destination_port() == 53);
    assert!(
        link.receive_into(&mut buf).is_none(),
        "nothing to the VM yet"
    );
    let counters = services.counters().lock().unwrap().clone();
    assert_eq!(counters.dns.tcp_retries, 1);
}

#[test]
fn a_tenant_is_held_to_its_share_of_the_services() {
    let t = tables();
    let (mut services, mut link) = links(1).unwrap();
    let link = link.remove(0);
    let discover = broadcast(VM_A10_MAC, &message(DISCOVER, VM_A10_MAC, [0; 4], &[]));
    let mut stats = xvr_dataplane::Stats::default();
    // 11 batches of 1,000, each under a port budget of its own (as if
    // from many ports): within two seconds at most, so at least 1,000
    // are over the tenant's share.
    for _ in 0..11 {
        let budget = (&t, &mut PortBudget::default(), 0);
        post(&link, budget, (&discover, A1, TENANT_A), 1000, &mut stats);
        services.serve_waiting(&t);
        let mut buf = vec![0u8; 2048];
        while link.receive_into(&mut buf).is_some() {}
    }
    let counters = services.counters().lock().unwrap().clone();
    let limited = counters
        .rate_limited_by_tenant
        .get(&TENANT_A)
        .copied()
        .unwrap_or(0);
    assert!(limited >= 1000, "{counters:?}");
    assert_eq!(counters.dhcp.offers + limited, 11_000);
}

#[test]
fn an_answer_too_big_for_a_frame_goes_truncated() {
    let t = tables();
    let (mut services, mut link) = links(1).unwrap();
    let link = link.remove(0);
    let mut stats = xvr_dataplane::Stats::default();
    let mut budget = PortBudget::default();
    let mut send = |frame: &[u8], tenant, link: &ServiceLink| {
        post(
            link,
            (&t, &mut budget, 0),
            (frame, A1, tenant),
            1,
            &mut stats,
        );
    };
    // The VM asks, with EDNS for 4,096 bytes; the query goes upstream.
    let mut query = dns_query(5, "big.example.test", 1);
    query[11] = 1; // one additional record: OPT, 4,096 bytes
    query.extend([0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    send(&from_vm(&query), TENANT_A, &link);
    services.serve_waiting(&t);
    let mut buf = vec![0u8; 4096];
    let (len, _) = link.receive_into(&mut buf).unwrap();
    let forwarded = buf[..len].to_vec();
    let port = u16::from_be_bytes([forwarded[34], forwarded[35]]);
    let (id, _, _) = dns_header(&forwarded);
    // The upstream answers 100 addresses: 1,600 bytes of records.
    let mut answer = dns_query(id, "big.example.test", 1);
    answer[2] |= 0x80;
    answer[6..8].copy_from_slice(&100u16.to_be_bytes());
    for i in 0..100u8 {
        answer.extend([
            0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 198, 51, 100, i,
        ]);
    }
    let upstream = headers(A1_MAC, A1_MAC, UPSTREAM, [10, 0, 0, 1]).udp(53, port, &answer);
    send(&upstream, TENANT_A, &link);
    services.serve_waiting(&t);
    let (len, meta) = link.receive_into(&mut buf).unwrap();
    assert_eq!(meta.verdict, Verdict::Tx(A1));
    assert!(len <= 1514, "one Ethernet frame: {len}");
    let (id, flags, answers) = dns_header(&buf[..len]);
    assert_eq!(
        (id, flags & 0x0200, answers),
        (5, 0x0200, 0),
        "TC, no records"
    );
}

#[test]
fn the_metadata_address_is_answered_by_arp_on_a_vm_port() {
    let t = tables();
    let ask = xvr_testkit::arp_request(VM_A10_MAC, [10, 0, 0, 10], [169, 254, 169, 254]);
    let (verdict, reply, _) = run(&t, A1, &ask);
    assert_eq!(verdict, Verdict::Tx(A1));
    assert_eq!(&reply[22..28], &A1_MAC, "the port's router MAC");
    assert_eq!(&reply[28..32], &[169, 254, 169, 254]);
}
