//! Commits that change only routes take a path of their own (checked
//! change by change, made in place, VRFs copied on write). Against the
//! general path (`apply_changes`, whole validation, a full build), on
//! random commits of adds, deletes and replaces, valid or not, including
//! routes over the VM ports' connected subnets: the same commits are
//! taken or refused, the refused ones change nothing, and the taken ones
//! leave the same routes, the same lookups at every probe, and the same
//! reported difference.
use arc_swap::ArcSwap;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use xvr::mailbox::Live;
use xvr::ops::DaemonOps;
use xvr_control::change::{self, apply_changes, Change};
use xvr_control::server::Handler;
use xvr_control::{RouteConfig, State};
use xvr_dataplane::Tables;

const TENANTS: [&str; 3] = ["acme", "globex", "nobody"];
const PREFIXES: [&str; 8] = [
    "10.0.0.0/24", // acme's and globex's connected subnet
    "10.0.1.0/24", // acme's other connected subnet
    "10.0.0.0/16",
    "10.0.0.128/25",
    "10.9.0.0/16", // in the example already
    "0.0.0.0/0",   // in the example already (acme)
    "192.0.2.0/24",
    "10.0.0.5/24", // host bits: invalid
];
const NEXT_HOPS: [&str; 4] = ["connected", "blackhole", "internet", "via"];

fn start() -> (State, DaemonOps, Arc<ArcSwap<Tables>>) {
    let state = State::from_json(include_str!("../examples/two-tenants.json")).unwrap();
    let tables = Arc::new(ArcSwap::from_pointee(state.build().unwrap()));
    let ops = DaemonOps::new(state.clone(), tables.clone(), Arc::new(Live::new(1)));
    (state, ops, tables)
}

fn change(action: usize, tenant: usize, prefix: usize, next_hop: usize) -> Value {
    let next_hop = match NEXT_HOPS[next_hop] {
        "via" => json!({ "via": "10.0.0.10" }),
        other => json!(other),
    };
    let action = ["add", "del", "replace"][action];
    json!({
        "action": action,
        "table": "routes",
        "entry": { "tenant": TENANTS[tenant], "prefix": PREFIXES[prefix], "next_hop": next_hop },
    })
}

fn routes(state: &State) -> BTreeSet<String> {
    state
        .routes
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect()
}

fn dumped_routes(ops: &mut DaemonOps) -> BTreeSet<String> {
    let mut request = Map::new();
    request.insert("table".into(), json!("routes"));
    let rows = ops.handle("dump", &request).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let route: RouteConfig = serde_json::from_value(r.clone()).unwrap();
            serde_json::to_string(&route).unwrap()
        })
        .collect()
}

/// Every tenant's answer at addresses in and around the prefixes above.
fn lookups(tables: &Tables) -> Vec<Option<xvr_dataplane::table::NextHop>> {
    let probes = [
        "10.0.0.1",
        "10.0.0.200",
        "10.0.1.7",
        "10.0.2.1",
        "10.9.3.3",
        "192.0.2.9",
        "8.8.8.8",
    ];
    (0..tables.tenants().len() as u16)
        .flat_map(|t| {
            probes
                .iter()
                .map(move |p| tables.route(t, p.parse::<Ipv4Addr>().unwrap()))
        })
        .collect()
}

/// `changes` of `diff` for routes only, as sets.
fn route_diff(changes: &Value) -> [BTreeSet<String>; 3] {
    ["added", "removed", "changed"].map(|kind| {
        changes
            .get("routes")
            .and_then(|r| r.get(kind))
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .map(|k| k.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// (action, tenant, prefix, next hop) indexes; mostly valid, so that
/// commits are taken and the state grows, sometimes not.
fn change_strategy() -> impl Strategy<Value = (usize, usize, usize, usize)> {
    let tenant = prop_oneof![10 => 0usize..2, 1 => Just(2usize)];
    let prefix = prop_oneof![15 => 0usize..7, 1 => Just(7usize)];
    (0usize..3, tenant, prefix, 0usize..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn route_commits_agree_with_the_general_path(
        commits in prop::collection::vec(prop::collection::vec(change_strategy(), 1..4), 1..16)
    ) {
        let (mut expected, mut ops, tables) = start();
        for commit in commits {
            let changes: Vec<Value> =
                commit.iter().map(|&(a, t, p, n)| change(a, t, p, n)).collect();
            let parsed: Vec<Change> = serde_json::from_value(json!(changes)).unwrap();
            let general = apply_changes(&expected, &parsed)
                .ok()
                .and_then(|s| s.build().ok().map(|t| (s, t)));
            let generation = tables.load().generation();
            let mut request = Map::new();
            request.insert("changes".into(), json!(changes));
            let answer = ops.handle("commit", &request);
            match (general, answer) {
                (None, Err(_)) => {
                    prop_assert_eq!(tables.load().generation(), generation, "refused: unchanged");
                }
                (Some((state, built)), Ok(answer)) => {
                    prop_assert_eq!(
                        route_diff(&answer["changes"]),
                        route_diff(&change::diff(&expected, &state)),
                        "{:?}", commit
                    );
                    prop_assert_eq!(lookups(&tables.load()), lookups(&built), "{:?}", commit);
                    expected = state;
                }
                (general, answer) => prop_assert!(
                    false,
                    "general path {}, route path {:?}, for {:?}",
                    if general.is_some() { "took it" } else { "refused it" },
                    answer,
                    commit
                ),
            }
            prop_assert_eq!(dumped_routes(&mut ops), routes(&expected));
        }
    }
}

fn commit(ops: &mut DaemonOps, changes: Value) -> Result<Value, String> {
    let mut request = Map::new();
    request.insert("changes".into(), changes);
    ops.handle("commit", &request).map_err(|e| format!("{e:?}"))
}

#[test]
fn deleting_a_route_over_a_connected_subnet_brings_the_subnet_back() {
    let (_, mut ops, tables) = start();
    let vm: Ipv4Addr = "10.0.0.10".parse().unwrap();
    let connected = Some(xvr_dataplane::table::NextHop::Connected);
    assert_eq!(tables.load().route(0, vm), connected);
    let route = json!({ "tenant": "acme", "prefix": "10.0.0.0/24", "next_hop": "blackhole" });
    commit(
        &mut ops,
        json!([{ "action": "add", "table": "routes", "entry": route }]),
    )
    .unwrap();
    let blackhole = Some(xvr_dataplane::table::NextHop::Blackhole);
    assert_eq!(tables.load().route(0, vm), blackhole);
    commit(
        &mut ops,
        json!([{ "action": "del", "table": "routes", "entry": route }]),
    )
    .unwrap();
    assert_eq!(tables.load().route(0, vm), connected);
}
