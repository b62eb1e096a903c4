//! Every counter the data plane keeps, in one place:
//! - `Stats`: the pipeline's, per worker: a count per `DropReason` and per
//!   `Event`, each with a stable name (defined in `pipeline::stats`);
//! - `WorkerCounters`: the worker loop's (frames in and out, idle passes,
//!   handoffs, caught panics);
//! - `PortCounters`: frames and bytes per interface;
//! - `TenantCounters`: frames per tenant (`tally` keeps them by name);
//! - `SocketDrops`: what the kernel dropped before a worker saw it;
//! - `UmemChunks`: where a worker's buffers are.
//!
//! All are plain integers owned by one worker, summed by whoever reads
//! them; the steering program's per-CPU decision counters are
//! `xvr_ebpf::DecisionCounters`.
pub use crate::pipeline::{DropReason, Event, Stats};

/// Per-worker counters beyond the pipeline's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerCounters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Forwarded frames dropped because the output TX ring was full.
    pub tx_ring_full: u64,
    /// Passes that found nothing.
    pub idle_passes: u64,
    /// Frames other workers handed to this one (their NAT sessions are
    /// here).
    pub handed_in: u64,
    /// Batches in which the pipeline panicked: each was dropped whole
    /// (its frames counted as `worker_panic` drops) and the worker went on.
    pub panics: u64,
    /// Times the worker's thread caught a panic outside a batch and
    /// started it again with new sockets.
    pub restarts: u64,
}

/// Frames and bytes received and sent on an interface.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl PortCounters {
    pub fn add(&mut self, other: &PortCounters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
    }
}

/// What one tenant's frames did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TenantCounters {
    /// Frames classified into the tenant (from its VM ports, its VNI, or
    /// to its public addresses).
    pub rx: u64,
    pub tx: u64,
    pub dropped: u64,
}

impl TenantCounters {
    pub fn add(&mut self, other: &TenantCounters) {
        self.rx += other.rx;
        self.tx += other.tx;
        self.dropped += other.dropped;
    }
}

/// Frames the kernel could not hand to a worker's sockets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SocketDrops {
    /// RX ring full: the worker did not keep up.
    pub rx_ring_full: u64,
    /// No free chunk in the fill ring.
    pub fill_ring_empty: u64,
    /// Other receive drops (e.g. a frame larger than a chunk).
    pub rx_dropped: u64,
    /// Received on an interface that was no port of the tables then.
    pub unknown_port: u64,
}

/// A worker's UMEM chunks: all, free, and lent to the sockets' rings
/// (`XskPorts::chunks`); between passes free + lent = all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UmemChunks {
    pub all: u32,
    pub free: u32,
    pub lent: u32,
}
