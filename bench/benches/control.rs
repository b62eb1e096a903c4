//! `control/route_changes_1m`: one iteration commits a batch of 1,000
//! route changes into a state holding 1M routes, the way xvrd's `commit`
//! does: make the changes, validate the whole resulting state, build its
//! tables. Criterion reports route changes per second
//! (`Throughput::Elements(1000)`). Each write rebuilds everything today,
//! so this measures the baseline that incremental updates must beat.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use xvr_control::change::{apply_changes, Change};
use xvr_control::State;

const ROUTES: u32 = 1 << 20;
const BATCH: u32 = 1000;

/// The example state plus 1M /32 blackhole routes in acme's VRF
/// (consecutive, so the LPM's leaf arrays are shared and dense).
fn state_with_routes() -> State {
    let mut state = State::from_json(include_str!("../../examples/two-tenants.json")).unwrap();
    let template = state.routes[0].clone();
    for i in 0..ROUTES {
        let mut route = template.clone();
        route.prefix = format!("11.{}.{}.{}/32", i >> 16, (i >> 8) & 0xff, i & 0xff)
            .parse()
            .unwrap();
        route.next_hop = xvr_control::NextHopConfig::Blackhole;
        state.routes.push(route);
    }
    state
}

/// 1,000 routes of the million switched between blackhole and connected.
fn batch(n: u32) -> Vec<Change> {
    let next_hop = if n.is_multiple_of(2) {
        "connected"
    } else {
        "blackhole"
    };
    let changes: Vec<_> = (0..BATCH)
        .map(|k| {
            let i = (n * BATCH + k) % ROUTES;
            let prefix = format!("11.{}.{}.{}/32", i >> 16, (i >> 8) & 0xff, i & 0xff);
            json!({ "action": "replace", "table": "routes",
                    "entry": { "tenant": "acme", "prefix": prefix, "next_hop": next_hop } })
        })
        .collect();
    serde_json::from_value(json!(changes)).unwrap()
}

fn control(c: &mut Criterion) {
    let mut state = state_with_routes();
    state.build().expect("the base state builds");
    let mut group = c.benchmark_group("control");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.sample_size(10);
    let mut n = 0;
    group.bench_function("route_changes_1m", |b| {
        b.iter(|| {
            let changes = batch(n);
            n += 1;
            let next = apply_changes(&state, &changes).expect("changes apply");
            let tables = next.build().expect("the state builds");
            state = next;
            std::hint::black_box(tables);
        })
    });
    group.finish();
}

criterion_group!(benches, control);
criterion_main!(benches);
