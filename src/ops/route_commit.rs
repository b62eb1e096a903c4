//! The commit of routes only: each route checked on its own, made in
//! place in the state through a (tenant, prefix) index, and the VRFs
//! copied on write where they change (`Tables::with_routes`).
use super::{DaemonOps, Write};
use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use xvr_control::change;
use xvr_control::server::{ApiError, ErrorCode};
use xvr_control::{RouteConfig, State};
use xvr_dataplane::table::{RouteChange, TenantId};

impl DaemonOps {
    /// A commit that changes routes only. Routes are checked one by one
    /// (nothing else in a state depends on them), made in place in the
    /// state, and the VRFs copy on write only what changed
    /// (`Tables::with_routes`): no whole-state validation and rebuild.
    /// All or nothing, with the answer and errors of the general path.
    pub(super) fn commit_routes(
        &mut self,
        changes: &[RouteWrite],
        raw: &Value,
    ) -> Result<Value, ApiError> {
        let index = self
            .routes
            .take()
            .unwrap_or_else(|| index_routes(&self.state.routes));
        let planned = plan_routes(&self.state, &index, changes);
        let after = match planned {
            Ok(after) => after,
            Err(e) => {
                self.routes = Some(index);
                return Err(e);
            }
        };
        // Kept before it is made; the tables built below take the
        // upcoming generation (this thread alone builds tables).
        let generation = xvr_dataplane::table::upcoming_generation();
        if let Err(e) = self.persist(&Write::Changes(raw), None, generation) {
            self.routes = Some(index);
            return Err(e);
        }
        let mut index = index;
        let tables = self.tables.load();
        let tenant_ids: HashMap<&str, TenantId> = tables
            .tenants()
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_vacant())
            .map(|(id, t)| (t.name.as_str(), id as TenantId))
            .collect();
        let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
        let mut route_changes = Vec::new();
        for Planned {
            id: key,
            after: route,
            ..
        } in after
        {
            let name = format!("{} {}", key.0, key.1);
            let next_hop = route.as_ref().map(|r| r.next_hop.to_next_hop());
            match (index.get(&key).copied(), route) {
                (Some(at), Some(route)) => {
                    if self.state.routes[at] != route {
                        changed.push(name);
                    }
                    self.state.routes[at] = route;
                }
                (None, Some(route)) => {
                    index.insert(key.clone(), self.state.routes.len());
                    self.state.routes.push(route);
                    added.push(name);
                }
                (Some(at), None) => {
                    self.state.routes.swap_remove(at);
                    index.remove(&key);
                    if let Some(moved) = self.state.routes.get(at) {
                        index.insert((moved.tenant.clone(), moved.prefix), at);
                    }
                    removed.push(name);
                }
                // Added and deleted in the same commit.
                (None, None) => continue,
            }
            route_changes.push(RouteChange {
                // Known: validated, or the tenant of a route in the state.
                tenant: tenant_ids[key.0.as_str()],
                prefix: key.1,
                next_hop,
            });
        }
        let next = tables.with_routes(&route_changes);
        let generation = next.generation();
        let retired = self.retire_offloaded_flows(generation);
        self.tables.store(Arc::new(next));
        self.json = None;
        self.routes = Some(index);
        // In the general path's order (its keys are sorted).
        for keys in [&mut added, &mut removed, &mut changed] {
            keys.sort_unstable();
        }
        let mut diff = Map::new();
        if !(added.is_empty() && removed.is_empty() && changed.is_empty()) {
            diff.insert(
                "routes".into(),
                json!({ "added": added, "removed": removed, "changed": changed }),
            );
        }
        let mut answer = json!({ "dry_run": false, "generation": generation, "changes": diff });
        if let Err(e) = retired {
            answer["fast_path_error"] = e.into();
        }
        Ok(answer)
    }
}

/// A route's identity: its tenant and prefix.
type RouteId = (String, Ipv4Net);

/// Route -> where it is in `State::routes`. FxHash: the keys come from
/// the controller, which is trusted (commits are root-only), and SipHash
/// was the largest cost of a commit of routes.
pub(super) type RouteIndex = FxHashMap<RouteId, usize>;

