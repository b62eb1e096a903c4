//! What xvrd answers on its control socket (`xvr_control::server` does
//! the framing): `version`, `health`, `stats`, `dump`, `sessions`
//! (`reads`), and the writes
//! `apply` (a whole desired state) and `commit` (a list of changes). A
//! write is validated against the whole resulting state and built into
//! new tables, which the workers pick up at their next pass (an atomic
//! swap): all or nothing, and no batch sees a mix. Reads are built from
//! copies (the state, the workers' last reports), never by reaching into
//! a running worker.
use crate::fast_path::FastPathSync;
use crate::live_ports::LivePorts;
use crate::mailbox::Live;
use crate::state_store::StateStore;
use arc_swap::ArcSwap;
use route_commit::{only_routes, RouteIndex};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use xvr_control::change::{self, Change};
use xvr_control::server::{optional_bool, ApiError, ErrorCode, Handler};
use xvr_control::{State, TenantIds};
use xvr_dataplane::service::ServiceCounters;
use xvr_dataplane::Tables;
use xvr_ebpf::DecisionCounters;

mod beside_routes;
mod reads;
mod route_commit;

/// The protocol's version: bumped when an answer changes shape.
pub const PROTOCOL: u32 = 1;
/// The ops, for errors and `xvrctl`.
pub const OPS: &[&str] = &[
    "version", "health", "stats", "dump", "apply", "commit", "trace", "schema", "sessions",
];
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
    /// What the router's services answered, for `stats`.
    services: Option<Arc<Mutex<ServiceCounters>>>,
    /// The running data path's interfaces and steering maps, changed with
    /// the ports and public addresses (None: no data path to follow).
    ports: Option<LivePorts>,
    /// Each tenant's id, kept across commits (see `TenantIds`).
    ids: TenantIds,
    /// The host's networks that tenants' internet traffic may not reach
    /// (those the starting tables guard, read once by xvrd).
    protected: Vec<ipnet::Ipv4Net>,
    /// Where acknowledged writes are kept (None: nowhere, as in tests of
    /// the ops alone).
    store: Option<StateStore>,
}

