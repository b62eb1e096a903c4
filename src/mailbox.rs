//! The workers' mailboxes: what each worker last reported (counters,
//! sessions, UMEM, per port and tenant) for the control socket, and the
//! requests the control plane leaves for a worker to serve between
//! batches (list or flush sessions, bind or retire a port's sockets).
//! A worker only ever `try_lock`s its own slots, so a reader never stalls
//! it; a report skipped is replaced by the next.
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::Instant;
use xvr_dataplane::conntrack::{Session, SessionFilter};
use xvr_dataplane::counters::{PortCounters, TenantCounters, UmemChunks, WorkerCounters};
use xvr_dataplane::io::xsk_ports::XskPorts;
use xvr_dataplane::worker::Worker;
use xvr_dataplane::Stats;

/// How often a worker's report carries its per-port and per-tenant
/// counters.
const DETAIL_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// What each worker last reported while running (for the control
/// socket). Workers publish with `try_lock`, so a reader never stalls
/// them; a report skipped is replaced by the next.
#[derive(Default)]
pub struct Live {
    workers: Vec<Mutex<LiveWorker>>,
    /// Per worker: a sessions request for it to answer at its next report.
    queries: Vec<Mutex<Query<SessionRequest, WorkerSessions>>>,
    /// Per worker: sockets to bind or retire, at its next report.
    port_queries: Vec<Mutex<Query<PortRequest, PortAnswer>>>,
}

/// Which sessions, how many listed at most, and whether to flush them.
pub type SessionRequest = (SessionFilter, usize, bool);

/// A request to one worker and its answer, both passed at the worker's
/// next report (never on its per-packet path).
pub struct Query<Q, A> {
    request: Option<Q>,
    answer: Option<A>,
}

impl<Q, A> Default for Query<Q, A> {
    fn default() -> Self {
        Query {
            request: None,
            answer: None,
        }
    }
}

/// What a worker does with its sockets when a port comes or goes.
#[derive(Debug, Clone)]
pub enum PortRequest {
    /// Bind a socket to each of these queues of the interface; frames of
    /// it from the segmenter carry VLAN ID `tag` (0: none).
    Bind {
        interface: String,
        queues: Vec<u32>,
        tag: u16,
    },
    /// Retire the interface's sockets (nothing steers to them any more).
    Unbind { interface: String },
}

/// (queue, socket descriptor) of each socket bound, or what failed.
pub type PortAnswer = std::io::Result<Vec<(u32, RawFd)>>;

/// One worker's answer: the first sessions selected, how many matched,
/// and the worker's clock (for time left).
pub struct WorkerSessions {
    pub sessions: Vec<Session>,
    pub matched: usize,
    pub now: u32,
}

#[derive(Default, Clone)]
pub struct LiveWorker {
    pub core: Option<usize>,
    pub counters: WorkerCounters,
    pub sessions: usize,
    pub stats: Stats,
    /// When it last reported (None: not started).
    pub seen: Option<Instant>,
    pub umem: UmemChunks,
    /// Per interface and per tenant, by name (refreshed every
    /// `DETAIL_EVERY` at most: they are copied out with their names).
    pub ports: Vec<(String, PortCounters)>,
    pub tenants: Vec<(String, TenantCounters)>,
}

/// A worker that has not reported for this long is not alive.
pub const ALIVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

impl LiveWorker {
    /// It reported within `ALIVE_WITHIN`.
    pub fn alive(&self) -> bool {
        self.seen.is_some_and(|seen| seen.elapsed() < ALIVE_WITHIN)
    }
}

/// Every worker's last report summed (see `Live::totals`).
#[derive(Default)]
pub struct Totals {
    pub stats: Stats,
    pub ports: std::collections::BTreeMap<String, PortCounters>,
    pub tenants: std::collections::BTreeMap<String, TenantCounters>,
}

impl Live {
    /// Room for `workers` reports, none made yet.
    pub fn new(workers: usize) -> Live {
        Live {
            workers: (0..workers).map(|_| Mutex::default()).collect(),
            queries: (0..workers).map(|_| Mutex::default()).collect(),
            port_queries: (0..workers).map(|_| Mutex::default()).collect(),
        }
    }

