//! What xvrd answers on its control socket (`xvr_control::server` does
//! the framing): `version`, `health`, `stats`, `dump`, and the writes
//! `apply` (a whole desired state) and `commit` (a list of changes). A
//! write is validated against the whole resulting state and built into
//! new tables, which the workers pick up at their next pass (an atomic
//! swap): all or nothing, and no batch sees a mix. Reads are built from
//! copies (the state, the workers' last reports), never by reaching into
//! a running worker.
use crate::fast_path::FastPathSync;
use crate::live_ports::LivePorts;
use crate::mailbox::Live;
use arc_swap::ArcSwap;
use ipnet::Ipv4Net;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xvr_control::change::{self, Change};
use xvr_control::server::{optional_bool, optional_str, optional_u64, ApiError, Handler};
use xvr_control::{NextHopConfig, RouteConfig, State, TenantIds};
use xvr_dataplane::conntrack::SessionFilter;
use xvr_dataplane::io::xsk_ports::PortCounters;
use xvr_dataplane::table::{Lpm, NextHop, RouteChange, TenantId};
use xvr_dataplane::tally::TenantCounters;
use xvr_dataplane::Stats;
use xvr_dataplane::Tables;
use xvr_ebpf::DecisionCounters;

/// The protocol's version: bumped when an answer changes shape.
pub const PROTOCOL: u32 = 1;
/// The ops, for errors and `xvrctl`.
pub const OPS: &[&str] = &[
    "version", "health", "stats", "dump", "apply", "commit", "trace", "schema", "sessions",
];
/// Sessions listed per worker at most (`limit` defaults to 100).
const MAX_LISTED: u64 = 10_000;
/// A worker that has not reported for this long is not alive.
const ALIVE_WITHIN: Duration = Duration::from_secs(1);

pub struct DaemonOps {
    state: State,
    /// `state` as JSON, for dumps: made when a dump asks, kept until the
    /// state changes.
    json: Option<Value>,
    /// Where each route is in `state.routes`, for commits of routes (made
    /// at the first, kept in step by them, dropped by other changes).
    routes: Option<RouteIndex>,
    tables: Arc<ArcSwap<Tables>>,
    live: Arc<Live>,
    started: Instant,
    /// Kept in step with every change made.
    fast_path: Option<Arc<Mutex<FastPathSync>>>,
    /// The steering program's decisions, for `stats`.
    xdp: Option<Arc<DecisionCounters>>,
    /// The running data path's interfaces and steering maps, changed with
    /// the ports and public addresses (None: no data path to follow).
    ports: Option<LivePorts>,
    /// Each tenant's id, kept across commits (see `TenantIds`).
    ids: TenantIds,
    /// The host's networks that tenants' internet traffic may not reach
    /// (those the starting tables guard, read once by xvrd).
    protected: Vec<ipnet::Ipv4Net>,
}

impl DaemonOps {
    /// Serves `state`, whose tables the workers read from `tables`.
    pub fn new(state: State, tables: Arc<ArcSwap<Tables>>, live: Arc<Live>) -> DaemonOps {
        let running = tables.load();
        let (ids, protected) = (TenantIds::of(&running), running.protected().to_vec());
        DaemonOps {
            ids,
            protected,
            json: None,
            routes: None,
            state,
            tables,
            live,
            started: Instant::now(),
            fast_path: None,
            xdp: None,
            ports: None,
        }
    }

    /// Adds and removes ports and public addresses on the running data
    /// path as commits change them.
    pub fn with_live_ports(mut self, ports: LivePorts) -> DaemonOps {
        self.ports = Some(ports);
        self
    }

    /// `stats` also reports the steering program's decisions (`xdp`).
    pub fn with_xdp_counters(mut self, counters: Arc<DecisionCounters>) -> DaemonOps {
        self.xdp = Some(counters);
        self
    }

