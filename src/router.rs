//! The live router on one host: the steering program attached to every
//! configured port, and poll-mode workers, each with its own UMEM and one
//! AF_XDP socket per (port, queue) it owns. With N workers, worker w owns
//! queues w, w+N, w+2N... of every port, so each port needs at least N
//! receive queues (`ethtool -L DEV rx N tx N`, or `combined N`). A NAT
//! session belongs to one worker; a frame of it that another worker
//! receives is handed over (`xvr_dataplane::handoff`). With the fast path
//! on, the steering program forwards bridged traffic between VMs itself
//! (`crate::fast_path`), and only the rest reaches the workers.
use crate::affinity::{check_core, pin_to};
use crate::fast_path::FastPathSync;
use crate::flow_offload::BpfFlows;
use crate::live_ports::LivePorts;
use crate::mailbox::Live;
use crate::netdev::{ifindex, interface};
use crate::segmenter::{Segmenter, SEGMENTER};
use crate::session_store::SessionDir;
use crate::split::{queues_of_worker, snat_split};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use xvr_dataplane::conntrack;
use xvr_dataplane::counters::{SocketDrops, WorkerCounters};
use xvr_dataplane::handoff::Handoff;
use xvr_dataplane::io::xsk::Umem;
use xvr_dataplane::io::xsk_ports::XskPorts;
use xvr_dataplane::pipeline::owner::Workers;
use xvr_dataplane::service::{self, ServiceCounters, Services};
use xvr_dataplane::table::PortRole;
use xvr_dataplane::worker::{Idle, TableSource, Worker};
use xvr_dataplane::{Pipeline, Stats, Tables};
use xvr_ebpf::{AttachMode, Steering};

/// Fault injection for tests: worker `.0` panics outside any batch once
/// it has run for `.1` (xvrd takes it from `XVR_FAULT_WORKER_PANIC`).
pub type InjectedPanic = Option<(usize, std::time::Duration)>;

/// Why the router did not start; the messages are what xvrd prints.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("workers: at least 1")]
    NoWorkers,
    #[error("cores: {listed} listed for {workers} workers")]
    Cores { listed: usize, workers: usize },
    /// What the host lacks for this configuration: a core, an interface
    /// or its queues, a source-NAT range to split, the segmenter.
    #[error("{0}")]
    Host(String),
    /// Loading the steering program or filling its maps.
    #[error(transparent)]
    Steering(#[from] xvr_ebpf::Error),
    /// Attaching the steering program to a port.
    #[error("{source}{hint}")]
    Attach {
        source: xvr_ebpf::Error,
        hint: &'static str,
    },
    /// The fast path's maps from the tables.
    #[error("{0}")]
    FastPath(String),
    #[error("handoff: {0}")]
    Handoff(std::io::Error),
    /// The mailboxes of the router's services.
    #[error("services: {0}")]
    Services(std::io::Error),
    /// A worker's UMEM or one of its sockets.
    #[error(transparent)]
    Socket(#[from] std::io::Error),
    /// The session directory or a worker's file in it.
    #[error("{0}")]
    Sessions(String),
}

/// UMEM chunks per worker for its busy ports: full fill, RX and TX
/// rings for a few of them at once.
const UMEM_BUSY_CHUNKS: u32 = 8192;
/// Ports a worker can take on live beyond those it starts with, each
/// with an idle port's fill ring (a UMEM does not grow once made).
const SPARE_PORTS: u32 = 256;

/// A worker's UMEM chunks for `ports` ports: the busy reserve, and an idle
/// fill ring for each port it has or may be given. 200 ports: 22,784
/// chunks (45 MiB); 1,000 ports: 48,384 (95 MiB).
pub fn umem_chunks(ports: usize) -> u32 {
    let ports = u32::try_from(ports).unwrap_or(u32::MAX);
    UMEM_BUSY_CHUNKS + ports.saturating_add(SPARE_PORTS) * xvr_dataplane::io::xsk_ports::FILL_IDLE
}

/// How the router runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: AttachMode,
    pub workers: usize,
    /// Core for each worker, in order; empty: not pinned.
    pub cores: Vec<usize>,
    pub idle: Idle,
    /// Each worker's session table.
    pub conntrack: conntrack::Config,
    /// Replay bridging decisions in XDP where the target interface takes
    /// redirected frames.
    pub fast_path: bool,
    /// Replay them in tc instead, on whole GSO packets: the steering
    /// program is attached in generic mode (which leaves the VMs' and the
    /// underlay's senders their GSO) and a tc program forwards.
    pub fast_path_in_tc: bool,
    /// Workers offload the established flows they routed or translated
    /// to the fast path in XDP (not in tc), which forwards them after.
    pub flow_offload: bool,
    /// Where the workers save their sessions, so that a restarted router
    /// takes them back (`crate::session_store`); None: nowhere.
    pub session_dir: Option<std::path::PathBuf>,
    pub inject_panic: InjectedPanic,
}

