//! `control/route_changes_1m`: one iteration commits a batch of 1,000
//! route changes into a state holding 1M routes through xvrd's control
//! ops (`DaemonOps`, the `commit` op with its JSON changes), which a
//! running xvrd serves on its socket: parse, check each change, make them
//! in the state and in copy-on-write VRFs, swap the new tables in.
//! Criterion reports route changes per second (`Throughput::Elements`).
//! `control/route_add_del_1m` does the same with 1,000 routes added in one
//! iteration and deleted in the next (the trie's plies change too).
//! `control/vm_add_del_1m`: one iteration commits one VM (a neighbor)
//! added, the next deletes it, beside the same million routes: a commit
//! that leaves the routes alone, as a controller sends for each VM.
//! `control/tier_add_del_1m`: a VM port on a new subnet of the tenant
//! holding the million routes (a new tier: its VRF gains a connected
//! route), then deleted; `control/tenant_add_del_1m`: a tenant.
use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use xvr::mailbox::Live;
use xvr::ops::DaemonOps;
use xvr_control::server::Handler;
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
fn replaces(n: u32) -> Value {
    let next_hop = if n.is_multiple_of(2) {
        "connected"
    } else {
        "blackhole"
    };
    let changes: Vec<Value> = (0..BATCH)
        .map(|k| {
            let i = (n * BATCH + k) % ROUTES;
            let prefix = format!("11.{}.{}.{}/32", i >> 16, (i >> 8) & 0xff, i & 0xff);
            json!({ "action": "replace", "table": "routes",
                    "entry": { "tenant": "acme", "prefix": prefix, "next_hop": next_hop } })
        })
        .collect();
    json!(changes)
}

/// 1,000 new /32 routes outside the million: added, then deleted.
fn adds_or_dels(n: u32) -> Value {
    let action = if n.is_multiple_of(2) { "add" } else { "del" };
    let block = (n / 2) % 64;
    let changes: Vec<Value> = (0..BATCH)
        .map(|k| {
            let prefix = format!("12.{block}.{}.{}/32", k >> 8, k & 0xff);
            json!({ "action": action, "table": "routes",
                    "entry": { "tenant": "acme", "prefix": prefix, "next_hop": "blackhole" } })
        })
        .collect();
    json!(changes)
}

/// One VM of acme's web tier: added, then deleted.
fn vm_add_or_del(n: u32) -> Value {
    let action = if n.is_multiple_of(2) { "add" } else { "del" };
    let k = (n / 2) % 100;
    json!([{ "action": action, "table": "neighbors",
             "entry": { "tenant": "acme", "ip": format!("10.0.0.{}", 100 + k),
                        "mac": format!("02:0c:00:00:00:{k:02x}"),
                        "port": "acme-web" } }])
}

/// A port on a new subnet of acme's: added, then deleted.
fn tier_add_or_del(n: u32) -> Value {
    let action = if n.is_multiple_of(2) { "add" } else { "del" };
    let k = (n / 2) % 100;
    json!([{ "action": action, "table": "ports",
             "entry": { "role": "vm", "name": format!("tier{k}"), "mac": format!("02:ad:00:00:00:{k:02x}"),
                        "tenant": "acme", "gateway": format!("10.100.{k}.1/24") } }])
}

/// A tenant: added, then deleted.
fn tenant_add_or_del(n: u32) -> Value {
    let action = if n.is_multiple_of(2) { "add" } else { "del" };
    let k = (n / 2) % 100;
    json!([{ "action": action, "table": "tenants",
             "entry": { "name": format!("tenant{k}"), "vni": 5000 + k } }])
}

/// Makes the changes of the n-th commit.
type Batch = fn(u32) -> Value;

fn control(c: &mut Criterion) {
    let state = state_with_routes();
    let tables = Arc::new(ArcSwap::from_pointee(state.build().expect("builds")));
    let mut ops = DaemonOps::new(state, tables, Arc::new(Live::new(1)));
    let mut group = c.benchmark_group("control");
    group.sample_size(10);
    let batches: [(&str, Batch, u64); 5] = [
        ("route_changes_1m", replaces, u64::from(BATCH)),
        ("route_add_del_1m", adds_or_dels, u64::from(BATCH)),
        ("vm_add_del_1m", vm_add_or_del, 1),
        ("tier_add_del_1m", tier_add_or_del, 1),
        ("tenant_add_del_1m", tenant_add_or_del, 1),
    ];
    for (name, batch, changes) in batches {
        group.throughput(Throughput::Elements(changes));
        let mut n = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut request = Map::new();
                    request.insert("changes".into(), batch(n));
                    n += 1;
                    request
                },
                |request| ops.handle("commit", &request).expect("the commit is taken"),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, control);
criterion_main!(benches);