    /// Keeps the XDP fast path's maps in step with every change.
    pub fn with_fast_path(mut self, fast_path: Arc<Mutex<FastPathSync>>) -> DaemonOps {
        self.fast_path = Some(fast_path);
        self
    }

    /// Makes `new` the running state (unless `dry_run`); answers what
    /// changed and the new generation.
    fn change_to(&mut self, new: State, dry_run: bool) -> Result<Value, ApiError> {
        let built = self.build(&new)?;
        let changes = change::diff(&self.state, &new);
        self.make_current(new, built, changes, dry_run, Routes::Replaced)
    }

    /// Validates and builds `state`, its tenants keeping their ids (new
    /// ones get fresh ids); every problem in one `invalid` error.
    fn build(&self, state: &State) -> Result<(Tables, TenantIds), ApiError> {
        let invalid = |e: xvr_control::ConfigErrors| {
            ApiError::new("invalid", e.to_string().trim_end().replace('\n', "; "))
        };
        let ids = self.ids.next(state).map_err(invalid)?;
        let built = crate::with_interface_mtus(state).build_with(&ids);
        let guarded = built
            .map_err(invalid)?
            .with_protected(self.protected.clone());
        Ok((guarded, ids))
    }

    /// Makes `new` (built into `tables`; `changes` is what differs) the
    /// running state, unless `dry_run`.
    fn make_current(
        &mut self,
        mut new: State,
        (tables, ids): (Tables, TenantIds),
        changes: Value,
        dry_run: bool,
        routes: Routes,
    ) -> Result<Value, ApiError> {
        if new.conntrack != self.state.conntrack {
            return Err(ApiError::bad_field(
                "conntrack",
                "changing session limits needs an xvrd restart (each worker's table is sized once)",
            ));
        }
        let plan = match &self.ports {
            Some(ports) => Some(
                ports
                    .plan(&self.tables.load(), &tables)
                    .map_err(|(field, e)| ApiError::new("invalid", format!("{field}: {e}")))?,
            ),
            None => None,
        };
        let generation = tables.generation();
        let mut answer = json!({
            "dry_run": dry_run,
            "generation": if dry_run { self.tables.load().generation() } else { generation },
            "changes": changes,
        });
        if dry_run {
            return Ok(answer);
        }
        let plan = plan.filter(|p| !p.is_empty());
        if let (Some(ports), Some(plan)) = (&mut self.ports, &plan) {
            ports
                .prepare(plan)
                .map_err(|e| ApiError::new("unavailable", format!("ports: {e}")))?;
        }
        let tables = Arc::new(tables);
        self.tables.store(tables.clone());
        // The change is made either way; a fast path that could not follow
        // was emptied, so the workers carry everything.
        if let Some(sync) = &self.fast_path {
            match sync.lock().expect("fast path").sync(&tables) {
                Ok(entries) => answer["fast_path_entries"] = entries.into(),
                Err(e) => answer["fast_path_error"] = e.into(),
            }
        }
        if let (Some(ports), Some(plan)) = (&mut self.ports, &plan) {
            if let Err(e) = ports.finish(plan) {
                answer["ports_error"] = e.into();
            }
        }
        match routes {
            // And so is their index.
            Routes::Kept => new.routes = std::mem::take(&mut self.state.routes),
            Routes::Replaced => self.routes = None,
        }
        self.json = None;
        self.state = new;
        self.ids = ids;
        Ok(answer)
    }

