//! Telling a service manager how xvrd is (sd_notify(3), through the
//! `sd-notify` crate): ready once it forwards and serves its control
//! socket, stopping on a signal, and a watchdog kept only while every
//! worker reports, so that systemd restarts an xvrd whose worker hung
//! (the state directory brings its committed state back). Without
//! `NOTIFY_SOCKET` every call is a no-op.
use crate::mailbox::Live;
use sd_notify::NotifyState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Startup is finished: `status` says what runs.
pub fn ready(status: &str) {
    let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Shutdown has begun.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Until `stop`: if the service manager asked for a watchdog, pings it
/// twice per interval while every worker reports within a second; a
/// worker that stops reporting stops the pings, and the manager restarts
/// xvrd once the interval passes.
pub fn watchdog(live: &Live, stop: &AtomicBool) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(10));
    let mut stalled = false;
    let mut last_ping: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if last_ping.is_none_or(|t| t.elapsed() >= every) {
            last_ping = Some(Instant::now());
            if live.all_alive() {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                stalled = false;
            } else if !stalled {
                tracing::error!("a worker stopped reporting; the watchdog is left to expire");
                let _ = sd_notify::notify(&[NotifyState::Status("a worker stopped reporting")]);
                stalled = true;
            }
        }
        // Short sleeps, so a stop is seen at once.
        std::thread::sleep(every.min(Duration::from_millis(100)));
    }
}
