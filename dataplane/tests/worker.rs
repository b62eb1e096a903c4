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
            restarts: 0,
        }
    );
    assert_eq!(
        worker.pipeline.stats.drops_of(DropReason::Ipv4BadChecksum),
        1
    );
}

/// Tenant A (id 0) NATs a flow, then A is deleted: its id is vacant in the
/// next tables, and the worker flushes A's sessions when it sees them,
/// while tenant B, at its same id 1, keeps its own.
#[test]
fn a_deleted_tenants_sessions_die_with_it_and_others_keep_their_ids() {
    use xvr_dataplane::table::{Port, PortRole, SourceNat, TablesBuilder, Tenant};
    let snat = |ip: [u8; 4]| SourceNat {
        ip: ip.into(),
        ports: (20000, 20999),
        filtering: Default::default(),
    };
    let with_a = {
        let mut b = builder();
        b.set_source_nat(TENANT_A, snat([203, 0, 113, 10]));
        b.set_source_nat(TENANT_B, snat([203, 0, 113, 11]));
        let internet = xvr_dataplane::table::NextHop::Internet;
        b.add_route(TENANT_B, "0.0.0.0/0".parse().unwrap(), internet);
        b.build()
    };
    let mut worker = Worker::new(MemoryIo::new());
    let out_a = headers(VM_A10_MAC, A1_MAC, [10, 0, 0, 10], [198, 19, 0, 10]);
    let out_b = headers(VM_B10_MAC, B1_MAC, [10, 0, 0, 10], [198, 19, 0, 10]);
    worker.io.push(A1, &out_a.udp(1000, 53, b"a"));
    worker.io.push(B1, &out_b.udp(1000, 53, b"b"));
    worker.poll(&with_a);
    assert_eq!(worker.pipeline.conntrack.len(), 2);

    // The next tables: B alone, at its id; its port is the only VM port.
    let mut b = TablesBuilder::new();
    let b_id = b.add_tenant_at(
        TENANT_B,
        Tenant::new("b", VNI_B, Tenant::default_router_mac(VNI_B)),
    );
    let up = PortRole::Uplink {
        ip: LOCAL_VTEP,
        internet_gateway_mac: Some(mac(INTERNET_GW_MAC)),
        mtu: UPLINK_MTU,
    };
    b.add_port(Port {
        name: "up0".into(),
        mac: mac(UPLINK_MAC),
        role: up,
    });
    let vm = PortRole::Vm {
        tenant: b_id,
        gateway: "10.0.0.1/24".parse().unwrap(),
    };
    let b1 = b.add_port(Port {
        name: "b1".into(),
        mac: mac(B1_MAC),
        role: vm,
    });
    b.add_local_host(b_id, ip("10.0.0.10"), mac(VM_B10_MAC), b1);
    b.add_route(
        b_id,
        "0.0.0.0/0".parse().unwrap(),
        xvr_dataplane::table::NextHop::Internet,
    );
    b.set_source_nat(b_id, snat([203, 0, 113, 11]));
    let without_a = b.build();
    assert!(without_a.tenants()[usize::from(TENANT_A)].is_vacant());
    worker.poll(&without_a);
    let zones: Vec<u16> = worker
        .pipeline
        .conntrack
        .iter()
        .map(|s| s.inside.zone)
        .collect();
    assert_eq!(zones, [TENANT_B], "A's session flushed, B's kept");
    // B's reply still finds its session, in B.
    let reply = headers(
        INTERNET_GW_MAC,
        UPLINK_MAC,
        [198, 19, 0, 10],
        [203, 0, 113, 11],
    );
    let nat_port = worker.pipeline.conntrack.iter().next().unwrap().nat_port;
    worker.io.push(0, &reply.udp(53, nat_port, b"answer"));
    worker.poll(&without_a);
    let sent = worker.io.sent.pop().unwrap();
    assert_eq!(sent.0, b1, "the reply reached B's VM");
}
