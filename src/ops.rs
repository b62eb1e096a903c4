//! What xvrd answers on its control socket (`xvr_control::server` does
//! the framing): `version`, `health`, `stats` and `dump`. Every answer is
//! built from a copy (the state, the workers' last reports), never by
//! reaching into a running worker.
use crate::router::Live;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvr_control::server::{ApiError, Handler};
use xvr_control::State;
use xvr_dataplane::Stats;

/// The protocol's version: bumped when an answer changes shape.
pub const PROTOCOL: u32 = 1;
/// The ops, for errors and `xvrctl`.
pub const OPS: &[&str] = &["version", "health", "stats", "dump"];
/// A worker that has not reported for this long is not alive.
const ALIVE_WITHIN: Duration = Duration::from_secs(1);

pub struct DaemonOps {
    state: Value,
    generation: u32,
    live: Arc<Live>,
    started: Instant,
}

impl DaemonOps {
    pub fn new(state: &State, generation: u32, live: Arc<Live>) -> DaemonOps {
        DaemonOps {
            state: serde_json::to_value(state).expect("the state serializes"),
            generation,
            live,
            started: Instant::now(),
        }
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
                })
            })
            .collect();
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "generation": self.generation,
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
                    "sessions": r.sessions,
                })
            })
            .collect();
        let named = |pairs: &mut dyn Iterator<Item = (&'static str, u64)>| -> Map<String, Value> {
            pairs.map(|(k, v)| (k.to_string(), v.into())).collect()
        };
        json!({
            "workers": workers,
            "drops": named(&mut total.nonzero_drops()),
            "events": named(&mut total.nonzero_events()),
        })
    }

    /// One section of the running state, optionally one tenant's entries.
    fn dump(&self, request: &Map<String, Value>) -> Result<Value, ApiError> {
        let tables: Vec<&String> = self.state.as_object().expect("an object").keys().collect();
        let table = match request.get("table") {
            None => return Ok(self.state.clone()),
            Some(Value::String(t)) => t,
            Some(other) => {
                return Err(ApiError::bad_field(
                    "table",
                    format!("{other} is not a string"),
                ))
            }
        };
        let Some(section) = self.state.get(table) else {
            let known: Vec<&str> = tables.iter().map(|t| t.as_str()).collect();
            return Err(ApiError::bad_field(
                "table",
                format!("unknown table {table:?} (one of: {})", known.join(", ")),
            ));
        };
        let tenant = match request.get("tenant") {
            None => return Ok(section.clone()),
            Some(Value::String(t)) => t,
            Some(other) => {
                return Err(ApiError::bad_field(
                    "tenant",
                    format!("{other} is not a string"),
                ))
            }
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
            .filter(|row| row.get(key).and_then(Value::as_str) == Some(tenant.as_str()))
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
            _ => Err(ApiError::bad_field(
                "op",
                format!("unknown op {op:?} (one of: {})", OPS.join(", ")),
            )),
        }
    }
}
