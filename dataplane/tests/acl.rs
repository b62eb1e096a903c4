//! Tier network ACLs in memory: tenant A's db tier (10.0.1.0/24) takes
//! TCP 5432 and UDP 5000-5001 from the web tier (10.0.0.0/24) and pings
//! from 10.0.0.10 only, in rule order, and sends nothing of its own
//! accord (default deny). Allowed flows open sessions, so replies and
//! related ICMP errors pass without the rules; NAT'd flows are judged
//! when their NAT session opens; with two workers the session has one
//! owner both ways.
mod common;

use common::*;
use xvr_dataplane::table::{Action, Rule, Tables, TablesBuilder, TierAcl};
use xvr_dataplane::{DropReason, Event, Pipeline, Verdict};
use xvr_testkit::headers;

const WEB: [u8; 4] = [10, 0, 0, 10];
const WEB2: [u8; 4] = [10, 0, 0, 11];
const DB: [u8; 4] = [10, 0, 1, 10];
const SERVER: [u8; 4] = [198, 19, 0, 10];

fn rule(src: &str, proto: Option<u8>, ports: (u16, u16), action: Action) -> Rule {
    Rule {
        src: src.parse().unwrap(),
        dst: "0.0.0.0/0".parse().unwrap(),
        proto,
        ports,
        action,
    }
}

fn with_db_acl(b: &mut TablesBuilder) {
    let ingress = vec![
        rule("10.0.0.11/32", Some(6), (5432, 5432), Action::Deny),
        rule("10.0.0.0/24", Some(6), (5432, 5432), Action::Allow),
        rule("10.0.0.0/24", Some(17), (5000, 5001), Action::Allow),
        // ICMP "ports" are type << 8 | code: echo request, any code.
        rule(
            "10.0.0.10/32",
            Some(1),
            (8 << 8, 8 << 8 | 0xff),
            Action::Allow,
        ),
    ];
    let tier = TierAcl::new("10.0.1.0/24".parse().unwrap(), ingress, Vec::new());
    b.set_tier_acl(TENANT_A, tier);
}

fn acl_tables() -> Tables {
    let mut b = builder();
    with_db_acl(&mut b);
    b.build()
}

fn from(src: [u8; 4], dst: [u8; 4]) -> xvr_testkit::Headers {
    let (mac, gw) = match src {
        WEB => (VM_A10_MAC, A1_MAC),
        WEB2 => (VM_A11_MAC, A3_MAC),
        _ => (VM_A110_MAC, A2_MAC),
    };
    headers(mac, gw, src, dst)
}

fn send(p: &mut Pipeline, t: &Tables, port: u16, frame: &[u8]) -> Verdict {
    xvr_dataplane::io::memory::MemoryIo::new()
        .run_one(p, t, port, frame)
        .0
}

#[test]
fn allowed_flows_open_sessions_and_their_replies_pass_the_default_deny() {
    let t = acl_tables();
    let mut p = Pipeline::new();
    let syn = from(WEB, DB).tcp_syn(40000, 5432);
    assert_eq!(send(&mut p, &t, A1, &syn), Verdict::Tx(A2));
    assert_eq!(p.stats.events_of(Event::SessionNew), 1);
    // The db tier's egress denies everything, but this is a reply.
    let syn_ack = from(DB, WEB).tcp_syn_ack(5432, 40000);
    assert_eq!(send(&mut p, &t, A2, &syn_ack), Verdict::Tx(A1));
    let ack = from(WEB, DB).tcp_ack(40000, 5432, b"select 1");
    assert_eq!(send(&mut p, &t, A1, &ack), Verdict::Tx(A2));
    assert_eq!(p.stats.events_of(Event::SessionNew), 1, "one session");

    // Another port is not allowed in; the db opens nothing itself.
    let ssh = from(WEB, DB).tcp_syn(40001, 22);
    assert_eq!(
        send(&mut p, &t, A1, &ssh),
        Verdict::Drop(DropReason::AclIngressDenied)
    );
    let query = from(DB, WEB).udp(5353, 53, b"q");
    assert_eq!(
        send(&mut p, &t, A2, &query),
        Verdict::Drop(DropReason::AclEgressDenied)
    );
    // A TCP segment that is no reply and opens nothing: judged as new.
    let stray = from(DB, WEB).tcp_ack(5432, 40009, b"x");
    assert_eq!(
        send(&mut p, &t, A2, &stray),
        Verdict::Drop(DropReason::AclEgressDenied)
    );
    // Out of the tier to the internet: its egress too.
    let out = from(DB, SERVER).tcp_syn(40002, 443);
    assert_eq!(
        send(&mut p, &t, A2, &out),
        Verdict::Drop(DropReason::AclEgressDenied)
    );
}