    /// A commit that changes no route: the state without its routes is
    /// changed, validated and built, and each tenant's VRF is carried over
    /// from the running tables (copy on write), with the connected subnets
    /// of VM ports added or removed applied to it. So adding a VM, a tier
    /// or a tenant next to a million routes costs what the rest of the
    /// state costs. None: the general path takes the commit (it changes
    /// routes, or makes some route invalid, which that path reports).
    fn commit_beside_routes(
        &mut self,
        changes: &[Change],
        dry_run: bool,
    ) -> Option<Result<Value, ApiError>> {
        if changes.iter().any(|c| c.table == "routes") {
            return None;
        }
        let routes = std::mem::take(&mut self.state.routes);
        let rest = self.state.clone();
        self.state.routes = routes;
        let new = match change::apply_changes(&rest, changes) {
            Ok(new) => new,
            Err(errors) => return Some(Err(ApiError::new("bad_request", errors.join("; ")))),
        };
        if !self.routes_stay_valid(&rest, &new) {
            return None;
        }
        let changes = change::diff(&rest, &new);
        Some(self.build(&new).and_then(|(tables, ids)| {
            let vrfs = self.carried_vrfs(&rest, &new, &tables);
            let built = (tables.with_vrfs(vrfs), ids);
            self.make_current(new, built, changes, dry_run, Routes::Kept)
        }))
    }

    /// Whether the running routes are still valid beside `new` (the state
    /// without routes that `old` becomes): their tenants are still there,
    /// and an uplink still reaches the internet if one needs it.
    fn routes_stay_valid(&self, old: &State, new: &State) -> bool {
        let names =
            |s: &State| -> BTreeSet<String> { s.tenants.iter().map(|t| t.name.clone()).collect() };
        let gone: BTreeSet<String> = names(old).difference(&names(new)).cloned().collect();
        let internet_lost = old.has_internet() && !new.has_internet();
        if gone.is_empty() && !internet_lost {
            return true;
        }
        !self.state.routes.iter().any(|r| {
            gone.contains(&r.tenant) || (internet_lost && r.next_hop == NextHopConfig::Internet)
        })
    }

    /// A VRF for each tenant of `tables` (built from `new`, without
    /// routes): the running one of the tenant of that name, with the
    /// connected subnets that came or went between `old` and `new`; a
    /// new tenant (no routes yet) keeps the one just built.
    fn carried_vrfs(&mut self, old: &State, new: &State, tables: &Tables) -> Vec<Lpm<NextHop>> {
        let running = self.tables.load();
        let (was, is) = (old.connected_subnets(), new.connected_subnets());
        let none = BTreeSet::new();
        let mut vrfs = Vec::new();
        for (id, tenant) in tables.tenants().iter().enumerate() {
            let Some(old_id) = running.tenant_id(&tenant.name) else {
                vrfs.push(tables.vrf(id as TenantId).cloned().unwrap_or_default());
                continue;
            };
            let mut vrf = running.vrf(old_id).cloned().unwrap_or_default();
            let name = tenant.name.as_str();
            let (before, after) = (
                was.get(name).unwrap_or(&none),
                is.get(name).unwrap_or(&none),
            );
            if before != after {
                // A route of the same prefix wins over a connected subnet.
                let routes = &self.state.routes;
                let index = self.routes.get_or_insert_with(|| index_routes(routes));
                let routed = |prefix: Ipv4Net| index.contains_key(&(tenant.name.clone(), prefix));
                for &prefix in before.difference(after).filter(|p| !routed(**p)) {
                    vrf.remove(prefix);
                }
                for &prefix in after.difference(before).filter(|p| !routed(**p)) {
                    vrf.insert(prefix, NextHop::Connected);
                }
            }
            vrfs.push(vrf);
        }
        vrfs
    }

