//! `--metrics ADDR`: the Prometheus text format (exposition format
//! 0.0.4) over HTTP, at `/metrics`, served by `tiny_http` on its own
//! thread. Each scrape is built from copies (the workers' last reports
//! and the steering program's per-CPU counters), never by reaching into
//! a running worker.
//!
//! The text is written here rather than through `prometheus-client`:
//! every number is a snapshot taken per scrape, where that crate's
//! registry wants metric objects updated in place; a writer of a few
//! lines, checked by `promtool check metrics` in `tests/metrics.rs`, is
//! the simpler fit.
use crate::mailbox::{Live, Totals};
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xvr_dataplane::counters::{PortCounters, TenantCounters};
use xvr_dataplane::{DropReason, Event};
use xvr_ebpf::DecisionCounters;

/// Tenant-labelled series beyond this many tenants go under
/// `tenant="_other"` (a cloud has thousands; a scrape should not).
pub const DEFAULT_MAX_TENANTS: usize = 100;

/// What a scrape reads.
pub struct Metrics {
    pub live: Arc<Live>,
    pub xdp: Option<Arc<DecisionCounters>>,
    pub max_tenants: usize,
}

/// The text of one metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: u64) {
        let _ = write!(self.out, "{}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family<'a>(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out, name }
}

impl Metrics {
    /// One scrape.
    pub fn render(&self) -> String {
        let reports = self.live.workers();
        let mut out = String::with_capacity(16 * 1024);
        let mut f = family(&mut out, "xvr_build_info", "gauge", "xvrd's version.");
        f.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);

        type Field = fn(&crate::mailbox::LiveWorker) -> u64;
        let per_worker: [(&'static str, &str, &str, Field); 10] = [
            (
                "xvr_worker_rx_packets_total",
                "counter",
                "Frames a worker received.",
                |r| r.counters.rx_packets,
            ),
            (
                "xvr_worker_tx_packets_total",
                "counter",
                "Frames a worker sent.",
                |r| r.counters.tx_packets,
            ),
            (
                "xvr_worker_handed_in_total",
                "counter",
                "Frames handed to a worker by another.",
                |r| r.counters.handed_in,
            ),
            (
                "xvr_worker_tx_ring_full_total",
                "counter",
                "Sends that found the TX ring full.",
                |r| r.counters.tx_ring_full,
            ),
            (
                "xvr_worker_panics_total",
                "counter",
                "Batches a worker contained a panic in.",
                |r| r.counters.panics,
            ),
            (
                "xvr_worker_restarts_total",
                "counter",
                "Times a worker was started again with new sockets after a panic outside a batch.",
                |r| r.counters.restarts,
            ),
            (
                "xvr_worker_sessions",
                "gauge",
                "Connection-tracking sessions a worker holds.",
                |r| r.sessions as u64,
            ),
            (
                "xvr_worker_umem_chunks",
                "gauge",
                "UMEM chunks of a worker.",
                |r| r.umem.all as u64,
            ),
            (
                "xvr_worker_umem_free_chunks",
                "gauge",
                "UMEM chunks free for receiving.",
                |r| r.umem.free as u64,
            ),
            (
                "xvr_worker_up",
                "gauge",
                "1 if the worker reported within a second.",
                |r| u64::from(r.alive()),
            ),
        ];
        for (name, kind, help, field) in per_worker {
            let mut f = family(&mut out, name, kind, help);
            for (w, r) in reports.iter().enumerate() {
                f.sample(&[("worker", &w.to_string())], field(r));
            }
        }

        let Totals {
            stats: total,
            ports,
            tenants,
        } = self.live.totals();
        type PortField = fn(&PortCounters) -> u64;
        let per_port: [(&'static str, &str, PortField); 4] = [
            (
                "xvr_port_rx_packets_total",
                "Frames received on a port.",
                |c| c.rx_packets,
            ),
            (
                "xvr_port_rx_bytes_total",
                "Bytes received on a port.",
                |c| c.rx_bytes,
            ),
            (
                "xvr_port_tx_packets_total",
                "Frames sent out of a port.",
                |c| c.tx_packets,
            ),
            (
                "xvr_port_tx_bytes_total",
                "Bytes sent out of a port.",
                |c| c.tx_bytes,
            ),
        ];
        for (name, help, field) in per_port {
            let mut f = family(&mut out, name, "counter", help);
            for (port, c) in &ports {
                f.sample(&[("port", port)], field(c));
            }
        }

        // The first `max_tenants` by name; the rest summed.
        let mut shown: Vec<(String, TenantCounters)> = Vec::new();
        let mut other = TenantCounters::default();
        for (i, (name, c)) in tenants.into_iter().enumerate() {
            match i < self.max_tenants {
                true => shown.push((name, c)),
                false => other.add(&c),
            }
        }
        if shown.len() == self.max_tenants && other != TenantCounters::default() {
            shown.push(("_other".to_string(), other));
        }
        type TenantField = fn(&TenantCounters) -> u64;
        let per_tenant: [(&'static str, &str, TenantField); 3] = [
            (
                "xvr_tenant_rx_packets_total",
                "Frames classified into a tenant.",
                |c| c.rx,
            ),
            (
                "xvr_tenant_tx_packets_total",
                "Frames of a tenant forwarded.",
                |c| c.tx,
            ),
            (
                "xvr_tenant_dropped_packets_total",
                "Frames of a tenant dropped.",
                |c| c.dropped,
            ),
        ];
        for (name, help, field) in per_tenant {
            let mut f = family(&mut out, name, "counter", help);
            for (tenant, c) in &shown {
                f.sample(&[("tenant", tenant)], field(c));
            }
        }

        let mut f = family(
            &mut out,
            "xvr_drops_total",
            "counter",
            "Frames dropped, by reason.",
        );
        for reason in DropReason::ALL {
            f.sample(&[("reason", reason.name())], total.drops_of(*reason));
        }
        let mut f = family(
            &mut out,
            "xvr_events_total",
            "counter",
            "Pipeline events, by name.",
        );
        for event in Event::ALL {
            f.sample(&[("event", event.name())], total.events_of(*event));
        }
        if let Some(Ok(decisions)) = self.xdp.as_ref().map(|x| x.read()) {
            let help = "The steering program's decisions (XDP and tc), by name.";
            let mut f = family(&mut out, "xvr_steering_decisions_total", "counter", help);
            for (decision, n) in decisions {
                f.sample(&[("decision", decision.name())], n);
            }
        }
        out
    }
}

/// Serves `metrics` at `http://ADDR/metrics` until `stop`.
pub fn serve(server: &tiny_http::Server, metrics: &Metrics, stop: &AtomicBool) {
    let text_format = "text/plain; version=0.0.4; charset=utf-8";
    let header =
        tiny_http::Header::from_bytes("Content-Type", text_format).expect("a valid header");
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let response = match (request.method(), request.url()) {
            (tiny_http::Method::Get, "/metrics") => {
                tiny_http::Response::from_string(metrics.render()).with_header(header.clone())
            }
            _ => tiny_http::Response::from_string("try GET /metrics\n").with_status_code(404),
        };
        let _ = request.respond(response);
    }
}

/// Binds the metrics listener.
pub fn bind(addr: SocketAddr) -> Result<tiny_http::Server, String> {
    tiny_http::Server::http(addr).map_err(|e| format!("--metrics {addr}: {e}"))
}
