//! A poll-mode worker: one thread running the pipeline to completion over
//! the receive sources of its I/O. Each pass takes up to a batch from every
//! source and transmits what the pipeline forwards; when a pass finds
//! nothing, the idle policy decides whether to sleep or spin.
mod contain;

pub use contain::quiet_repeated_panics;

pub use crate::counters::WorkerCounters;
use crate::handoff::Handoff;
use crate::io::FrameIo;
use crate::pipeline::Pipeline;
use crate::service::{self, PortBudget, ServiceLink};
use crate::table::Tables;
use crate::tally::TenantTally;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Where a worker gets its tables: fixed ones, or a snapshot that the
/// control plane swaps atomically (`ArcSwap`: a load per pass, no lock,
/// no shared counter written).
pub trait TableSource: Sync {
    /// Runs `f` on the tables current now.
    fn with_current<R>(&self, f: impl FnOnce(&Tables) -> R) -> R;
}

impl TableSource for Tables {
    fn with_current<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(self)
    }
}

impl TableSource for ArcSwap<Tables> {
    fn with_current<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(&self.load())
    }
}

/// What a worker does when a pass finds no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Idle {
    /// Sleep in poll() on the sockets, so an idle router does not burn a
    /// core (need_wakeup tells the kernel to wake us).
    #[default]
    Sleep,
    /// Spin: lowest latency, one core at 100% whatever the load.
    BusyPoll,
}

/// Busy passes between two reports (a few milliseconds at full load).
const REPORT_EVERY: u32 = 1024;

/// Longest sleep, so a stop request is noticed.
const SLEEP_MS: i32 = 10;

pub struct Worker<I: FrameIo> {
    pub io: I,
    pub pipeline: Pipeline,
    pub counters: WorkerCounters,
    pub tenants: TenantTally,
    /// Session timeouts count from here.
    started: Instant,
    handoff: Option<Handoff>,
    /// Where requests to the router's services go, and replies come from.
    services: Option<ServiceLink>,
    /// Each port's requests to the services this second.
    service_budget: PortBudget,
    /// The generation of the tables last seen (None: none yet).
    generation: Option<u32>,
}

impl<I: FrameIo> Worker<I> {
    pub fn new(io: I) -> Worker<I> {
        Self::with_pipeline(io, Pipeline::new())
    }

    pub fn with_pipeline(io: I, pipeline: Pipeline) -> Worker<I> {
        Worker {
            io,
            pipeline,
            counters: WorkerCounters::default(),
            tenants: TenantTally::default(),
            started: Instant::now(),
            handoff: None,
            services: None,
            service_budget: PortBudget::default(),
            generation: None,
        }
    }

    /// Joins the workers that hand each other frames (see `handoff`).
    pub fn with_handoff(mut self, handoff: Handoff) -> Self {
        self.io.watch(handoff.wake_fd());
        self.handoff = Some(handoff);
        self
    }

    /// Joins the router's services (see `crate::service`).
    pub fn with_services(mut self, link: ServiceLink) -> Self {
        self.io.watch(link.wake_fd());
        self.services = Some(link);
        self
    }

    /// After `io` was replaced (a restart with new sockets): the handoff's
    /// wake-up is watched again, and the next pass gives the new sockets
    /// their ports from the tables.
    pub fn io_replaced(&mut self) {
        if let Some(handoff) = &self.handoff {
            self.io.watch(handoff.wake_fd());
        }
        if let Some(services) = &self.services {
            self.io.watch(services.wake_fd());
        }
        self.generation = None;
    }