    /// Connection-tracking sessions, filtered by `tenant`, `address`,
    /// `port`, `protocol`; `limit` listed per worker; `flush` removes them.
    fn sessions(&mut self, request: &Map<String, Value>) -> Result<Value, ApiError> {
        let tables = self.tables.load();
        let text = |field: &str| optional_str(request, field);
        let mut filter = SessionFilter::default();
        if let Some(name) = text("tenant")? {
            let id = tables
                .tenant_id(name)
                .ok_or_else(|| ApiError::bad_field("tenant", format!("unknown tenant {name:?}")))?;
            filter.zone = Some(id);
        }
        if let Some(a) = text("address")? {
            let ip = a.parse().map_err(|_| {
                ApiError::bad_field("address", format!("{a:?} is not an IPv4 address"))
            })?;
            filter.address = Some(ip);
        }
        if let Some(p) = text("protocol")? {
            filter.proto = Some(match p {
                "tcp" => 6,
                "udp" => 17,
                "icmp" => 1,
                other => {
                    return Err(ApiError::bad_field(
                        "protocol",
                        format!("{other:?} is not tcp, udp or icmp"),
                    ))
                }
            });
        }
        let number = |field: &str, max: u64| optional_u64(request, field, max);
        filter.port = number("port", 65535)?.map(|p| p as u16);
        let limit = number("limit", MAX_LISTED)?.unwrap_or(100) as usize;
        let flush = optional_bool(request, "flush")?.unwrap_or(false);
        let answers = self
            .live
            .sessions(filter, limit, flush)
            .map_err(|e| ApiError::new("unavailable", e))?;
        let tenant = |zone: u16| {
            tables
                .tenants()
                .get(usize::from(zone))
                .filter(|t| !t.is_vacant())
                .map(|t| t.name.clone())
        };
        let mut listed = Vec::new();
        let mut matched = 0;
        for (w, answer) in answers.iter().enumerate() {
            matched += answer.matched;
            listed.extend(answer.sessions.iter().map(|s| {
                let i = &s.inside;
                let public = (!s.routed).then(|| json!({ "ip": s.nat_ip.to_string(), "port": s.nat_port }));
                json!({
                    "worker": w,
                    "tenant": tenant(i.zone),
                    "protocol": match i.proto { 6 => "tcp", 17 => "udp", 1 => "icmp", _ => "other" },
                    "inside": { "src": i.src.to_string(), "sport": i.sport, "dst": i.dst.to_string(), "dport": i.dport },
                    "public": public,
                    "state": format!("{:?}", s.state),
                    "expires_in_s": s.expires.saturating_sub(answer.now),
                    "opened_from_outside": s.inbound,
                })
            }));
        }
        Ok(
            json!({ "matched": matched, "flushed": if flush { matched } else { 0 }, "sessions": listed }),
        )
    }

    fn apply(&mut self, request: &Map<String, Value>) -> Result<Value, ApiError> {
        let state = request
            .get("state")
            .ok_or_else(|| ApiError::bad_field("state", "missing"))?;
        let state: State =
            serde_json::from_value(state.clone()).map_err(|e| ApiError::bad_field("state", e))?;
        self.change_to(state, dry_run(request)?)
    }

    fn commit(&mut self, request: &Map<String, Value>) -> Result<Value, ApiError> {
        let changes = request
            .get("changes")
            .ok_or_else(|| ApiError::bad_field("changes", "missing"))?;
        let dry_run = dry_run(request)?;
        if let Some(routes) = only_routes(changes).filter(|_| !dry_run) {
            return self.commit_routes(&routes);
        }
        let changes =
            Vec::<Change>::deserialize(changes).map_err(|e| ApiError::bad_field("changes", e))?;
        if let Some(answer) = self.commit_beside_routes(&changes, dry_run) {
            return answer;
        }
        let state = change::apply_changes(&self.state, &changes)
            .map_err(|errors| ApiError::new("bad_request", errors.join("; ")))?;
        self.change_to(state, dry_run)
    }

