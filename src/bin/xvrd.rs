//! xvrd: the xvr daemon. Attaches to the interfaces the config names,
//! forwards until SIGINT or SIGTERM, then detaches everything and exits 0.
//! Errors a user can cause (bad config, missing interface, no XDP support)
//! end with a message naming the cause and nothing left attached.
use arc_swap::ArcSwap;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{error, info, warn};
use xvr::fast_path::FastPathSync;
use xvr::logging::LogFormat;
use xvr::ops::DaemonOps;
use xvr::router::{total_stats, Options, Router};
use xvr_control::server::Server;
use xvr_dataplane::worker::Idle;
use xvr_dataplane::Tables;
use xvr_ebpf::AttachMode;

#[derive(Parser)]
#[command(name = "xvrd", version, about = "xvr virtual router daemon")]
struct Args {
    /// Desired state (JSON): tenants, ports, routes, neighbors, VTEPs.
    /// Seeds an empty --state-dir; with a saved state it must match it
    /// (leave it out to resume what was saved).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the state xvrd acknowledged is kept (a snapshot and a
    /// journal of commits, each written durably before it is answered);
    /// xvrd resumes from it on start.
    #[arg(long, default_value = "/var/lib/xvr")]
    state_dir: PathBuf,
    /// Where the workers keep their sessions (one file each, written as
    /// sessions open and close), so that established connections survive
    /// a restart or a crash. Use tmpfs; one directory per xvrd.
    #[arg(long, default_value = xvr::session_store::DEFAULT_DIR)]
    session_dir: PathBuf,
    /// XDP attach mode: native (in the driver) or generic (in the stack,
    /// for drivers without XDP).
    #[arg(long, value_enum, default_value = "native")]
    xdp_mode: Mode,
    /// Poll-mode worker threads; every port needs at least this many
    /// receive queues. Default: one, or one per core of --cores.
    #[arg(long)]
    workers: Option<usize>,
    /// Cores to pin the workers to, one each, e.g. `2,3` or `2-5`.
    #[arg(long, value_parser = parse_cores)]
    cores: Option<Cores>,
    /// What an idle worker does: sleep in poll() until frames arrive, or
    /// busy-poll (lowest latency, burns its core).
    #[arg(long, value_enum, default_value = "sleep")]
    idle: IdleArg,
    /// Forward bridged traffic between VMs (local, or across VXLAN)
    /// without the workers: `on`, in XDP where the target interface takes
    /// redirected frames; `tc`, in tc on whole GSO packets (the steering
    /// program attached in generic mode, so that senders keep GSO; what
    /// the fast path does not take reaches the workers through a
    /// segmenter veth pair); `off`.
    #[arg(long, value_enum, default_value = "on")]
    xdp_fast_path: FastPathArg,
    /// Workers hand the established flows they routed or translated
    /// (into or out of VXLAN too) to the XDP fast path, which forwards
    /// their later packets itself (`on`, with --xdp-fast-path on); `off`
    /// keeps every routed packet on the workers.
    #[arg(long, value_enum, default_value = "on")]
    flow_offload: OnOff,
    /// The control socket (JSON lines; see docs/control-protocol.md).
    #[arg(long, default_value = xvr_control::server::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Control clients served at once; one more is told so and closed.
    #[arg(long, default_value_t = xvr_control::server::DEFAULT_MAX_CONNECTIONS)]
    control_max_connections: usize,
    /// Seconds a control client may stay silent before it is closed.
    #[arg(long, default_value_t = xvr_control::server::DEFAULT_IDLE_TIMEOUT.as_secs())]
    control_idle_timeout: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9101); off unless given.
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Tenants with their own series in the metrics; the rest are summed
    /// under tenant="_other".
    #[arg(long, default_value_t = xvr::metrics::DEFAULT_MAX_TENANTS)]
    metrics_max_tenants: usize,
    /// Logs on stderr: `text` for people, `json` (one object a line) for
    /// log shippers.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The lowest level logged (error, warn, info, debug, trace), or a
    /// filter in RUST_LOG syntax.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum FastPathArg {
    On,
    Tc,
    Off,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum IdleArg {
    Sleep,
    BusyPoll,
}

#[derive(Clone)]
struct Cores(Vec<usize>);

/// `2,3` or `2-5` or a mix: `0,2-3`.
fn parse_cores(list: &str) -> Result<Cores, String> {
    let mut cores = Vec::new();
    for part in list.split(',') {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("{s:?} is not a core number"))
        };
        match part.split_once('-') {
            Some((first, last)) => cores.extend(number(first)?..=number(last)?),
            None => cores.push(number(part)?),
        }
    }
    let mut sorted = cores.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != cores.len() || cores.is_empty() {
        return Err("list each core once".into());
    }
    Ok(Cores(cores))
}

