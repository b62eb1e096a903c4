//! Fuzz-style properties: arbitrary bytes into every parser and through
//! the whole pipeline, on every port and inside VXLAN, never panic; every
//! frame ends with a verdict, and every drop is counted.
mod common;

use common::*;
use proptest::prelude::*;
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::wire::{vlan, vxlan};
use xvr_dataplane::{Pipeline, Verdict};

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

fn run_all(frames: &[(u16, Vec<u8>)]) {
    let tables = tables();
    let mut pipeline = Pipeline::new();
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
    assert_eq!(
        drops,
        pipeline.stats.total_drops()
            - pipeline
                .stats
                .events_of(xvr_dataplane::Event::IcmpErrorSent)
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
    vec![
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
        seed in 0usize..8,
        flips in prop::collection::vec((any::<u16>(), any::<u8>()), 1..6),
        cut in any::<u16>(),
    ) {
        let (port, mut frame) = seeds()[seed].clone();
        for (at, value) in flips {
            let at = usize::from(at) % frame.len();
            frame[at] = value;
        }
        let keep = frame.len() - usize::from(cut) % (frame.len() / 4 + 1);
        frame.truncate(keep);
        run_all(&[(port, frame)]);
    }
}
