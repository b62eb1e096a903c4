//! xvrd's logs, through `tracing`: one line per event on stderr, for
//! people (`--log-format text`, the default) or for log shippers
//! (`--log-format json`, one object per line with the event's fields),
//! at `--log-level` and above.
use clap::ValueEnum;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the process's subscriber; `level` is a level (`info`) or a
/// filter in `RUST_LOG` syntax.
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("--log-level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| format!("logging: {e}"))
}

/// How often the drops of the last interval are logged, at most.
pub const DROP_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Until `stop`: every `every`, one line with the frames dropped since
/// the last, by reason (none if nothing was dropped), so a flood of
/// drops is seen in the logs without a line per frame.
pub fn sample_drops(live: &crate::mailbox::Live, stop: &AtomicBool, every: std::time::Duration) {
    let total = || live.totals().stats;
    let mut before = total();
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(every.min(std::time::Duration::from_millis(100)));
        if last.elapsed() < every {
            continue;
        }
        last = std::time::Instant::now();
        let now = total();
        let dropped: Vec<String> = xvr_dataplane::DropReason::ALL
            .iter()
            .filter_map(|r| {
                let n = now.drops_of(*r).saturating_sub(before.drops_of(*r));
                (n > 0).then(|| format!("{} {n}", r.name()))
            })
            .collect();
        if !dropped.is_empty() {
            let drops = dropped.join(", ");
            tracing::info!(drops, "dropped in the last {} s: {drops}", every.as_secs());
        }
        before = now;
    }
}
