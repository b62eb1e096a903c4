//! - `pipeline/firewall_10k_rules_first_packet`: first packets of new
//!   flows (acme-web to the internet through source NAT) with 10,000
//!   egress rules, none of them matching, so every rule is in play; a
//!   batch of 64 per iteration.
//! - `firewall/classifier_10k` and `firewall/linear_10k`: one decision
//!   over the same 10,000 rules, by the classifier and by a first-match
//!   scan.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::net::Ipv4Addr;
use xvr_bench::{example_state, first_packets, flow_batches, SplitMix};
use xvr_control::{Direction, FirewallRuleConfig, RuleAction, RuleProtocol};
use xvr_dataplane::conntrack::Config;
use xvr_dataplane::frame::BATCH_SIZE;
use xvr_dataplane::table::Action;
use xvr_dataplane::Pipeline;

const RULES: usize = 10_000;

/// Deny rules from acme's subnets to 100.64.0.0/10 (where the benchmark's
/// flows never go), with random prefixes, protocols and port ranges.
fn rules() -> Vec<FirewallRuleConfig> {
    let mut rng = SplitMix(42);
    (0..RULES)
        .map(|_| {
            let r = rng.next_u64();
            let byte = |shift: u32| (r >> shift) as u8;
            let first = (r >> 40) as u16 % 60_000;
            FirewallRuleConfig {
                tenant: "acme".into(),
                direction: Direction::Egress,
                action: RuleAction::Deny,
                protocol: if r & 1 == 0 {
                    RuleProtocol::Tcp
                } else {
                    RuleProtocol::Udp
                },
                source: Some(format!("10.0.{}.0/24", byte(8) % 4).parse().unwrap()),
                destination: Some(
                    format!("100.{}.{}.0/24", 64 + byte(16) % 64, byte(24))
                        .parse()
                        .unwrap(),
                ),
                ports: Some([first, first + (r >> 56) as u16]),
                icmp_type: None,
                icmp_code: None,
            }
        })
        .collect()
}

fn firewall(c: &mut Criterion) {
    let mut state = example_state();
    state.firewall.extend(rules());
    let tables = state.build().unwrap();
    let acme = tables.tenant_by_vni(1001).unwrap();

    const FLOWS: u32 = 1 << 16;
    let inputs = flow_batches(&tables, 0..FLOWS);
    let fresh = || {
        Pipeline::with_conntrack(Config {
            max_sessions: FLOWS,
            ..Config::default()
        })
    };
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    group.bench_function("firewall_10k_rules_first_packet", |b| {
        b.iter_custom(first_packets(&tables, &inputs, fresh))
    });
    group.finish();

    let egress = &tables.firewall(acme).unwrap().egress;
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(198, 19, 0, 1));
    assert_eq!(egress.decide(src, dst, 17, 5001), (None, Action::Allow));
    let mut group = c.benchmark_group("firewall");
    group.throughput(Throughput::Elements(1));
    group.bench_function("classifier_10k", |b| {
        b.iter(|| egress.decide(std::hint::black_box(src), dst, 17, 5001))
    });
    group.bench_function("linear_10k", |b| {
        b.iter(|| egress.decide_linear(std::hint::black_box(src), dst, 17, 5001))
    });
    group.finish();
}

criterion_group!(benches, firewall);
criterion_main!(benches);
