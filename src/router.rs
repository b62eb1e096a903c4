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
use crate::live_ports::LivePorts;
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use xvr_dataplane::conntrack::{self, Session, SessionFilter};
use xvr_dataplane::handoff::Handoff;
use xvr_dataplane::io::xsk::Umem;
use xvr_dataplane::io::xsk_ports::{PortCounters, SocketDrops, UmemChunks, XskPorts};
use xvr_dataplane::pipeline::owner::Workers;
use xvr_dataplane::table::PortRole;
use xvr_dataplane::tally::TenantCounters;
use xvr_dataplane::worker::{Idle, TableSource, Worker, WorkerCounters};
use xvr_dataplane::{Pipeline, Stats, Tables};
use xvr_ebpf::{AttachMode, Steering};

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

/// How often a worker's report carries its per-port and per-tenant
/// counters.
const DETAIL_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

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
        }
    }
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

    /// A copy of every worker's last report.
    pub fn workers(&self) -> Vec<LiveWorker> {
        self.workers
            .iter()
            .map(|w| w.lock().map(|w| w.clone()).unwrap_or_default())
            .collect()
    }
}

pub struct Router {
    // Workers (their sockets) go before the program is detached.
    workers: Vec<Worker<XskPorts>>,
    live: Arc<Live>,
    fast_path: Option<Arc<Mutex<FastPathSync>>>,
    steering: Arc<Mutex<Steering>>,
    /// Each port's interface index, by name.
    ifindexes: HashMap<String, u32>,
    options: Options,
    // After the sockets and the programs.
    _segmenter: Option<Segmenter>,
}

/// Index of interface `name` in the current network namespace.
pub fn ifindex(name: &str) -> Result<u32, String> {
    let c_name = CString::new(name).map_err(|_| format!("bad interface name {name:?}"))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(format!(
            "interface {name}: {}",
            std::io::Error::last_os_error()
        )),
        index => Ok(index),
    }
}

/// The host's own IPv4 networks and addresses in this network namespace
/// (the underlay's subnet among them), from getifaddrs: each address as
/// a /32 and its network.
pub fn host_prefixes() -> Vec<Ipv4Net> {
    let mut prefixes = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, walked read-only below and freed
    // once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return prefixes;
        }
        let mut at = list;
        while !at.is_null() {
            let entry = &*at;
            at = entry.ifa_next;
            let (addr, mask) = (entry.ifa_addr, entry.ifa_netmask);
            if addr.is_null() || mask.is_null() || i32::from((*addr).sa_family) != libc::AF_INET {
                continue;
            }
            let addr = &*(addr as *const libc::sockaddr_in);
            let mask = &*(mask as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
            let len = u32::from_be(mask.sin_addr.s_addr).leading_ones() as u8;
            if let (Ok(host), Ok(net)) = (Ipv4Net::new(ip, 32), Ipv4Net::new(ip, len)) {
                prefixes.push(host);
                prefixes.push(net.trunc());
            }
        }
        libc::freeifaddrs(list);
    }
    prefixes.sort_unstable();
    prefixes.dedup();
    prefixes
}

/// The MTU of interface `name` (SIOCGIFMTU), if there is one.
pub fn interface_mtu(name: &str) -> Option<u16> {
    // SAFETY: `req` is a zeroed ifreq whose name is NUL-terminated (it is
    // shorter than the field); the socket is closed after the ioctl.
    let (rc, mtu) = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        if name.len() >= req.ifr_name.len() {
            return None;
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFMTU, &mut req);
        libc::close(fd);
        (rc, req.ifr_ifru.ifru_mtu)
    };
    (rc == 0).then(|| u16::try_from(mtu).unwrap_or(u16::MAX))
}

/// `struct ethtool_channels` of <linux/ethtool.h>.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// Receive queues of interface `name` (rx + combined channels, as
/// `ethtool -l` shows them); 1 when the driver does not report channels.
pub fn rx_queues(name: &str) -> Result<u32, String> {
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: a zeroed ifreq with the name copied in (checked to fit),
    // pointing at `channels`, which outlives the ioctl.
    let rc = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        if name.len() >= req.ifr_name.len() {
            return Err(format!("interface name {name:?} is too long"));
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let rc = libc::ioctl(fd, SIOCETHTOOL, &mut req);
        libc::close(fd);
        rc
    };
    if rc < 0 {
        let error = std::io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Ok(1),
            _ => Err(format!("interface {name}: reading its queues: {error}")),
        };
    }
    Ok((channels.rx_count + channels.combined_count).max(1))
}