pub(super) fn index_routes(routes: &[RouteConfig]) -> RouteIndex {
    routes
        .iter()
        .enumerate()
        .map(|(at, r)| ((r.tenant.clone(), r.prefix), at))
        .collect()
}

/// One change of a commit that writes routes only.
pub(super) struct RouteWrite<'a> {
    action: change::Action,
    entry: &'a Value,
}

/// The changes of `changes` if it is a list of well-formed changes to the
/// routes table (exactly `action`, `table` and `entry`), read in place;
/// anything else is left to the general path, which names what is wrong.
pub(super) fn only_routes(changes: &Value) -> Option<Vec<RouteWrite<'_>>> {
    let list = changes.as_array().filter(|l| !l.is_empty())?;
    list.iter()
        .map(|change| {
            let change = change.as_object().filter(|c| c.len() == 3)?;
            if change.get("table")? != "routes" {
                return None;
            }
            let action = change::Action::deserialize(change.get("action")?).ok()?;
            let entry = change.get("entry")?;
            Some(RouteWrite { action, entry })
        })
        .collect()
}

/// A route's key fields, all that a `del` needs.
#[derive(Deserialize)]
struct RouteKey {
    tenant: String,
    prefix: Ipv4Net,
}

/// A route a commit touches.
struct Planned {
    id: RouteId,
    /// What it is after the commit (None: deleted).
    after: Option<RouteConfig>,
    /// The last change of the commit that set it.
    change: usize,
}

/// Each route a commit of routes touches, in the order first touched; or
/// every problem, each naming `changes[i]`, with `apply_changes`' words
/// for the key errors. As in the general path, only the routes the
/// commit leaves are validated (an invalid route added and deleted again
/// is no problem).
fn plan_routes(
    state: &State,
    index: &RouteIndex,
    changes: &[RouteWrite],
) -> Result<Vec<Planned>, ApiError> {
    let mut after: Vec<Planned> = Vec::new();
    let mut touched: FxHashMap<RouteId, usize> = FxHashMap::default();
    let (mut bad_request, mut invalid) = (Vec::new(), Vec::new());
    for (i, &RouteWrite { action, entry }) in changes.iter().enumerate() {
        let at = || format!("changes[{i}].entry");
        let (key, route) = if action == change::Action::Del {
            match RouteKey::deserialize(entry) {
                Ok(k) => ((k.tenant, k.prefix), None),
                Err(e) => {
                    bad_request.push(format!("{}: {e}", at()));
                    continue;
                }
            }
        } else {
            match RouteConfig::deserialize(entry) {
                Ok(r) => ((r.tenant.clone(), r.prefix), Some(r)),
                Err(e) => {
                    bad_request.push(format!("{}: {e}", at()));
                    continue;
                }
            }
        };
        let exists = match touched.get(&key) {
            Some(&t) => after.get(t).is_some_and(|p| p.after.is_some()),
            None => index.contains_key(&key),
        };
        let name = || format!("{} {}", key.0, key.1);
        match (action, exists) {
            (change::Action::Add, true) => bad_request.push(format!(
                "{}: routes {} exists already (use replace)",
                at(),
                name()
            )),
            (change::Action::Del | change::Action::Replace, false) => {
                bad_request.push(format!("{}: no routes {}", at(), name()))
            }
            _ => {}
        }
        let planned = Planned {
            id: key,
            after: route,
            change: i,
        };
        match touched.get(&planned.id).and_then(|&t| after.get_mut(t)) {
            Some(earlier) => *earlier = planned,
            None => {
                touched.insert(planned.id.clone(), after.len());
                after.push(planned);
            }
        }
    }
    for Planned {
        after: route,
        change: i,
        ..
    } in &after
    {
        for (field, message) in route.iter().flat_map(|r| state.route_problems(r)) {
            invalid.push(format!("changes[{i}].entry.{field}: {message}"));
        }
    }
    if !bad_request.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, bad_request.join("; ")));
    }
    if !invalid.is_empty() {
        return Err(ApiError::new(ErrorCode::Invalid, invalid.join("; ")));
    }
    Ok(after)
}