#[test]
fn rules_apply_in_order_and_match_icmp_by_type() {
    let t = acl_tables();
    let mut p = Pipeline::new();
    // 10.0.0.11 is denied 5432 by the rule before the /24 allow.
    let denied = from(WEB2, DB).tcp_syn(40000, 5432);
    assert_eq!(
        send(&mut p, &t, A3, &denied),
        Verdict::Drop(DropReason::AclIngressDenied)
    );
    // Echo requests from 10.0.0.10 only; the reply passes back.
    let ping = from(WEB, DB).ping(7, 1, b"hi");
    assert_eq!(send(&mut p, &t, A1, &ping), Verdict::Tx(A2));
    assert_eq!(
        send(&mut p, &t, A2, &from(DB, WEB).pong(7, 1, b"hi")),
        Verdict::Tx(A1)
    );
    let ping2 = from(WEB2, DB).ping(8, 1, b"hi");
    assert_eq!(
        send(&mut p, &t, A3, &ping2),
        Verdict::Drop(DropReason::AclIngressDenied)
    );
}

#[test]
fn an_icmp_error_about_an_allowed_flow_passes_as_related() {
    let t = acl_tables();
    let mut p = Pipeline::new();
    let sent = from(WEB, DB).udp(41000, 5001, b"hello");
    assert_eq!(send(&mut p, &t, A1, &sent), Verdict::Tx(A2));
    // The db's kernel answers port unreachable, quoting the datagram.
    let mut error = Vec::new();
    etherparse::PacketBuilder::ethernet2(VM_A110_MAC, A2_MAC)
        .ipv4(DB, WEB, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut error, &sent[14..14 + 28])
        .unwrap();
    assert_eq!(send(&mut p, &t, A2, &error), Verdict::Tx(A1));
    // About a flow it never saw, the same error is the db's egress: denied.
    let mut other = sent.clone();
    other[34..36].copy_from_slice(&41001u16.to_be_bytes()); // another source port
    let mut error = Vec::new();
    etherparse::PacketBuilder::ethernet2(VM_A110_MAC, A2_MAC)
        .ipv4(DB, WEB, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut error, &other[14..14 + 28])
        .unwrap();
    assert_eq!(
        send(&mut p, &t, A2, &error),
        Verdict::Drop(DropReason::AclEgressDenied)
    );
}

#[test]
fn nat_flows_are_judged_when_their_nat_session_opens() {
    let mut b = builder();
    with_db_acl(&mut b);
    with_public_ip(&mut b, TENANT_A, [203, 0, 113, 10]);
    let t = b.build();
    let mut p = Pipeline::new();
    // The web tier has no ACL: out through source NAT, and its reply in.
    let syn = from(WEB, SERVER).tcp_syn(40000, 443);
    assert_eq!(send(&mut p, &t, A1, &syn), Verdict::Tx(UP));
    let back = headers(INTERNET_GW_MAC, UPLINK_MAC, SERVER, [203, 0, 113, 10]);
    assert_eq!(
        send(&mut p, &t, UP, &back.tcp_syn_ack(443, 40000)),
        Verdict::Tx(A1)
    );
    // The db tier's egress denies it before any port is taken.
    let syn = from(DB, SERVER).tcp_syn(40001, 443);
    assert_eq!(
        send(&mut p, &t, A2, &syn),
        Verdict::Drop(DropReason::AclEgressDenied)
    );
    assert_eq!(p.conntrack.len(), 1);
}

