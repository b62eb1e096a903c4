//! `checksum/*`: why the data path verifies IPv4 headers with its own
//! `wire::checksum::sum` instead of `smoltcp::wire::checksum::data` (the
//! two are equal on every input: see the unit test in wire/checksum.rs).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use xvr_dataplane::wire::checksum;

const HEADERS: usize = 64;

fn headers() -> Vec<[u8; 20]> {
    (0..HEADERS as u8)
        .map(|i| {
            let mut h = [
                0x45, 0, 0, 60, 0, i, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, i, 10, 0, 1, 10,
            ];
            let c = checksum::of(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        })
        .collect()
}

fn ipv4_header(c: &mut Criterion) {
    let headers = headers();
    let mut group = c.benchmark_group("checksum");
    group.throughput(Throughput::Elements(HEADERS as u64));
    group.bench_function("ipv4_header_smoltcp", |b| {
        b.iter(|| {
            headers
                .iter()
                .filter(|h| smoltcp_sum(black_box(&h[..])) == 0xffff)
                .count()
        })
    });
    group.bench_function("ipv4_header_xvr", |b| {
        b.iter(|| {
            headers
                .iter()
                .filter(|h| checksum::sum(black_box(&h[..])) == 0xffff)
                .count()
        })
    });
    group.finish();
}

fn smoltcp_sum(data: &[u8]) -> u16 {
    smoltcp::wire::checksum::data(data)
}

criterion_group!(benches, ipv4_header);
criterion_main!(benches);