    /// Workers that have reported at least once.
    fn running(&self) -> Vec<usize> {
        (0..self.workers.len())
            .filter(|&w| {
                self.workers[w]
                    .lock()
                    .map(|r| r.seen.is_some())
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Sends each worker of `workers` its request and waits (2 s at most)
    /// for every answer, in the same order.
    fn ask<Q, A>(
        slots: &[Mutex<Query<Q, A>>],
        workers: &[usize],
        mut request: impl FnMut(usize) -> Q,
    ) -> Result<Vec<A>, String> {
        for &w in workers {
            let mut q = slots[w].lock().map_err(|_| "worker query lock")?;
            q.answer = None;
            q.request = Some(request(w));
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        let mut answers = Vec::new();
        for &w in workers {
            loop {
                let answer = slots[w].lock().ok().and_then(|mut q| q.answer.take());
                if let Some(answer) = answer {
                    answers.push(answer);
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("worker {w} did not answer within 2 s"));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Ok(answers)
    }

    /// Asks every worker to bind or retire sockets (`request(w)` for
    /// worker w); every worker must be running.
    pub fn ports(
        &self,
        request: impl FnMut(usize) -> PortRequest,
    ) -> Result<Vec<PortAnswer>, String> {
        let all: Vec<usize> = (0..self.workers.len()).collect();
        if self.running().len() != all.len() {
            return Err("not every worker is running".into());
        }
        Self::ask(&self.port_queries, &all, request)
    }

    /// Asks every running worker for the sessions `filter` selects (the
    /// first `limit` each; with `flush`, removed) and waits for their
    /// answers. Workers answer at their next report (a few ms).
    pub fn sessions(
        &self,
        filter: SessionFilter,
        limit: usize,
        flush: bool,
    ) -> Result<Vec<WorkerSessions>, String> {
        Self::ask(&self.queries, &self.running(), |_| (filter, limit, flush))
    }

    /// Whether every worker is alive (see `LiveWorker::alive`).
    pub fn all_alive(&self) -> bool {
        self.workers().iter().all(LiveWorker::alive)
    }

    /// The workers' last reports summed: drops and events, and frames
    /// per port and per tenant, by name.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for r in self.workers() {
            totals.stats.add(&r.stats);
            for (name, counters) in &r.ports {
                totals.ports.entry(name.clone()).or_default().add(counters);
            }
            for (name, counters) in &r.tenants {
                totals
                    .tenants
                    .entry(name.clone())
                    .or_default()
                    .add(counters);
            }
        }
        totals
    }

    /// A copy of every worker's last report.
    pub fn workers(&self) -> Vec<LiveWorker> {
        self.workers
            .iter()
            .map(|w| w.lock().map(|w| w.clone()).unwrap_or_default())
            .collect()
    }
}

/// Answers the request waiting in `slot`, if any and if the lock is free
/// (the worker never waits for it).
fn serve<Q, A>(slot: &Mutex<Query<Q, A>>, answer: impl FnOnce(Q) -> A) {
    if let Ok(mut q) = slot.try_lock() {
        if let Some(request) = q.request.take() {
            q.answer = Some(answer(request));
        }
    }
}

/// Worker `w`'s end of its mailboxes, for its reporting hook.
pub(crate) struct WorkerMailbox<'a> {
    live: &'a Mutex<LiveWorker>,
    sessions: &'a Mutex<Query<SessionRequest, WorkerSessions>>,
    ports: &'a Mutex<Query<PortRequest, PortAnswer>>,
    /// When the per-port and per-tenant counters were last copied out.
    detailed: Option<Instant>,
}

impl Live {
    /// Worker `w`'s end of its mailboxes (`None` past the workers).
    pub(crate) fn mailbox(&self, w: usize) -> Option<WorkerMailbox<'_>> {
        Some(WorkerMailbox {
            live: self.workers.get(w)?,
            sessions: self.queries.get(w)?,
            ports: self.port_queries.get(w)?,
            detailed: None,
        })
    }
}

impl WorkerMailbox<'_> {
    /// Serves what is asked of the worker and publishes its report;
    /// called by the worker between batches, never blocking it.
    pub(crate) fn serve(&mut self, worker: &mut Worker<XskPorts>, core: Option<usize>) {
        serve(self.ports, |request| change_ports(&mut worker.io, request));
        serve(self.sessions, |(filter, limit, flush)| {
            let ct = &mut worker.pipeline.conntrack;
            let (sessions, matched) = ct.select(&filter, limit, flush);
            let now = worker.pipeline.now;
            WorkerSessions {
                sessions,
                matched,
                now,
            }
        });
        if let Ok(mut slot) = self.live.try_lock() {
            slot.core = core;
            slot.counters.clone_from(&worker.counters);
            slot.sessions = worker.pipeline.conntrack.len();
            slot.stats.clone_from(&worker.pipeline.stats);
            slot.seen = Some(Instant::now());
            slot.umem = worker.io.chunks();
            if self.detailed.is_none_or(|t| t.elapsed() >= DETAIL_EVERY) {
                self.detailed = Some(Instant::now());
                slot.ports = worker.io.port_counters();
                slot.tenants = worker.tenants.totals();
            }
        }
    }
}

/// Serves a port request in worker thread's own I/O.
fn change_ports(io: &mut XskPorts, request: PortRequest) -> PortAnswer {
    match request {
        PortRequest::Bind {
            interface,
            queues,
            tag,
        } => {
            let bound = io.bind_port(&interface, &queues)?;
            io.set_tag(&interface, tag);
            Ok(bound)
        }
        PortRequest::Unbind { interface } => {
            let lost = io.unbind_port(&interface);
            if lost > 0 {
                tracing::warn!("{interface}: {lost} UMEM chunk(s) not recovered");
            }
            Ok(Vec::new())
        }
    }
}
