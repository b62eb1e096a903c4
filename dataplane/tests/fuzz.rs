//! Fuzz-style properties: arbitrary bytes into every parser and through
//! the whole pipeline, on every port and inside VXLAN, never panic; every
//! frame ends with a verdict, and every drop is counted. The tables have
//! NAT of every kind and live sessions, so replies, ICMP errors with
//! quotes and fragments reach the NAT code mutated, and a tier has a
//! network ACL, so frames routed between tiers reach the ACL code.
mod common;

use common::*;
use proptest::prelude::*;
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::table::Tables;
use xvr_dataplane::wire::{vlan, vxlan};
use xvr_dataplane::{Pipeline, Verdict};
use xvr_testkit::headers;

fn parse_all(bytes: &[u8]) {
    if let Ok(p) = vxlan::Packet::new_checked(bytes) {
        let _ = (
            p.flags(),
            p.vni(),
            p.payload().len(),
            vxlan::Repr::parse(&p),
        );
    }
    if let Ok(p) = vlan::Packet::new_checked(bytes) {
        let _ = (
            p.pcp(),
            p.dei(),
            p.vid(),
            p.ethertype(),
            p.payload().len(),
            vlan::Repr::parse(&p),
        );
    }
}

const PUBLIC: [u8; 4] = [203, 0, 113, 10];
const STATIC: [u8; 4] = [203, 0, 113, 20];
const SERVER: [u8; 4] = [198, 19, 0, 10];

/// The common tables plus NAT of every kind and ingress rules, so the
/// NAT and firewall code sees the fuzzed frames too.
fn nat_tables() -> Tables {
    use xvr_dataplane::table::{Action, Firewall, Inside, Rule, RuleSet, SourceNat, TierAcl};
    let mut b = builder();
    let snat = SourceNat {
        ip: PUBLIC.into(),
        ports: (20000, 65535),
        filtering: Default::default(),
    };
    b.set_source_nat(TENANT_A, snat);
    b.set_static_nat(TENANT_A, ip("10.0.0.11"), STATIC.into());
    let to = Inside {
        tenant: TENANT_A,
        ip: ip("10.0.0.10"),
        port: 5000,
    };
    b.add_port_forward(PUBLIC.into(), 17, 5000, to);
    let any = "0.0.0.0/0".parse().unwrap();
    let allow_all = Rule {
        src: any,
        dst: any,
        proto: None,
        ports: (0, 65535),
        action: Action::Allow,
    };
    let firewall = Firewall {
        ingress: RuleSet::new(vec![allow_all], Action::Deny),
        egress: RuleSet::new(Vec::new(), Action::Allow),
    };
    b.set_firewall(TENANT_A, firewall);
    // Tier ACLs: the 10.0.1.0/24 tier takes UDP 5001 and pings, and its
    // routed flows open sessions, so mutated ICMP errors, fragments and
    // replies between tiers reach the ACL code too.
    let rule = |proto, ports| Rule {
        src: any,
        dst: any,
        proto: Some(proto),
        ports,
        action: Action::Allow,
    };
    let ingress = vec![rule(17, (5001, 5001)), rule(1, (8 << 8, 8 << 8 | 0xff))];
    let tier = TierAcl::new("10.0.1.0/24".parse().unwrap(), ingress, Vec::new());
    b.set_tier_acl(TENANT_A, tier);
    b.build()
}

/// Frames that open sessions (run in a batch of their own first, so the
/// fuzzed replies, errors and fragments find them).
fn primers() -> Vec<(u16, Vec<u8>)> {
    let out = headers(VM_A10_MAC, A1_MAC, ip("10.0.0.10").octets(), SERVER);
    vec![
        (A1, out.udp(30000, 53, b"query")),
        (A1, out.ping(7, 1, b"ping")),
        (A1, out.tcp_syn(30001, 443)),
    ]
}

/// A pipeline whose `primers` went out, opening their sessions.
fn primed(tables: &Tables) -> Pipeline {
    let mut pipeline = Pipeline::new();
    let primers = primers();
    MemoryIo::new().run(
        &mut pipeline,
        tables,
        primers.iter().map(|(p, f)| (*p, f.as_slice())),
        |_, v, _| assert_eq!(v, Verdict::Tx(UP), "a primer did not go out"),
    );
    pipeline
}

fn run_all(frames: &[(u16, Vec<u8>)]) {
    let tables = nat_tables();
    let mut pipeline = primed(&tables);
    let primed = pipeline.stats.clone();
    let mut verdicts = Vec::new();
    MemoryIo::new().run(
        &mut pipeline,
        &tables,
        frames.iter().map(|(p, f)| (*p, f.as_slice())),
        |_, v, out| {
            assert!(out.len() <= 2048);
            verdicts.push(v)
        },
    );
    assert_eq!(verdicts.len(), frames.len());
    assert!(verdicts.iter().all(|v| *v != Verdict::Pending));
    let drops = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Drop(_)))
        .count() as u64;
    let stats = &pipeline.stats;
    let errors = xvr_dataplane::Event::IcmpErrorSent;
    assert_eq!(
        drops,
        stats.total_drops()
            - primed.total_drops()
            - (stats.events_of(errors) - primed.events_of(errors))
    );
}