/// What a write leaves in the state store.
pub(super) enum Write<'a> {
    /// The whole state (`apply`).
    Whole,
    /// The changes of a `commit`, as its request gave them.
    Changes(&'a Value),
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
            services: None,
            ports: None,
            store: None,
        }
    }

    /// Keeps every accepted write in `store` before answering it.
    pub fn with_store(mut self, store: StateStore) -> DaemonOps {
        self.store = Some(store);
        self
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

    /// `stats` also reports what the router's services answered.
    pub fn with_service_counters(mut self, counters: Arc<Mutex<ServiceCounters>>) -> DaemonOps {
        self.services = Some(counters);
        self
    }

    /// Keeps the XDP fast path's maps in step with every change.
    pub fn with_fast_path(mut self, fast_path: Arc<Mutex<FastPathSync>>) -> DaemonOps {
        self.fast_path = Some(fast_path);
        self
    }

    /// Makes `new` the running state (unless `dry_run`); answers what
    /// changed and the new generation.
    fn change_to(&mut self, new: State, dry_run: bool, write: Write) -> Result<Value, ApiError> {
        let built = self.build(&new)?;
        let changes = change::diff(&self.state, &new);
        self.make_current(new, built, changes, dry_run, Routes::Replaced, write)
    }

    /// Validates and builds `state`, its tenants keeping their ids (new
    /// ones get fresh ids); every problem in one `invalid` error.
    fn build(&self, state: &State) -> Result<(Tables, TenantIds), ApiError> {
        let invalid = |e: xvr_control::ConfigErrors| {
            ApiError::new(
                ErrorCode::Invalid,
                e.to_string().trim_end().replace('\n', "; "),
            )
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
        write: Write,
    ) -> Result<Value, ApiError> {
        if new.conntrack != self.state.conntrack {
            return Err(ApiError::bad_field(
                "conntrack",
                "changing session limits needs an xvrd restart (each worker's table is sized once)",
            ));
        }
        let plan = match &self.ports {
            Some(ports) => Some(ports.plan(&self.tables.load(), &tables).map_err(
                |(field, e)| ApiError::new(ErrorCode::Invalid, format!("{field}: {e}")),
            )?),
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
        self.persist(&write, Some(&new), generation)?;
        if let (Some(ports), Some(plan)) = (&mut self.ports, &plan) {
            if let Err(e) = ports.prepare(plan) {
                self.unpersist();
                return Err(ApiError::new(ErrorCode::Unavailable, format!("ports: {e}")));
            }
        }
        let tables = Arc::new(tables);
        if let Err(e) = self.retire_offloaded_flows(generation) {
            answer["fast_path_error"] = e.into();
        }
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

    /// Flows offloaded under the running tables stop applying, before
    /// tables of `generation` take over (the workers offer them again
    /// under those).
    pub(super) fn retire_offloaded_flows(&self, generation: u32) -> Result<(), String> {
        match &self.fast_path {
            Some(sync) => sync
                .lock()
                .expect("fast path")
                .follow_generation(generation),
            None => Ok(()),
        }
    }

    /// Keeps a write in the store, durably, before it is made: the
    /// whole `new` state, or the commit's changes, at `generation`.
    pub(super) fn persist(
        &mut self,
        write: &Write,
        new: Option<&State>,
        generation: u32,
    ) -> Result<(), ApiError> {
        let running_generation = self.tables.load().generation();
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        let saved = match write {
            Write::Whole => store.save(new.unwrap_or(&self.state), generation),
            Write::Changes(changes) => {
                store.record(changes, generation, &self.state, running_generation)
            }
        };
        saved.map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "saving the state in {}: {e}; nothing changed",
                    store.dir().display()
                ),
            )
        })
    }

    /// Puts the running state back in the store after a persisted write
    /// failed to be made.
    fn unpersist(&mut self) {
        let generation = self.tables.load().generation();
        if let Some(store) = &mut self.store {
            if let Err(e) = store.save(&self.state, generation) {
                tracing::error!("restoring the saved state after a failed write: {e}");
            }
        }
    }

    fn apply(&mut self, request: &Map<String, Value>) -> Result<Value, ApiError> {
        let state = request
            .get("state")
            .ok_or_else(|| ApiError::bad_field("state", "missing"))?;
        let state = State::from_value(state).map_err(|errors| {
            let first = errors.0.first();
            let (field, why) = first.map_or(("", ""), |e| (e.field.as_str(), e.message.as_str()));
            match field {
                "" => ApiError::bad_field("state", why),
                _ => ApiError::bad_field(&format!("state.{field}"), why),
            }
        })?;
        // An empty state by mistake would take every VM off the network.
        let remove_all = optional_bool(request, "remove_all")?.unwrap_or(false);
        let (old, new) = (&self.state, &state);
        let emptied = [
            ("port", new.ports.is_empty() && !old.ports.is_empty()),
            ("tenant", new.tenants.is_empty() && !old.tenants.is_empty()),
        ];
        for (what, emptied) in emptied {
            if emptied && !remove_all {
                return Err(ApiError::bad_field(
                    "state",
                    format!("removes every {what} xvrd runs; send \"remove_all\": true to mean it"),
                ));
            }
        }
        self.change_to(state, dry_run(request)?, Write::Whole)
    }

    fn commit(&mut self, request: &Map<String, Value>) -> Result<Value, ApiError> {
        let changes = request
            .get("changes")
            .ok_or_else(|| ApiError::bad_field("changes", "missing"))?;
        let dry_run = dry_run(request)?;
        let raw = changes;
        if let Some(routes) = only_routes(changes).filter(|_| !dry_run) {
            return self.commit_routes(&routes, raw);
        }
        let changes =
            Vec::<Change>::deserialize(changes).map_err(|e| ApiError::bad_field("changes", e))?;
        if let Some(answer) = self.commit_beside_routes(&changes, dry_run, raw) {
            return answer;
        }
        let state = change::apply_changes(&self.state, &changes)
            .map_err(|errors| ApiError::new(ErrorCode::BadRequest, errors.join("; ")))?;
        self.change_to(state, dry_run, Write::Changes(raw))
    }
}

impl Handler for DaemonOps {
    fn handle(&mut self, op: &str, request: &Map<String, Value>) -> Result<Value, ApiError> {
        let answer = self.answer(op, request);
        match &answer {
            Err(e) => tracing::warn!(op, code = e.code.name(), "refused {op}: {}", e.message),
            Ok(done) if matches!(op, "apply" | "commit") && done["dry_run"] != true => {
                let generation = done["generation"].as_u64().unwrap_or_default();
                let changes = summary(&done["changes"]);
                tracing::info!(
                    op,
                    generation,
                    changes,
                    "{op} made generation {generation}: {changes}"
                );
            }
            Ok(_) => {}
        }
        answer
    }
}

impl DaemonOps {
    fn answer(&mut self, op: &str, request: &Map<String, Value>) -> Result<Value, ApiError> {
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

/// What a write changed, in a line: per table, how many entries were
/// added, removed and changed (a route commit may hold thousands).
fn summary(changes: &Value) -> String {
    let Some(tables) = changes.as_object() else {
        return String::new();
    };
    let count = |v: &Value, key: &str| v[key].as_array().map_or(0, Vec::len);
    let parts: Vec<String> = tables
        .iter()
        .map(|(table, v)| {
            let (a, r, c) = (count(v, "added"), count(v, "removed"), count(v, "changed"));
            format!("{table} +{a} -{r} ~{c}")
        })
        .collect();
    match parts.is_empty() {
        true => "nothing".to_string(),
        false => parts.join(", "),
    }
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