    /// A commit that changes routes only. Routes are checked one by one
    /// (nothing else in a state depends on them), made in place in the
    /// state, and the VRFs copy on write only what changed
    /// (`Tables::with_routes`): no whole-state validation and rebuild.
    /// All or nothing, with the answer and errors of the general path.
    fn commit_routes(&mut self, changes: &[RouteWrite]) -> Result<Value, ApiError> {
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
        for (key, route, _) in after {
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
        Ok(json!({ "dry_run": false, "generation": generation, "changes": diff }))
    }

    fn health(&self) -> Value {
        let now = Instant::now();
        let workers: Vec<Value> = self
            .live
            .workers()
            .iter()
            .enumerate()
            .map(|(w, r)| {
                let age = r.seen.map(|t| now.duration_since(t));
                json!({
                    "worker": w,
                    "core": r.core,
                    "alive": age.is_some_and(|a| a < ALIVE_WITHIN),
                    "last_report_ms": age.map(|a| a.as_millis() as u64),
                    "worker_panics": r.counters.panics,
                })
            })
            .collect();
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "generation": self.tables.load().generation(),
            "workers": workers,
        })
    }

    fn stats(&self) -> Value {
        let reports = self.live.workers();
        let mut total = Stats::default();
        let workers: Vec<Value> = reports
            .iter()
            .enumerate()
            .map(|(w, r)| {
                total.add(&r.stats);
                let c = &r.counters;
                json!({
                    "worker": w,
                    "rx": c.rx_packets,
                    "tx": c.tx_packets,
                    "handed_in": c.handed_in,
                    "tx_ring_full": c.tx_ring_full,
                    "idle_passes": c.idle_passes,
                    "worker_panics": c.panics,
                    "sessions": r.sessions,
                    "umem": { "chunks": r.umem.all, "free": r.umem.free, "lent": r.umem.lent },
                })
            })
            .collect();
        let named = |pairs: &mut dyn Iterator<Item = (&'static str, u64)>| -> Map<String, Value> {
            pairs.map(|(k, v)| (k.to_string(), v.into())).collect()
        };
        let mut ports: BTreeMap<&str, PortCounters> = BTreeMap::new();
        let mut tenants: BTreeMap<&str, TenantCounters> = BTreeMap::new();
        for r in &reports {
            for (name, counters) in &r.ports {
                ports.entry(name).or_default().add(counters);
            }
            for (name, counters) in &r.tenants {
                tenants.entry(name).or_default().add(counters);
            }
        }
        let ports: Map<String, Value> = ports
            .into_iter()
            .map(|(name, c)| {
                let counts = json!({ "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes,
                                     "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes });
                (name.to_string(), counts)
            })
            .collect();
        let tenants: Map<String, Value> = tenants
            .into_iter()
            .map(|(name, c)| {
                let counts = json!({ "rx": c.rx, "tx": c.tx, "dropped": c.dropped });
                (name.to_string(), counts)
            })
            .collect();
        let mut stats = json!({
            "workers": workers,
            "ports": ports,
            "tenants": tenants,
            "drops": named(&mut total.nonzero_drops()),
            "events": named(&mut total.nonzero_events()),
        });
        if let Some(Ok(counters)) = self.xdp.as_ref().map(|x| x.read()) {
            let nonzero = counters.into_iter().filter(|(_, n)| *n > 0);
            let named_xdp = nonzero.map(|(d, n)| (d.name().to_string(), n.into()));
            stats["xdp"] = Value::Object(named_xdp.collect());
        }
        stats
    }

    /// One section of the running state, optionally one tenant's entries.
    fn dump(&mut self, request: &Map<String, Value>) -> Result<Value, ApiError> {
        let state = &self.state;
        let json = self
            .json
            .get_or_insert_with(|| serde_json::to_value(state).expect("the state serializes"));
        let Some(table) = optional_str(request, "table")? else {
            return Ok(json.clone());
        };
        let Some(section) = json.get(table) else {
            let known: Vec<&str> = json
                .as_object()
                .expect("an object")
                .keys()
                .map(String::as_str)
                .collect();
            return Err(ApiError::bad_field(
                "table",
                format!("unknown table {table:?} (one of: {})", known.join(", ")),
            ));
        };
        let Some(tenant) = optional_str(request, "tenant")? else {
            return Ok(section.clone());
        };
        let Value::Array(rows) = section else {
            return Err(ApiError::bad_field(
                "tenant",
                format!("table {table:?} has no tenant column"),
            ));
        };
        let key = if table == "tenants" { "name" } else { "tenant" };
        Ok(rows
            .iter()
            .filter(|row| row.get(key).and_then(Value::as_str) == Some(tenant))
            .cloned()
            .collect())
    }
}

impl Handler for DaemonOps {
    fn handle(&mut self, op: &str, request: &Map<String, Value>) -> Result<Value, ApiError> {
        match op {
            "version" => Ok(json!({ "version": env!("CARGO_PKG_VERSION"), "protocol": PROTOCOL })),
            "health" => Ok(self.health()),
            "stats" => Ok(self.stats()),
            "dump" => self.dump(request),
            "apply" => self.apply(request),
            "commit" => self.commit(request),
            "trace" => crate::trace::trace(&self.tables.load(), request),
            "schema" => Ok(xvr_control::schema::schema()),
            "sessions" => self.sessions(request),
            _ => Err(ApiError::bad_field(
                "op",
                format!("unknown op {op:?} (one of: {})", OPS.join(", ")),
            )),
        }
    }
}

/// (tenant, prefix) -> where the route is in `State::routes`. FxHash: the
/// keys come from the controller, which is trusted (commits are
/// root-only), and SipHash was the largest cost of a commit of routes.
type RouteIndex = FxHashMap<(String, Ipv4Net), usize>;

fn index_routes(routes: &[RouteConfig]) -> RouteIndex {
    routes
        .iter()
        .enumerate()
        .map(|(at, r)| ((r.tenant.clone(), r.prefix), at))
        .collect()
}

/// One change of a commit that writes routes only: its action and entry.
type RouteWrite<'a> = (change::Action, &'a Value);