/// `XVR_FAULT_WORKER_PANIC=W@SECONDS`: worker W panics outside any batch
/// after SECONDS, once (for the tests of worker restarts).
fn injected_panic() -> Result<xvr::router::InjectedPanic, String> {
    let Ok(value) = std::env::var("XVR_FAULT_WORKER_PANIC") else {
        return Ok(None);
    };
    let bad = || format!("XVR_FAULT_WORKER_PANIC={value}: want WORKER@SECONDS");
    let (worker, seconds) = value.split_once('@').ok_or_else(bad)?;
    let worker = worker.parse().map_err(|_| bad())?;
    let seconds: f64 = seconds.parse().map_err(|_| bad())?;
    let after = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    warn!("fault injection: worker {worker} will panic after {seconds} s");
    Ok(Some((worker, after)))
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Native,
    Generic,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = xvr::logging::init(args.log_format, &args.log_level) {
        eprintln!("xvrd: {message}");
        return ExitCode::from(1);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Said whatever the log level: this is why xvrd did not run.
            error!("{message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    xvr_dataplane::worker::quiet_repeated_panics();
    let (store, state, tables) = xvr::state_store::resume(&args.state_dir, args.config.as_deref())?;
    // Tenants' internet traffic never reaches this host's own networks.
    let tables = tables.with_protected(xvr::netdev::host_prefixes());
    let signals = block_termination_signals();
    let cores = args.cores.clone().map(|c| c.0).unwrap_or_default();
    let options = Options {
        mode: match args.xdp_mode {
            Mode::Native => AttachMode::Native,
            Mode::Generic => AttachMode::Generic,
        },
        workers: args.workers.unwrap_or(cores.len().max(1)),
        cores,
        idle: match args.idle {
            IdleArg::Sleep => Idle::Sleep,
            IdleArg::BusyPoll => Idle::BusyPoll,
        },
        conntrack: state.conntrack_config(),
        fast_path: args.xdp_fast_path != FastPathArg::Off,
        fast_path_in_tc: args.xdp_fast_path == FastPathArg::Tc,
        flow_offload: args.flow_offload == OnOff::On,
        session_dir: Some(args.session_dir.clone()),
        inject_panic: injected_panic()?,
    };
    let metrics_server = args.metrics.map(xvr::metrics::bind).transpose()?;
    let mut server = Server::bind(&args.socket)
        .map_err(|e| format!("control socket {}: {e}", args.socket.display()))?
        .with_limits(
            args.control_max_connections,
            Duration::from_secs(args.control_idle_timeout),
        );
    let mut router = Router::start(&tables, &options).map_err(|e| e.to_string())?;
    let ports = tables.ports().len();
    // Workers read the tables through this; the control socket swaps in
    // new ones whole.
    let tables = Arc::new(ArcSwap::from_pointee(tables));
    let fast_path = router.fast_path();
    let xdp = router.xdp_counters();
    let mut ops = DaemonOps::new(state, tables.clone(), router.live())
        .with_store(store)
        .with_xdp_counters(xdp.clone())
        .with_service_counters(router.service_counters())
        .with_live_ports(router.live_ports());
    if let Some(fast_path) = &fast_path {
        ops = ops.with_fast_path(fast_path.clone());
    }
    let status = format!(
        "forwarding on {} ports with {} workers",
        ports, options.workers
    );
    info!(ports, workers = options.workers, "{status}");
    let live = router.live();
    let metrics = xvr::metrics::Metrics {
        live: live.clone(),
        xdp: Some(xdp.clone()),
        max_tenants: args.metrics_max_tenants,
    };
    let (signal, reports) = router.run_while(&*tables, || {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let control = s.spawn(|| server.run(&mut ops, &stop));
            if let Some(fast_path) = &fast_path {
                s.spawn(|| follow_redirect_targets(fast_path, &tables, &stop));
            }
            s.spawn(|| xvr::supervise::watchdog(&live, &stop));
            s.spawn(|| xvr::logging::sample_drops(&live, &stop, xvr::logging::DROP_SAMPLE_EVERY));
            if let Some(http) = &metrics_server {
                s.spawn(|| xvr::metrics::serve(http, &metrics, &stop));
            }
            xvr::supervise::ready(&status);
            let signal = wait_for(&signals);
            xvr::supervise::stopping();
            stop.store(true, Ordering::Relaxed);
            if let Ok(Err(e)) = control.join() {
                error!("control socket: {e}");
            }
            signal
        })
    })?;
    info!(signal, "stopping on signal {signal}");
    for (w, r) in reports.iter().enumerate() {
        let c = &r.counters;
        let core = r.core.map_or("any".to_string(), |c| c.to_string());
        let d = &r.socket_drops;
        info!(
            worker = w,
            "worker {w} (core {core}): rx {} tx {} handed_in {} sessions {} \
             tx_ring_full {} rx_ring_full {} fill_ring_empty {} rx_dropped {} worker_panics {}",
            c.rx_packets,
            c.tx_packets,
            c.handed_in,
            r.sessions,
            c.tx_ring_full,
            d.rx_ring_full,
            d.fill_ring_empty,
            d.rx_dropped,
            c.panics
        );
    }
    let stats = total_stats(&reports);
    let sessions: usize = reports.iter().map(|r| r.sessions).sum();
    info!(sessions, "{sessions} live sessions");
    let decisions = xdp.read().unwrap_or_default();
    for (decision, n) in decisions.iter().filter(|(_, n)| *n > 0) {
        info!(count = n, "xdp {} {n}", decision.name());
    }
    for (name, n) in stats.nonzero_events().chain(stats.nonzero_drops()) {
        info!(count = n, "{name} {n}");
    }
    drop(router);
    Ok(())
}

/// Re-syncs the XDP fast path every second, so that an interface that
/// starts or stops taking redirected frames (its veth peer's GRO or XDP
/// turned on or off) is followed. Commits sync at once themselves.
fn follow_redirect_targets(
    fast_path: &Mutex<FastPathSync>,
    tables: &ArcSwap<Tables>,
    stop: &AtomicBool,
) {
    // Ticks of 100 ms, so that a stop is seen soon; a sync every tenth.
    let mut failing = false;
    for tick in 1u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
        if !tick.is_multiple_of(10) {
            continue;
        }
        let result = fast_path.lock().expect("fast path").sync(&tables.load());
        if let (Err(e), false) = (&result, failing) {
            warn!("fast path: {e}");
        }
        failing = result.is_err();
    }
}

/// Blocks SIGINT and SIGTERM in this thread and every thread it starts
/// from now on, so that `wait_for` receives them.
fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: waits for one of the blocked signals in `set`.
    unsafe { libc::sigwait(set, &mut signal) };
    signal
}