    /// One pass over every source; returns the number of frames received.
    pub fn poll(&mut self, tables: &Tables) -> usize {
        // A vDSO clock read, once per pass: no syscall.
        self.pipeline.now = self.started.elapsed().as_secs() as u32;
        if self.generation != Some(tables.generation()) {
            self.generation = Some(tables.generation());
            self.io.tables_changed(tables);
            // A deleted tenant's sessions and mappings die with it.
            let vacated = self.tenants.vacated(tables);
            self.pipeline.conntrack.flush_zones(&vacated);
            self.pipeline.withdraw_closed(tables);
            self.tenants.follow(tables);
        }
        self.io.service();
        let mut received = 0;
        let (pipeline, handoff, tenants) = (&mut self.pipeline, &self.handoff, &mut self.tenants);
        let (services, budget) = (&self.services, &mut self.service_budget);
        let panics = &mut self.counters.panics;
        let mut process = |frames: &mut [crate::Frame<'_>]| {
            contain::run(pipeline, tables, frames, panics);
            if let Some(handoff) = handoff {
                handoff.send(frames, &mut pipeline.stats);
            }
            match services {
                Some(link) => {
                    let budget = (tables, &mut *budget, pipeline.now);
                    link.send(frames, budget, &mut pipeline.stats)
                }
                None => service::refuse_without_services(frames, &mut pipeline.stats),
            }
            tenants.count(frames);
        };
        for source in 0..self.io.sources() {
            let done = self.io.exchange(source, &mut process);
            received += done.received;
            self.counters.tx_packets += done.transmitted as u64;
            self.counters.tx_ring_full += done.tx_full as u64;
        }
        self.counters.rx_packets += received as u64;
        if let Some(handoff) = handoff {
            while handoff.waiting() > 0 {
                let done = self
                    .io
                    .inject(|buf| handoff.receive_into(buf), &mut process);
                if done.received == 0 {
                    break; // no free buffer: next pass
                }
                received += done.received;
                self.counters.handed_in += done.received as u64;
                self.counters.tx_packets += done.transmitted as u64;
                self.counters.tx_ring_full += done.tx_full as u64;
            }
        }
        // From the services: replies built whole for their port, and
        // queries to route (a DNS query to an upstream).
        if let Some(link) = services {
            while link.waiting() > 0 {
                let done = self.io.inject(|buf| link.receive_into(buf), &mut process);
                if done.received == 0 {
                    break; // no free buffer: next pass
                }
                self.counters.tx_packets += done.transmitted as u64;
                self.counters.tx_ring_full += done.tx_full as u64;
            }
        }
        // Later fragments of packets cut for the overlay: built whole,
        // they only need buffers and the uplink.
        while self.pipeline.fragments.waiting() > 0 {
            let fragments = &mut self.pipeline.fragments;
            let done = self.io.inject(|buf| fragments.send_into(buf), |_| {});
            if done.received == 0 {
                break; // no free buffer: next pass
            }
            self.counters.tx_packets += done.transmitted as u64;
            self.counters.tx_ring_full += done.tx_full as u64;
        }
        received
    }

    /// Polls until `stop` is set.
    pub fn run(&mut self, tables: &impl TableSource, idle: Idle, stop: &AtomicBool) {
        self.run_reporting(tables, idle, stop, |_| {});
    }

    /// `run`, calling `report` every `REPORT_EVERY` busy passes and after
    /// every idle one, so readers (the control socket) see recent
    /// counters without touching the per-packet path.
    pub fn run_reporting(
        &mut self,
        tables: &impl TableSource,
        idle: Idle,
        stop: &AtomicBool,
        mut report: impl FnMut(&mut Self),
    ) {
        let mut busy = 0u32;
        while !stop.load(Ordering::Relaxed) {
            // One snapshot per pass: every frame of a batch sees the same
            // tables, old or new, never a mix.
            if tables.with_current(|t| self.poll(t)) > 0 {
                busy = busy.wrapping_add(1);
                if busy.is_multiple_of(REPORT_EVERY) {
                    report(self);
                }
                continue;
            }
            report(self);
            self.counters.idle_passes += 1;
            match idle {
                Idle::Sleep => {
                    if self.handoff.as_ref().is_some_and(|h| !h.may_sleep())
                        || self.services.as_ref().is_some_and(|s| !s.may_sleep())
                    {
                        continue;
                    }
                    self.io.wait(SLEEP_MS);
                    if let Some(handoff) = &self.handoff {
                        handoff.awake();
                    }
                    if let Some(services) = &self.services {
                        services.awake();
                    }
                }
                Idle::BusyPoll => self.io.wake_fill(),
            }
        }
    }
}