impl Options {
    /// Whether the fast path runs in tc (it is on, and asked for there).
    pub fn fast_path_runs_in_tc(&self) -> bool {
        self.fast_path && self.fast_path_in_tc
    }

    /// How the steering program is attached to ports: generic when the
    /// fast path runs in tc (which leaves senders their GSO), else `mode`.
    pub fn port_attach_mode(&self) -> AttachMode {
        match self.fast_path_runs_in_tc() {
            true => AttachMode::Generic,
            false => self.mode,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: AttachMode::Native,
            workers: 1,
            cores: Vec::new(),
            idle: Idle::Sleep,
            conntrack: conntrack::Config::default(),
            fast_path: true,
            fast_path_in_tc: false,
            flow_offload: true,
            session_dir: None,
            inject_panic: None,
        }
    }
}

/// Gives `worker` (number `w` of `workers`) new sockets after a panic left
/// its old ones in an unknown state: the old sockets are closed (their
/// queues reach no one meanwhile), then a fresh UMEM is bound to the same
/// queues of the current tables' ports. A queue just released may be busy
/// for an RCU grace period: retried for a second.
fn rebind(
    worker: &mut Worker<XskPorts>,
    (w, workers): (usize, usize),
    tables: &impl TableSource,
    in_tc: bool,
    steering: &Mutex<Steering>,
) -> Result<(), String> {
    let (plan, chunks) = tables.with_current(|t| {
        let plan = SocketPlan::of(t, workers, in_tc);
        (plan, umem_chunks(t.ports().len() + 1))
    });
    let plan = plan.map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let umem = Umem::new(chunks).map_err(|e| e.to_string())?;
        // The old sockets go first: a queue takes one socket at a time.
        worker.io = XskPorts::new(umem);
        let mut steering = steering
            .lock()
            .map_err(|_| "the steering lock is poisoned")?;
        match plan.bind(&mut worker.io, (w, workers), &mut steering) {
            Ok(()) => break,
            Err(StartError::Socket(e))
                if e.kind() == std::io::ErrorKind::ResourceBusy
                    && std::time::Instant::now() < deadline =>
            {
                drop(steering);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    worker.io_replaced();
    Ok(())
}

/// An interface's name, index and receive queues.
type PortQueues = (String, u32, u32);

/// What a worker's sockets are bound to: its queues of every port and, in
/// tc mode (which always has the segmenter), of the segmenter's far end.
struct SocketPlan {
    ports: Vec<PortQueues>,
    in_tc: bool,
}

impl SocketPlan {
    /// The plan for `tables`' ports as the interfaces are now.
    fn of(tables: &Tables, workers: usize, in_tc: bool) -> Result<SocketPlan, StartError> {
        let mut ports = Vec::new();
        for port in tables.ports() {
            let (index, queues) = interface(&port.name, workers).map_err(StartError::Host)?;
            ports.push((port.name.clone(), index, queues));
        }
        Ok(SocketPlan { ports, in_tc })
    }

    /// Binds worker `w` of `workers`'s sockets in `io`, each entered in
    /// the steering program's map.
    fn bind(
        &self,
        io: &mut XskPorts,
        (w, workers): (usize, usize),
        steering: &mut Steering,
    ) -> Result<(), StartError> {
        let far_end = match self.in_tc {
            true => Some((
                SEGMENTER.1.to_string(),
                ifindex(SEGMENTER.1).map_err(StartError::Host)?,
                workers as u32,
            )),
            false => None,
        };
        for (name, index, queues) in self.ports.iter().chain(far_end.as_ref()) {
            let bound = io.bind_port(name, &queues_of_worker(w, workers, *queues))?;
            for (queue, fd) in bound {
                steering.set_socket(*index, queue, fd)?;
            }
            if self.in_tc {
                let slot = steering.slot(*index)?;
                io.set_tag(name, slot as u16 + 1);
            }
        }
        if self.in_tc {
            io.set_segmenter(SEGMENTER.1);
        }
        Ok(())
    }
}

/// Gives worker `w` of `workers` the sessions its predecessor saved in
/// `dir` (those `tables` still hold), and its session file from now on.
fn resume_sessions(
    dir: &SessionDir,
    (w, workers): (usize, usize),
    tables: &Tables,
    pipeline: &mut Pipeline,
) -> Result<(), StartError> {
    let capacity = pipeline.conntrack.config().max_sessions;
    let resumed = dir
        .resume(w, workers, capacity)
        .map_err(StartError::Sessions)?;
    if let Some(why) = &resumed.set_aside {
        tracing::warn!(worker = w, "worker {w}: saved sessions set aside: {why}");
    }
    pipeline.conntrack.save_to(resumed.file);
    let r = pipeline.restore_sessions(tables, &resumed.sessions);
    if let Some(file) = pipeline.conntrack.session_file() {
        let path = file.path().display().to_string();
        file.publish()
            .map_err(|e| StartError::Sessions(format!("session file {path}: {e}")))?;
    }
    if resumed.sessions.len() + resumed.torn > 0 {
        tracing::info!(
            worker = w,
            restored = r.restored,
            gone = r.gone,
            refused = r.refused,
            torn = resumed.torn,
            "worker {w}: {} saved sessions restored ({} of gone tenants or rules, \
             {} refused, {} torn records skipped)",
            r.restored,
            r.gone,
            r.refused,
            resumed.torn
        );
    }
    Ok(())
}

/// What one worker did, read when it stopped.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub core: Option<usize>,
    pub counters: WorkerCounters,
    /// What the kernel dropped before the worker saw it.
    pub socket_drops: SocketDrops,
    /// Connection-tracking sessions alive when it stopped.
    pub sessions: usize,
    pub stats: Stats,
}

pub struct Router {
    // Workers (their sockets) go before the program is detached.
    workers: Vec<Worker<XskPorts>>,
    /// The router's own services (DHCP), on a thread of their own.
    services: Services,
    live: Arc<Live>,
    fast_path: Option<Arc<Mutex<FastPathSync>>>,
    steering: Arc<Mutex<Steering>>,
    /// Each port's interface index, by name.
    ifindexes: HashMap<String, u32>,
    options: Options,
    // After the sockets and the programs.
    _segmenter: Option<Segmenter>,
    /// Held while the workers write their session files.
    _sessions: Option<SessionDir>,
}

impl Drop for Router {
    /// Leaves each interface as it was found: the clsact qdiscs the tc
    /// fast path added go (and the tc program with them); the links and
    /// sockets go with the fields.
    fn drop(&mut self) {
        let added = match self.steering.lock() {
            Ok(steering) => steering.clsacts_added(),
            Err(_) => return,
        };
        for name in added {
            if let Ok(index) = crate::netdev::ifindex(&name) {
                let _ = crate::netlink::delete_clsact(index);
            }
        }
    }
}

impl Router {
    /// Attaches to every port of `tables` (interfaces of the same names in
    /// the calling thread's network namespace) and binds the workers'
    /// sockets. On error, whatever was attached is detached again.
    pub fn start(tables: &Tables, options: &Options) -> Result<Router, StartError> {
        let workers = options.workers;
        if workers == 0 {
            return Err(StartError::NoWorkers);
        }
        if !options.cores.is_empty() && options.cores.len() != workers {
            let listed = options.cores.len();
            return Err(StartError::Cores { listed, workers });
        }
        for &core in &options.cores {
            check_core(core).map_err(StartError::Host)?;
        }
        snat_split(tables, workers).map_err(StartError::Host)?;
        let sessions = options.session_dir.as_deref().map(SessionDir::open);
        let sessions = sessions.transpose().map_err(StartError::Sessions)?;
        let mut steering = Steering::load()?;
        let in_tc = options.fast_path_runs_in_tc();
        let mode = options.port_attach_mode();
        if in_tc {
            steering.fast_path_in_tc()?;
        }
        let mut ifindexes = HashMap::new();
        let mut queues_of = Vec::new();
        let segmenter = match in_tc {
            true => Some(Segmenter::create(workers).map_err(StartError::Host)?),
            false => None,
        };
        if segmenter.is_some() {
            let near = ifindex(SEGMENTER.0).map_err(StartError::Host)?;
            let far = ifindex(SEGMENTER.1).map_err(StartError::Host)?;
            // Every frame of the far end goes to a worker's socket.
            steering.add_vm_port(far)?;
            steering.attach(SEGMENTER.1, AttachMode::Native)?;
            steering.set_segmenter(near)?;
            ifindexes.insert(SEGMENTER.1.to_string(), far);
        }
        for port in tables.ports() {
            let (index, queues) = interface(&port.name, workers).map_err(StartError::Host)?;
            match port.role {
                PortRole::Uplink { ip, .. } => steering.add_local_vtep(ip),
                PortRole::Vm { .. } => steering.add_vm_port(index),
            }?;
            ifindexes.insert(port.name.clone(), index);
            queues_of.push(queues);
        }
        for (ip, _) in tables.nat().public_addrs() {
            steering.add_public_addr(ip)?;
        }
        let fast_path = match steering.take_fast_path() {
            Some(maps) if options.fast_path => {
                let mut sync =
                    FastPathSync::new(maps, in_tc).with_flow_table(steering.flow_table()?);
                sync.sync(tables).map_err(StartError::FastPath)?;
                Some(Arc::new(Mutex::new(sync)))
            }
            _ => None,
        };
        let flow_ports = match &fast_path {
            Some(sync) if options.flow_offload => {
                Some(sync.lock().expect("fast path").flow_ports())
            }
            _ => None,
        };
        let mut handoffs = Handoff::all(workers).map_err(StartError::Handoff)?;
        let (services, mut service_links) =
            service::links(workers).map_err(StartError::Services)?;
        let mut views = Workers::all(workers as u16);
        let mut all = Vec::new();
        let ports: Vec<PortQueues> = tables
            .ports()
            .iter()
            .zip(queues_of.iter().copied())
            .map(|(p, queues)| (p.name.clone(), ifindexes[&p.name], queues))
            .collect();
        let sockets = SocketPlan { ports, in_tc };
        for w in 0..workers {
            let umem = Umem::new(umem_chunks(tables.ports().len() + 1))?;
            let mut io = XskPorts::new(umem);
            sockets.bind(&mut io, (w, workers), &mut steering)?;
            let mut pipeline = Pipeline::with_conntrack(options.conntrack);
            pipeline.workers = views.remove(0);
            if let Some(ports) = &flow_ports {
                let table = steering.flow_table()?;
                let flows = BpfFlows::new(table, ports.clone());
                pipeline.offload = Some(Box::new(flows));
            }
            if let Some(dir) = &sessions {
                resume_sessions(dir, (w, workers), tables, &mut pipeline)?;
            }
            let worker = Worker::with_pipeline(io, pipeline).with_services(service_links.remove(0));
            all.push(match workers {
                1 => worker,
                _ => worker.with_handoff(handoffs.remove(0)),
            });
        }
        // A previous process ran more workers: their sessions cannot be
        // placed.
        if let Some(dir) = &sessions {
            for path in dir.forget_workers_from(workers) {
                tracing::warn!(
                    "{}: a worker this xvrd does not run; removed",
                    path.display()
                );
            }
        }
        // Attached once every socket is in the map: a VM's frame never
        // meets the program before its socket does (it would be dropped).
        for port in tables.ports() {
            if in_tc {
                steering.attach_tc(&port.name)?;
            }
            steering
                .attach(&port.name, mode)
                .map_err(|source| StartError::Attach {
                    source,
                    hint: match mode {
                        AttachMode::Native => {
                            "; if its driver has no native XDP, use --xdp-mode generic"
                        }
                        AttachMode::Generic => "",
                    },
                })?;
        }
        let live = Arc::new(Live::new(workers));
        Ok(Router {
            live,
            fast_path,
            workers: all,
            services,
            steering: Arc::new(Mutex::new(steering)),
            ifindexes,
            options: options.clone(),
            _segmenter: segmenter,
            _sessions: sessions,
        })
    }

    /// Forwards on the worker threads while `f` runs; returns what `f`
    /// returned and each worker's report.
    pub fn run_while<T>(
        &mut self,
        tables: &impl TableSource,
        f: impl FnOnce() -> T,
    ) -> Result<(T, Vec<WorkerReport>), String> {
        let stop = AtomicBool::new(false);
        let idle = self.options.idle;
        let cores = &self.options.cores;
        let (workers, in_tc) = (self.workers.len(), self.options.fast_path_runs_in_tc());
        let inject_panic = self.options.inject_panic;
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for (w, worker) in self.workers.iter_mut().enumerate() {
                let core = cores.get(w).copied();
                let stop = &stop;
                let mut mailbox = self.live.mailbox(w).ok_or("a worker without a mailbox")?;
                let steering = self.steering.clone();
                let handle = std::thread::Builder::new()
                    .name(format!("xvr-worker-{w}"))
                    .spawn_scoped(s, move || {
                        if let Some(core) = core {
                            pin_to(core);
                        }
                        let started = std::time::Instant::now();
                        let mut fault = inject_panic.filter(|(at, _)| *at == w).map(|f| f.1);
                        loop {
                            let ran = catch_unwind(AssertUnwindSafe(|| {
                                worker.run_reporting(tables, idle, stop, |worker| {
                                    if fault.is_some_and(|after| started.elapsed() >= after) {
                                        fault = None;
                                        panic!("injected fault (XVR_FAULT_WORKER_PANIC)");
                                    }
                                    mailbox.serve(worker, core)
                                })
                            }));
                            if ran.is_ok() || stop.load(Ordering::Relaxed) {
                                break;
                            }
                            worker.counters.restarts += 1;
                            tracing::error!(
                                worker = w,
                                "worker {w} stopped on a panic outside a batch; \
                                 restarting it with new sockets"
                            );
                            if let Err(e) = rebind(worker, (w, workers), tables, in_tc, &steering) {
                                tracing::error!(worker = w, "worker {w} not restarted: {e}");
                                break;
                            }
                        }
                        WorkerReport {
                            core,
                            counters: worker.counters.clone(),
                            socket_drops: worker.io.socket_drops(),
                            sessions: worker.pipeline.conntrack.len(),
                            stats: worker.pipeline.stats.clone(),
                        }
                    })
                    .map_err(|e| format!("starting worker {w}: {e}"));
                match handle {
                    Ok(handle) => handles.push(handle),
                    Err(e) => {
                        // The scope joins the workers already started.
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            let (services, stop_services) = (&mut self.services, &stop);
            let served = std::thread::Builder::new()
                .name("xvr-services".to_string())
                .spawn_scoped(s, move || services.run(tables, stop_services));
            if let Err(e) = served {
                stop.store(true, Ordering::Relaxed);
                return Err(format!("starting the services thread: {e}"));
            }
            let result = f();
            stop.store(true, Ordering::Relaxed);
            let reports = handles
                .into_iter()
                .map(|h| h.join().expect("worker thread"))
                .collect();
            Ok((result, reports))
        })
    }

    /// The workers' running reports, shared with readers.
    pub fn live(&self) -> Arc<Live> {
        self.live.clone()
    }

    /// What a control socket needs to add and remove ports while the
    /// workers run.
    pub fn live_ports(&self) -> LivePorts {
        LivePorts::new(
            self.steering.clone(),
            self.live.clone(),
            self.ifindexes.clone(),
            self.options.workers,
            self.options.port_attach_mode(),
        )
        .with_tc(self.options.fast_path_runs_in_tc())
    }

    /// What the router's services answered, to read while they run.
    pub fn service_counters(&self) -> Arc<Mutex<ServiceCounters>> {
        self.services.counters()
    }

    /// The steering program's decision counters (fast path included).
    pub fn xdp_counters(&self) -> Arc<xvr_ebpf::DecisionCounters> {
        self.steering.lock().expect("steering").decision_counters()
    }

    /// The fast path's maps, to keep in step with new tables (`None` when
    /// the fast path is off).
    pub fn fast_path(&self) -> Option<Arc<Mutex<FastPathSync>>> {
        self.fast_path.clone()
    }
}

/// The pipeline counters of all workers, summed.
pub fn total_stats(reports: &[WorkerReport]) -> Stats {
    let mut total = Stats::default();
    for r in reports {
        total.add(&r.stats);
    }
    total
}