/// The changes of `changes` if it is a list of well-formed changes to the
/// routes table (exactly `action`, `table` and `entry`), read in place;
/// anything else is left to the general path, which names what is wrong.
fn only_routes(changes: &Value) -> Option<Vec<RouteWrite<'_>>> {
    let list = changes.as_array().filter(|l| !l.is_empty())?;
    list.iter()
        .map(|change| {
            let change = change.as_object().filter(|c| c.len() == 3)?;
            if change.get("table")? != "routes" {
                return None;
            }
            let action = change::Action::deserialize(change.get("action")?).ok()?;
            Some((action, change.get("entry")?))
        })
        .collect()
}

/// A route's key fields, all that a `del` needs.
#[derive(Deserialize)]
struct RouteKey {
    tenant: String,
    prefix: Ipv4Net,
}

/// A route a commit touches: its key, what it is after the commit (None:
/// deleted), and the last change that set it.
type Planned = ((String, Ipv4Net), Option<RouteConfig>, usize);

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
    let mut touched: FxHashMap<(String, Ipv4Net), usize> = FxHashMap::default();
    let (mut bad_request, mut invalid) = (Vec::new(), Vec::new());
    for (i, &(action, entry)) in changes.iter().enumerate() {
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
            Some(&t) => after[t].1.is_some(),
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
        match touched.get(&key) {
            Some(&t) => after[t] = (key, route, i),
            None => {
                touched.insert(key.clone(), after.len());
                after.push((key, route, i));
            }
        }
    }
    for (_, route, i) in &after {
        for (field, message) in route.iter().flat_map(|r| state.route_problems(r)) {
            invalid.push(format!("changes[{i}].entry.{field}: {message}"));
        }
    }
    if !bad_request.is_empty() {
        return Err(ApiError::new("bad_request", bad_request.join("; ")));
    }
    if !invalid.is_empty() {
        return Err(ApiError::new("invalid", invalid.join("; ")));
    }
    Ok(after)
}

/// Whether a new state brings its own routes or keeps the running ones
/// (it was built without them).
enum Routes {
    Replaced,
    Kept,
}

fn dry_run(request: &Map<String, Value>) -> Result<bool, ApiError> {
    Ok(optional_bool(request, "dry_run")?.unwrap_or(false))
}