/// Valid frames of every kind, to be mutated.
fn seeds() -> Vec<(u16, Vec<u8>)> {
    let inner = udp(
        VM_A20_MAC,
        VM_A10_MAC,
        "10.0.0.20",
        "10.0.0.10",
        64,
        b"payload",
    );
    let internet = headers(
        [0x02, 0, 0, 0, 0, 0xfe],
        [0x02, 0, 0, 0, 0, 0x01],
        SERVER,
        PUBLIC,
    );
    let reply = internet.udp(53, 30000, &[3u8; 1200]);
    // A first fragment of the reply (more fragments, offset 0), and a
    // later one (offset 1480).
    let mut first = reply.clone();
    first[20] = 0x20;
    fix_ipv4_checksum(&mut first);
    let mut later = reply.clone();
    later[20..22].copy_from_slice(&(185u16).to_be_bytes());
    fix_ipv4_checksum(&mut later);
    let sent = headers(VM_A10_MAC, A1_MAC, PUBLIC, SERVER).udp(30000, 53, b"query");
    let mut quote = Vec::new();
    etherparse::PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0xfe], [0x02, 0, 0, 0, 0, 0x01])
        .ipv4([198, 19, 0, 1], PUBLIC, 64)
        .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut quote, &sent[14..42])
        .unwrap();
    vec![
        (UP, reply),
        (UP, first),
        (UP, later),
        (UP, quote),
        (UP, internet.udp(40000, 5000, b"forwarded")),
        (
            UP,
            headers(
                [0x02, 0, 0, 0, 0, 0xfe],
                [0x02, 0, 0, 0, 0, 0x01],
                SERVER,
                STATIC,
            )
            .ping(9, 1, b"to the static address"),
        ),
        (
            A1,
            headers(VM_A10_MAC, A1_MAC, ip("10.0.0.10").octets(), SERVER).udp(
                30000,
                53,
                &[1u8; 1400],
            ),
        ),
        (
            A1,
            udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.1.10", 64, b"routed"),
        ),
        (
            A1,
            udp(
                VM_A10_MAC,
                VM_A20_MAC,
                "10.0.0.10",
                "10.0.0.20",
                64,
                b"encap",
            ),
        ),
        (A1, ping(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.0.1", 64)),
        (
            A1,
            udp(VM_A10_MAC, A1_MAC, "10.0.0.10", "10.0.1.10", 1, b"ttl"),
        ),
        (A1, arp_request(VM_A10_MAC, "10.0.0.10", "10.0.0.1")),
        (UP, vxlan(REMOTE_VTEP, VNI_A, &inner)),
        (
            UP,
            vxlan(
                REMOTE_VTEP,
                VNI_A,
                &arp_request(VM_A20_MAC, "10.0.0.20", "10.0.0.10"),
            ),
        ),
        (
            UP,
            vxlan(
                REMOTE_VTEP,
                VNI_A,
                &ping(
                    VM_A20_MAC,
                    [0x02, 0x78, 0x76, 0, 3, 0xe9],
                    "10.0.0.20",
                    "10.0.0.1",
                    1,
                ),
            ),
        ),
    ]
}

/// Seed `seed` with bytes overwritten at `flips` and cut short by `cut`.
fn mutated(seed: usize, flips: &[(u16, u8)], cut: u16) -> (u16, Vec<u8>) {
    let (port, mut frame) = seeds()[seed].clone();
    for &(at, value) in flips {
        let at = usize::from(at) % frame.len();
        frame[at] = value;
    }
    let keep = frame.len() - usize::from(cut) % (frame.len() / 4 + 1);
    frame.truncate(keep);
    (port, frame)
}

/// Unmutated, the NAT seeds are translated (so mutating them exercises
/// the translation code, not only its first checks).
#[test]
fn the_nat_seeds_reach_the_vms() {
    let tables = nat_tables();
    let want = [
        Verdict::Tx(A1),
        Verdict::Tx(A1),
        Verdict::Drop(xvr_dataplane::DropReason::NatFragment),
        Verdict::Tx(A1),
        Verdict::Tx(A1),
        Verdict::Tx(A3),
        Verdict::Tx(UP),
    ];
    for ((port, frame), want) in seeds().into_iter().zip(want) {
        let mut pipeline = primed(&tables);
        let (verdict, _) = MemoryIo::new().run_one(&mut pipeline, &tables, port, &frame);
        assert_eq!(verdict, want, "{:?}", pipeline.stats);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        parse_all(&bytes);
    }

    #[test]
    fn pipeline_never_panics_on_random_bytes(port in 0u16..6, bytes in prop::collection::vec(any::<u8>(), 0..1600)) {
        run_all(&[(port, bytes.clone()), (UP, vxlan(REMOTE_VTEP, VNI_A, &bytes))]);
    }

    #[test]
    fn pipeline_never_panics_on_mutated_frames(
        seed in 0usize..15,
        flips in prop::collection::vec((any::<u16>(), any::<u8>()), 1..6),
        cut in any::<u16>(),
    ) {
        let (port, frame) = mutated(seed, &flips, cut);
        run_all(&[(port, frame)]);
    }
}

/// Two workers that hand flows to their owners, over the same tables
/// (NAT of every kind, firewall rules, a tier ACL, a remote VTEP): the
/// primers open sessions, then mutated frames go to either worker. No
/// batch may panic (a caught panic would hide behind a drop: the
/// workers' `panics` must stay 0).
fn run_on_two_workers(at: usize, port: u16, frame: &[u8]) {
    let tables = nat_tables();
    let mut workers = two_workers();
    for (p, f) in primers() {
        deliver(&mut workers, &tables, 0, p, &f);
    }
    deliver(&mut workers, &tables, at, port, frame);
    for w in &workers {
        assert_eq!(w.counters.panics, 0, "a batch panicked");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn two_workers_never_panic_on_mutated_frames(
        at in 0usize..2,
        seed in 0usize..15,
        flips in prop::collection::vec((any::<u16>(), any::<u8>()), 1..6),
        cut in any::<u16>(),
    ) {
        let (port, frame) = mutated(seed, &flips, cut);
        run_on_two_workers(at, port, &frame);
    }
}
