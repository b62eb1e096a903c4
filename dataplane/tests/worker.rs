//! The worker loop over the in-memory backend: batches of more than 64
//! frames are split, forwarded frames reach their output port, drops are
//! not transmitted, and the per-worker counters add up.
mod common;

use common::*;
use xvr_dataplane::io::memory::MemoryIo;
use xvr_dataplane::worker::{Worker, WorkerCounters};
use xvr_dataplane::DropReason;
use xvr_testkit::headers;

#[test]
fn a_worker_forwards_batches_and_counts_per_worker() {
    let t = tables();
    let mut worker = Worker::new(MemoryIo::new());
    let to_a11 = headers(VM_A10_MAC, VM_A11_MAC, [10, 0, 0, 10], [10, 0, 0, 11]);
    for i in 0..100u16 {
        worker.io.push(A1, &to_a11.udp(1000 + i, 53, b"x"));
    }
    // Routed (to the gateway MAC), so its IPv4 header is checked.
    let routed = headers(VM_A10_MAC, A1_MAC, [10, 0, 0, 10], [10, 0, 1, 10]);
    let mut bad = routed.udp(7, 53, b"x");
    bad[24] ^= 0xff; // the IPv4 header checksum
    worker.io.push(A1, &bad);

    assert_eq!(worker.poll(&t), 64, "one batch per source and pass");
    assert_eq!(worker.poll(&t), 37);
    assert_eq!(worker.poll(&t), 0);

    assert_eq!(worker.io.sent.len(), 100);
    assert!(worker.io.sent.iter().all(|(port, _)| *port == A3));
    assert_eq!(
        worker.counters,
        WorkerCounters {
            rx_packets: 101,
            tx_packets: 100,
            tx_ring_full: 0,
            idle_passes: 0,
            handed_in: 0,
            panics: 0,
        }
    );
    assert_eq!(
        worker.pipeline.stats.drops_of(DropReason::Ipv4BadChecksum),
        1
    );
}
