//! `lpm/lookup_{1k,100k,1m}`: longest-prefix match in one VRF holding that
//! many routes (prefix lengths /8 to /32, mostly /24 as in an internet
//! table), 1024 lookups of random addresses per iteration.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use xvr_bench::SplitMix;
use xvr_dataplane::table::Lpm;

const LOOKUPS: usize = 1024;

fn table(routes: usize) -> Lpm<u32> {
    let mut rng = SplitMix(routes as u64);
    let mut lpm = Lpm::new();
    while lpm.len() < routes {
        let r = rng.next_u64();
        let len = match r % 100 {
            0..=59 => 24,
            60..=79 => 16 + (r >> 8) as u8 % 8,
            80..=94 => 25 + (r >> 8) as u8 % 8,
            _ => 8 + (r >> 8) as u8 % 8,
        };
        let net = Ipv4Net::new(Ipv4Addr::from((r >> 32) as u32), len)
            .unwrap()
            .trunc();
        lpm.insert(net, lpm.len() as u32);
    }
    lpm
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lpm");
    group.throughput(Throughput::Elements(LOOKUPS as u64));
    for (id, routes) in [
        ("lookup_1k", 1_000),
        ("lookup_100k", 100_000),
        ("lookup_1m", 1_000_000),
    ] {
        let built = std::time::Instant::now();
        let lpm = table(routes);
        eprintln!(
            "lpm/{id}: {routes} routes built in {:?}, lookup structure {} MiB",
            built.elapsed(),
            lpm.lookup_bytes() >> 20
        );
        let mut rng = SplitMix(7);
        let addrs: Vec<Ipv4Addr> = (0..LOOKUPS)
            .map(|_| Ipv4Addr::from(rng.next_u64() as u32))
            .collect();
        group.bench_function(id, |b| {
            b.iter(|| {
                let mut hits = 0u32;
                for a in &addrs {
                    hits += lpm.lookup(std::hint::black_box(*a)).is_some() as u32;
                }
                hits
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