impl Router {
    /// Attaches to every port of `tables` (interfaces of the same names in
    /// the calling thread's network namespace) and binds the workers'
    /// sockets. On error, whatever was attached is detached again.
    pub fn start(tables: &Tables, options: &Options) -> Result<Router, String> {
        let workers = options.workers;
        if workers == 0 {
            return Err("workers: at least 1".into());
        }
        if !options.cores.is_empty() && options.cores.len() != workers {
            return Err(format!(
                "cores: {} listed for {workers} workers",
                options.cores.len()
            ));
        }
        for &core in &options.cores {
            check_core(core)?;
        }
        snat_split(tables, workers)?;
        let mut steering = Steering::load().map_err(|e| e.to_string())?;
        let in_tc = options.fast_path_runs_in_tc();
        let mode = options.port_attach_mode();
        if in_tc {
            steering.fast_path_in_tc().map_err(|e| e.to_string())?;
        }
        let mut ifindexes = HashMap::new();
        let mut queues_of = Vec::new();
        let segmenter = match in_tc {
            true => Some(Segmenter::create(workers)?),
            false => None,
        };
        if segmenter.is_some() {
            let (near, far) = (ifindex(SEGMENTER.0)?, ifindex(SEGMENTER.1)?);
            // Every frame of the far end goes to a worker's socket.
            steering.add_vm_port(far).map_err(|e| e.to_string())?;
            steering
                .attach(SEGMENTER.1, AttachMode::Native)
                .map_err(|e| e.to_string())?;
            steering.set_segmenter(near).map_err(|e| e.to_string())?;
            ifindexes.insert(SEGMENTER.1.to_string(), far);
        }
        for port in tables.ports() {
            let (index, queues) = interface(&port.name, workers)?;
            match port.role {
                PortRole::Uplink { ip, .. } => steering.add_local_vtep(ip),
                PortRole::Vm { .. } => steering.add_vm_port(index),
            }
            .map_err(|e| e.to_string())?;
            ifindexes.insert(port.name.clone(), index);
            queues_of.push(queues);
        }
        for (ip, _) in tables.nat().public_addrs() {
            steering.add_public_addr(ip).map_err(|e| e.to_string())?;
        }
        let fast_path = match steering.take_fast_path() {
            Some(maps) if options.fast_path => {
                let mut sync = FastPathSync::new(maps, in_tc);
                sync.sync(tables)?;
                Some(Arc::new(Mutex::new(sync)))
            }
            _ => None,
        };
        let mut handoffs = Handoff::all(workers).map_err(|e| format!("handoff: {e}"))?;
        let mut views = Workers::all(workers as u16);
        let mut all = Vec::new();
        for w in 0..workers {
            let umem =
                Umem::new(umem_chunks(tables.ports().len() + 1)).map_err(|e| e.to_string())?;
            let mut io = XskPorts::new(umem);
            let segmenter_queues = segmenter.as_ref().map(|_| (SEGMENTER.1, workers as u32));
            let ports = tables
                .ports()
                .iter()
                .map(|p| p.name.as_str())
                .zip(queues_of.iter().copied());
            for (name, queues) in ports.chain(segmenter_queues) {
                let index = ifindexes[name];
                let bound = io
                    .bind_port(name, &queues_of_worker(w, workers, queues))
                    .map_err(|e| e.to_string())?;
                for (queue, fd) in bound {
                    steering
                        .set_socket(index, queue, fd)
                        .map_err(|e| e.to_string())?;
                }
                if in_tc {
                    let slot = steering.slot(index).map_err(|e| e.to_string())?;
                    io.set_tag(name, slot as u16 + 1);
                }
            }
            if segmenter.is_some() {
                io.set_segmenter(SEGMENTER.1);
            }
            let mut pipeline = Pipeline::with_conntrack(options.conntrack);
            pipeline.workers = views.remove(0);
            let worker = Worker::with_pipeline(io, pipeline);
            all.push(match workers {
                1 => worker,
                _ => worker.with_handoff(handoffs.remove(0)),
            });
        }
        // Attached once every socket is in the map: a VM's frame never
        // meets the program before its socket does (it would be dropped).
        for port in tables.ports() {
            if in_tc {
                steering.attach_tc(&port.name).map_err(|e| e.to_string())?;
            }
            steering.attach(&port.name, mode).map_err(|e| {
                let hint = match mode {
                    AttachMode::Native => {
                        "; if its driver has no native XDP, use --xdp-mode generic"
                    }
                    AttachMode::Generic => "",
                };
                format!("{e}{hint}")
            })?;
        }
        let live = Arc::new(Live::new(workers));
        Ok(Router {
            live,
            fast_path,
            workers: all,
            steering: Arc::new(Mutex::new(steering)),
            ifindexes,
            options: options.clone(),
            _segmenter: segmenter,
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
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for (w, worker) in self.workers.iter_mut().enumerate() {
                let core = cores.get(w).copied();
                let stop = &stop;
                let (live, query) = (&self.live.workers[w], &self.live.queries[w]);
                let port_query = &self.live.port_queries[w];
                let mut detailed: Option<Instant> = None;
                let handle = std::thread::Builder::new()
                    .name(format!("xvr-worker-{w}"))
                    .spawn_scoped(s, move || {
                        if let Some(core) = core {
                            pin_to(core);
                        }
                        worker.run_reporting(tables, idle, stop, |worker| {
                            if let Ok(mut q) = port_query.try_lock() {
                                if let Some(request) = q.request.take() {
                                    q.answer = Some(change_ports(&mut worker.io, request));
                                }
                            }
                            if let Ok(mut q) = query.try_lock() {
                                if let Some((filter, limit, flush)) = q.request.take() {
                                    let ct = &mut worker.pipeline.conntrack;
                                    let (sessions, matched) = ct.select(&filter, limit, flush);
                                    let now = worker.pipeline.now;
                                    q.answer = Some(WorkerSessions {
                                        sessions,
                                        matched,
                                        now,
                                    });
                                }
                            }
                            if let Ok(mut slot) = live.try_lock() {
                                slot.core = core;
                                slot.counters.clone_from(&worker.counters);
                                slot.sessions = worker.pipeline.conntrack.len();
                                slot.stats.clone_from(&worker.pipeline.stats);
                                slot.seen = Some(Instant::now());
                                slot.umem = worker.io.chunks();
                                if detailed.is_none_or(|t| t.elapsed() >= DETAIL_EVERY) {
                                    detailed = Some(Instant::now());
                                    slot.ports = worker.io.port_counters();
                                    slot.tenants = worker.tenants.totals();
                                }
                            }
                        });
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

/// The segmenter's near and far ends (see `Segmenter`).
pub const SEGMENTER: (&str, &str) = ("xvrseg0", "xvrseg1");

/// A veth pair through which the fast path in tc sends the GSO packets it
/// does not take, tagged with their port: the far end carries the
/// steering program natively, so the near end has no GSO and the kernel
/// segments them there, and the far end gives the segments to the
/// workers' sockets. The near end inserts VLAN tags in the frame (its
/// VLAN offload is off), where the far end's XDP program and the workers
/// see them. Deleted when dropped.
pub struct Segmenter;

impl Segmenter {
    fn create(workers: usize) -> Result<Segmenter, String> {
        let q = workers.to_string();
        let run = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .map_err(|e| format!("{}: {e} (install iproute2 and ethtool)", args[0]))?;
            match out.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "{}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }
        };
        let (near, far) = SEGMENTER;
        // Left over by a daemon that was killed: start afresh.
        let _ = run(&["ip", "link", "del", near]);
        run(&[
            "ip",
            "link",
            "add",
            near,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            far,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        let segmenter = Segmenter;
        run(&["ethtool", "-K", near, "txvlan", "off"])?;
        for dev in [near, far] {
            // Only the tc program sends here: no IPv6 link-local chatter.
            let knob = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
            let _ = std::fs::write(knob, "1");
            run(&["ip", "link", "set", dev, "up"])?;
        }
        Ok(segmenter)
    }
}

impl Drop for Segmenter {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", SEGMENTER.0])
            .output();
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
                eprintln!("xvrd: {interface}: {lost} UMEM chunk(s) not recovered");
            }
            Ok(Vec::new())
        }
    }
}

/// The queues of a port with `queues` receive queues that worker `w` of
/// `workers` owns: w, w + workers, ...
pub fn queues_of_worker(w: usize, workers: usize, queues: u32) -> Vec<u32> {
    (w as u32..queues).step_by(workers).collect()
}

/// The index and receive queues of interface `name`, which must have a
/// queue for each of `workers`.
pub fn interface(name: &str, workers: usize) -> Result<(u32, u32), String> {
    let index = ifindex(name)?;
    let queues = rx_queues(name)?;
    if (queues as usize) < workers {
        return Err(format!(
            "interface {name}: {queues} receive queue(s) for {workers} workers; \
             give it one per worker (ethtool -L {name} rx {workers} tx {workers}, \
             or combined {workers})"
        ));
    }
    Ok((index, queues))
}

/// Each worker allocates source-NAT ports from its own block of a public
/// address's range (replies find their session's owner by port), so each
/// range needs a port per worker at least.
pub fn snat_split(tables: &Tables, workers: usize) -> Result<(), String> {
    for (ip, tenant) in tables.nat().public_addrs() {
        let Some(snat) = tables.nat().source(tenant).filter(|s| s.ip == ip) else {
            continue;
        };
        let ports = usize::from(snat.ports.1 - snat.ports.0) + 1;
        if ports < workers {
            return Err(format!(
                "nat.source {ip}: {ports} port(s) cannot be split among {workers} workers"
            ));
        }
    }
    Ok(())
}

/// The pipeline counters of all workers, summed.
pub fn total_stats(reports: &[WorkerReport]) -> Stats {
    let mut total = Stats::default();
    for r in reports {
        total.add(&r.stats);
    }
    total
}
