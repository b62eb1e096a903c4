//! The reads: `health`, `stats`, `dump` and `sessions`, built from copies
//! (the state, the workers' last reports), never by reaching into a
//! running worker; `sessions` asks the workers through their mailboxes.
use super::DaemonOps;
use crate::mailbox::Totals;
use serde_json::{json, Map, Value};
use std::time::Instant;
use xvr_control::server::{optional_bool, optional_str, optional_u64, ApiError, ErrorCode};
use xvr_dataplane::conntrack::SessionFilter;
use xvr_dataplane::service::dns::DnsCounters;
use xvr_dataplane::service::{DhcpCounters, ServiceCounters};
use xvr_dataplane::table::TenantId;

/// Sessions listed per worker at most (`limit` defaults to 100).
const MAX_LISTED: u64 = 10_000;

impl DaemonOps {
    /// Connection-tracking sessions, filtered by `tenant`, `address`,
    /// `port`, `protocol`; `limit` listed per worker; `flush` removes them.
    pub(super) fn sessions(&mut self, request: &Map<String, Value>) -> Result<Value, ApiError> {
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
            .map_err(|e| ApiError::new(ErrorCode::Unavailable, e))?;
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

    pub(super) fn health(&self) -> Value {
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
                    "alive": r.alive(),
                    "last_report_ms": age.map(|a| a.as_millis() as u64),
                    "worker_panics": r.counters.panics,
                    "worker_restarts": r.counters.restarts,
                })
            })
            .collect();
        json!({
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "generation": self.tables.load().generation(),
            "workers": workers,
        })
    }

    pub(super) fn stats(&self) -> Value {
        let reports = self.live.workers();
        let workers: Vec<Value> = reports
            .iter()
            .enumerate()
            .map(|(w, r)| {
                let c = &r.counters;
                json!({
                    "worker": w,
                    "rx": c.rx_packets,
                    "tx": c.tx_packets,
                    "handed_in": c.handed_in,
                    "tx_ring_full": c.tx_ring_full,
                    "idle_passes": c.idle_passes,
                    "worker_panics": c.panics,
                    "worker_restarts": c.restarts,
                    "sessions": r.sessions,
                    "umem": { "chunks": r.umem.all, "free": r.umem.free, "lent": r.umem.lent },
                })
            })
            .collect();
        let named = |pairs: &mut dyn Iterator<Item = (&'static str, u64)>| -> Map<String, Value> {
            pairs.map(|(k, v)| (k.to_string(), v.into())).collect()
        };
        let Totals {
            stats: total,
            ports,
            tenants,
        } = self.live.totals();
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
        if let Some(services) = &self.services {
            let counters = services.lock().expect("service counters").clone();
            stats["services"] = self.service_stats(&counters);
        }
        if let Some(sync) = &self.fast_path {
            if let Some(n) = sync.lock().expect("fast path").offloaded_flows() {
                stats["offloaded_flows"] = n.into();
            }
        }
        stats
    }

    /// The services' counters: DHCP's and DNS's, in total and by tenant
    /// name.
    fn service_stats(&self, counters: &ServiceCounters) -> Value {
        let dhcp = |c: &DhcpCounters| {
            json!({ "offers": c.offers, "acks": c.acks, "naks": c.naks, "noted": c.noted,
                    "malformed": c.malformed, "not_our_client": c.not_our_client,
                    "ignored": c.ignored })
        };
        let dns = |c: &DnsCounters| {
            json!({ "authoritative": c.authoritative, "from_cache": c.from_cache,
                    "forwarded": c.forwarded, "upstream_answers": c.upstream_answers,
                    "refused": c.refused, "servfail": c.servfail, "malformed": c.malformed,
                    "unmatched": c.unmatched, "tcp_retries": c.tcp_retries,
                    "tcp_answers": c.tcp_answers })
        };
        let tables = self.tables.load();
        let by_name = |id: &TenantId| Some(tables.tenant(*id)?.name.clone());
        let dhcp_by_tenant: Map<String, Value> = counters
            .dhcp_by_tenant
            .iter()
            .filter_map(|(id, c)| Some((by_name(id)?, dhcp(c))))
            .collect();
        let dns_by_tenant: Map<String, Value> = counters
            .dns_by_tenant
            .iter()
            .filter_map(|(id, c)| Some((by_name(id)?, dns(c))))
            .collect();
        let rate_limited: Map<String, Value> = counters
            .rate_limited_by_tenant
            .iter()
            .filter_map(|(id, n)| Some((by_name(id)?, (*n).into())))
            .collect();
        json!({ "dhcp": dhcp(&counters.dhcp), "dhcp_by_tenant": dhcp_by_tenant,
                "rate_limited_by_tenant": rate_limited,
                "dns": dns(&counters.dns), "dns_by_tenant": dns_by_tenant,
                "metadata": { "answered": counters.metadata.answered,
                              "not_found": counters.metadata.not_found,
                              "dropped": counters.metadata.dropped,
                              "stacks_evicted": counters.metadata.stacks_evicted },
                "panics": counters.panics })
    }

    /// One section of the running state, optionally one tenant's entries.
    pub(super) fn dump(&mut self, request: &Map<String, Value>) -> Result<Value, ApiError> {
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
