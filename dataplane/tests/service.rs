//! The router's DHCP service in memory: the pipeline hands a VM's
//! request to the services, which answer from the tables; replies are
//! read with etherparse and by hand, independently of smoltcp's DHCP
//! views the service uses. Hostile requests: another VM's lease, a
//! forged source, bytes that only look like DHCP.
mod common;

use common::*;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use xvr_dataplane::service::{dhcp, links, DhcpCounters};
use xvr_dataplane::table::Tables;
use xvr_dataplane::{DropReason, Frame, Pipeline, Verdict};
use xvr_testkit::headers;

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

/// Runs `frames` (arriving on `port`) through a pipeline and, those it
/// marks for the services, through them; returns the pipeline's
/// verdicts, the replies and the DHCP counters.
fn serve(
    tables: &Tables,
    port: u16,
    frames: &[Vec<u8>],
) -> (Vec<Verdict>, Vec<Vec<u8>>, DhcpCounters) {
    let (mut services, mut link) = links(1).unwrap();
    let mut link = link.remove(0);
    let mut pipeline = Pipeline::new();
    let mut bufs: Vec<Vec<u8>> = frames.iter().map(|_| vec![0u8; 4096]).collect();
    let mut batch: Vec<Frame<'_>> = bufs
        .iter_mut()
        .zip(frames)
        .map(|(buf, f)| Frame::with_data(buf, f, port))
        .collect();
    pipeline.run(tables, &mut batch);
    let verdicts = batch.iter().map(|f| f.meta.verdict).collect();
    link.send(&mut batch, 0, &mut pipeline.stats);
    services.serve_waiting(tables);
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Some((len, meta)) = link.receive_into(&mut buf) {
        assert_eq!(meta.verdict, Verdict::Tx(port), "out of the request's port");
        replies.push(buf[..len].to_vec());
    }
    let counters = services.counters().lock().unwrap().dhcp;
    (verdicts, replies, counters)
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
    let many = vec![discover; 150];
    let (mut services, mut link) = links(1).unwrap();
    let mut link = link.remove(0);
    let mut pipeline = Pipeline::new();
    for chunk in many.chunks(50) {
        let mut bufs: Vec<Vec<u8>> = chunk.iter().map(|_| vec![0u8; 4096]).collect();
        let mut batch: Vec<Frame<'_>> = bufs
            .iter_mut()
            .zip(chunk)
            .map(|(buf, f)| Frame::with_data(buf, f, A1))
            .collect();
        pipeline.run(&t, &mut batch);
        link.send(&mut batch, 7, &mut pipeline.stats);
    }
    let limited = pipeline.stats.drops_of(DropReason::ServiceRateLimited);
    let share = u64::from(xvr_dataplane::service::REQUESTS_PER_PORT_SECOND);
    assert_eq!(limited, 150 - share);
    assert_eq!(services.serve_waiting(&t) as u64, share);
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