#[test]
fn with_two_workers_a_flow_between_tiers_has_one_owner_both_ways() {
    let t = acl_tables();
    let mut w = two_workers();
    let view = w[0].pipeline.workers.clone();
    let owner = usize::from(view.of_pair(TENANT_A, (WEB.into(), 40000), (DB.into(), 5432)));
    let other = 1 - owner;
    let sent = deliver(&mut w, &t, other, A1, &from(WEB, DB).tcp_syn(40000, 5432));
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, sent[0].1), (owner, A2));
    // TTL decremented once: the owner routed it, not both.
    assert_eq!(sent[0].2[22], 63);
    let back = deliver(
        &mut w,
        &t,
        other,
        A2,
        &from(DB, WEB).tcp_syn_ack(5432, 40000),
    );
    assert_eq!((back[0].0, back[0].1), (owner, A1));
    assert_eq!(w[other].pipeline.conntrack.len(), 0);
    assert_eq!(w[owner].pipeline.conntrack.len(), 1);
}

#[test]
fn with_two_workers_a_pairs_flows_spread_and_their_fragments_and_errors_follow() {
    let t = acl_tables();
    let mut w = two_workers();
    // 64 flows between the same two VMs arriving at worker 0: both
    // workers hold sessions.
    assert_flows_spread(&mut w, &t, A1, |sport| from(WEB, DB).udp(sport, 5000, b"q"));

    // A flow worker 1 owns, its fragments in one batch at worker 0: the
    // first is handed over and noted, and the later ones follow it.
    let view = w[0].pipeline.workers.clone();
    let sport = (5000..)
        .find(|&p| view.of_pair(TENANT_A, (WEB.into(), p), (DB.into(), 5001)) == 1)
        .unwrap();
    let frags = fragments(&from(WEB, DB).udp(sport, 5001, &[7u8; 3000]), 1480, 81);
    let out = deliver_batch(&mut w, &t, 0, A1, &frags);
    assert_eq!(out.len(), 3, "{:?}", w[0].pipeline.stats);
    assert!(out.iter().all(|(by, port, _)| (*by, *port) == (1, A2)));

    // The db VM's port unreachable about that flow, at worker 0, is
    // related to its session on worker 1 (the db tier sends nothing of
    // its own accord).
    let unreachable = port_unreachable((VM_A110_MAC, A2_MAC), (DB, WEB), &out[0].2[14..]);
    let error = deliver(&mut w, &t, 0, A2, &unreachable);
    assert_eq!(error.len(), 1, "{:?}", w[0].pipeline.stats);
    assert_eq!((error[0].0, error[0].1), (1, A1));
}

/// An ICMP error with one byte of ICMP (its type, no code) routed into a
/// tier with an ACL: 35 bytes once stopped a worker (the rules read the
/// code past the end). Now a counted drop, and the next frame forwards.
#[test]
fn a_one_byte_icmp_error_into_a_tier_is_dropped() {
    let tables = acl_tables();
    let mut frame = from(WEB, DB).ping(1, 1, b"");
    frame.truncate(14 + 20 + 1);
    frame[14 + 2..14 + 4].copy_from_slice(&21u16.to_be_bytes());
    frame[14 + 20] = 3; // destination unreachable
    fix_ipv4_checksum(&mut frame);
    assert_eq!(frame.len(), 35);
    let (verdict, _, _) = run(&tables, A1, &frame);
    assert_eq!(verdict, Verdict::Drop(DropReason::L4Truncated));
    let ping = from(WEB, DB).ping(1, 1, b"after");
    assert_eq!(run(&tables, A1, &ping).0, Verdict::Tx(A2));
}
