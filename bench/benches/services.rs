//! `services/*`: the router's own services on the service thread's one
//! core, a request's whole way there and back: posted into the services'
//! mailbox as a worker posts it, answered from the tables, the reply
//! posted back and taken out as the worker takes it.
//! - `dhcp_transactions`: a DISCOVER and its REQUEST from acme-web's VM
//!   (OFFER and ACK back), 32 transactions an iteration; criterion
//!   reports transactions per second.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xvr_bench::example_tables;
use xvr_dataplane::service::{links, PortBudget};
use xvr_dataplane::{Frame, Pipeline, Verdict};
use xvr_testkit::headers;

const VM: [u8; 6] = [0x02, 0x0a, 0, 0, 0, 0x10];
const TRANSACTIONS: usize = 32;

/// A client message of `kind` (1 DISCOVER, 3 REQUEST) from the VM,
/// broadcast from 0.0.0.0, with `options` after the type.
fn message(kind: u8, options: &[u8]) -> Vec<u8> {
    let mut m = vec![1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0x80, 0];
    m.extend([0; 16]);
    m.extend(VM);
    m.extend([0; 10 + 192]);
    m.extend([99, 130, 83, 99, 53, 1, kind]);
    m.extend(options);
    m.push(255);
    headers(VM, [0xff; 6], [0; 4], [255; 4]).udp(68, 67, &m)
}

fn services(c: &mut Criterion) {
    let tables = example_tables();
    let port = tables.port_by_name("acme-web").unwrap();
    let request = [50, 4, 10, 0, 0, 10, 54, 4, 10, 0, 0, 1];
    let inputs: Vec<Vec<u8>> = (0..TRANSACTIONS)
        .flat_map(|_| [message(1, &[]), message(3, &request)])
        .collect();
    // The pipeline marks them for the services, as live.
    let mut pipeline = Pipeline::new();
    let mut bufs: Vec<Vec<u8>> = inputs.iter().map(|_| vec![0u8; 2048]).collect();
    let mut frames: Vec<Frame<'_>> = bufs
        .iter_mut()
        .zip(&inputs)
        .map(|(buf, f)| Frame::with_data(buf, f, port))
        .collect();
    pipeline.run(&tables, &mut frames);
    assert!(frames.iter().all(|f| f.meta.verdict == Verdict::Local));
    let (mut services, mut link) = links(1).unwrap();
    let link = link.remove(0);
    let mut budget = PortBudget::default();
    let mut reply = vec![0u8; 2048];
    let mut group = c.benchmark_group("services");
    group.throughput(Throughput::Elements(TRANSACTIONS as u64));
    // A new second each iteration: the port's budget of requests a
    // second would otherwise refuse most of them.
    let mut second = 0;
    group.bench_function("dhcp_transactions", |b| {
        b.iter(|| {
            second += 1;
            for f in frames.iter_mut() {
                f.meta.verdict = Verdict::Local;
            }
            link.send(&mut frames, (&mut budget, second), &mut pipeline.stats);
            assert_eq!(services.serve_waiting(&tables), 2 * TRANSACTIONS);
            let mut replies = 0;
            while link.receive_into(&mut reply).is_some() {
                replies += 1;
            }
            assert_eq!(replies, 2 * TRANSACTIONS, "an OFFER and an ACK each");
        })
    });
    group.finish();
}

criterion_group!(benches, services);
criterion_main!(benches);
