//! Commits that leave the routes and what they depend on alone (adding a
//! VM, moving a NAT address, a firewall rule) are validated and built
//! without the routes, and the new tables share the running VRFs.
//! Against the general path (`apply_changes`, whole validation, a full
//! build), on random sequences of commits mixing such changes with ones
//! that do touch the routes' context (tenants, VM port subnets, the
//! internet uplink) or the routes, valid or not: the same commits are
//! taken or refused, a refused one changes nothing, and a taken one
//! leaves the same state, the same reported difference, and the same
//! route and host lookups.
use arc_swap::ArcSwap;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::net::Ipv4Addr;
use std::sync::Arc;
use xvr::mailbox::Live;
use xvr::ops::DaemonOps;
use xvr_control::change::{self, apply_changes, Change};
use xvr_control::server::Handler;
use xvr_control::State;
use xvr_dataplane::table::NextHop;
use xvr_dataplane::Tables;

fn start() -> (State, DaemonOps, Arc<ArcSwap<Tables>>) {
    let state = State::from_json(include_str!("../examples/two-tenants.json")).unwrap();
    let tables = Arc::new(ArcSwap::from_pointee(state.build().unwrap()));
    let ops = DaemonOps::new(state.clone(), tables.clone(), Arc::new(Live::new(1)));
    (state, ops, tables)
}

/// One change of the kinds a controller sends, by index; `n` picks among
/// a few entries of that kind (so adds meet existing keys, deletes meet
/// missing ones).
fn change(kind: usize, action: usize, n: u8) -> Value {
    let action = ["add", "del", "replace"][action];
    let (table, entry) = match kind {
        // A VM on acme's web tier; n == 3 names a port that does not exist.
        0 => (
            "neighbors",
            json!({ "tenant": "acme", "ip": format!("10.0.0.{}", 20 + n),
                    "mac": format!("02:0a:00:00:00:{:02x}", 0x20 + n),
                    "port": if n == 3 { "nope" } else { "acme-web" } }),
        ),
        // A second port on the web tier's subnet (the VRFs keep), or on a
        // new subnet (they change).
        1 => (
            "ports",
            json!({ "role": "vm", "name": "acme-x", "mac": "02:aa:00:00:00:09", "tenant": "acme",
                    "gateway": if n.is_multiple_of(2) { "10.0.0.1/24" } else { "10.0.5.1/24" } }),
        ),
        2 => (
            "nat.source",
            json!({ "tenant": "acme", "public_ip": format!("203.0.113.{}", 10 + n) }),
        ),
        3 => (
            "firewall",
            json!({ "tenant": "globex", "direction": "egress", "action": "deny",
                    "protocol": "tcp", "ports": [25 + u16::from(n), 25 + u16::from(n)] }),
        ),
        // A tenant: the VRFs are numbered by tenant.
        4 => (
            "tenants",
            json!({ "name": "initech", "vni": 1003 + u32::from(n % 2) }),
        ),
        // A route; initech's make deleting initech invalid.
        _ => (
            "routes",
            json!({ "tenant": if n == 3 { "initech" } else { "acme" },
                    "prefix": format!("192.0.{n}.0/24"), "next_hop": "blackhole" }),
        ),
    };
    json!({ "action": action, "table": table, "entry": entry })
}

/// Mostly changes beside the routes.
fn change_strategy() -> impl Strategy<Value = (usize, usize, u8)> {
    let kind = prop_oneof![
        6 => 0usize..4,
        2 => Just(4usize),
        2 => Just(5usize),
        2 => Just(6usize),
        1 => Just(7usize)
    ];
    (kind, 0usize..3, 0u8..4)
}

/// The running state, its routes sorted (the route path keeps them in
/// another order; their order means nothing).
fn dump(ops: &mut DaemonOps) -> Value {
    sorted_routes(ops.handle("dump", &Map::new()).unwrap())
}

fn sorted_routes(mut state: Value) -> Value {
    if let Some(Value::Array(routes)) = state.get_mut("routes") {
        routes.sort_by_key(|r| r.to_string());
    }
    state
}

/// Every tenant's route and host answers at addresses around the
/// entries above.
fn lookups(tables: &Tables) -> Vec<(Option<NextHop>, Option<String>)> {
    let probes = [
        "10.0.0.10",
        "10.0.0.21",
        "10.0.0.23",
        "10.0.5.7",
        "10.0.1.10",
        "10.9.3.3",
        "192.0.2.9",
        "8.8.8.8",
    ];
    // By name: the daemon keeps each tenant's id across commits, a fresh
    // build numbers them in order.
    let mut names: Vec<&str> = tables
        .tenants()
        .iter()
        .filter(|t| !t.is_vacant())
        .map(|t| t.name.as_str())
        .collect();
    names.sort_unstable();
    names
        .into_iter()
        .map(|name| tables.tenant_id(name).unwrap())
        .flat_map(|t| {
            probes.iter().map(move |p| {
                let ip: Ipv4Addr = p.parse().unwrap();
                let host = tables.host(t, ip).map(|h| format!("{h:?}"));
                (tables.route(t, ip), host)
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn commits_beside_the_routes_agree_with_the_general_path(
        commits in prop::collection::vec(prop::collection::vec(change_strategy(), 1..4), 1..12)
    ) {
        let (mut expected, mut ops, tables) = start();
        for commit in commits {
            let changes: Vec<Value> = commit.iter().map(|&(k, a, n)| change(k, a, n)).collect();
            let parsed: Vec<Change> = serde_json::from_value(json!(changes)).unwrap();
            let general = apply_changes(&expected, &parsed)
                .ok()
                .and_then(|s| s.build().ok().map(|t| (s, t)));
            let generation = tables.load().generation();
            let before = dump(&mut ops);
            let mut request = Map::new();
            request.insert("changes".into(), json!(changes));
            let answer = ops.handle("commit", &request);
            match (general, answer) {
                (None, Err(_)) => {
                    prop_assert_eq!(tables.load().generation(), generation, "refused: unchanged");
                    prop_assert_eq!(dump(&mut ops), before);
                }
                (Some((state, built)), Ok(answer)) => {
                    prop_assert_eq!(
                        &answer["changes"],
                        &change::diff(&expected, &state),
                        "{:?}", commit
                    );
                    prop_assert_eq!(lookups(&tables.load()), lookups(&built), "{:?}", commit);
                    let state_json = sorted_routes(serde_json::to_value(&state).unwrap());
                    prop_assert_eq!(dump(&mut ops), state_json);
                    expected = state;
                }
                (general, answer) => prop_assert!(
                    false,
                    "general path {}, daemon {:?}, for {:?}",
                    if general.is_some() { "took it" } else { "refused it" },
                    answer,
                    commit
                ),
            }
        }
    }
}
