//! xvrd: the xvr daemon. Attaches to the interfaces the config names,
//! forwards until SIGINT or SIGTERM, then detaches everything and exits 0.
//! Errors a user can cause (bad config, missing interface, no XDP support)
//! end with a message naming the cause and nothing left attached.
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use xvr::router::Router;
use xvr_ebpf::AttachMode;

#[derive(Parser)]
#[command(name = "xvrd", version, about = "xvr virtual router daemon")]
struct Args {
    /// Desired state (JSON): tenants, ports, routes, neighbors, VTEPs.
    #[arg(long)]
    config: PathBuf,
    /// XDP attach mode: native (in the driver) or generic (in the stack,
    /// for drivers without XDP).
    #[arg(long, value_enum, default_value = "native")]
    xdp_mode: Mode,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Native,
    Generic,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xvrd: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let tables = xvr::load_tables(&args.config)?;
    let signals = block_termination_signals();
    let mode = match args.xdp_mode {
        Mode::Native => AttachMode::Native,
        Mode::Generic => AttachMode::Generic,
    };
    let mut router = Router::start(&tables, mode)?;
    eprintln!("xvrd: forwarding on {} ports", tables.ports().len());
    let (signal, stats) = router.run_while(&tables, || wait_for(&signals));
    eprintln!("xvrd: signal {signal}, stopping");
    for (name, n) in stats.nonzero_events().chain(stats.nonzero_drops()) {
        eprintln!("xvrd:   {name} {n}");
    }
    drop(router);
    Ok(())
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
