//! I/O backends behind one trait, so a worker runs the same loop over
//! AF_XDP rings (`xsk`, the live data path) and over frames held in memory
//! (`memory`: tests, replay, benches).
use crate::frame::Frame;
use crate::pipeline::Meta;

pub mod memory;
pub mod xsk;
pub mod xsk_ports;

/// What one exchange did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Exchanged {
    pub received: usize,
    pub transmitted: usize,
    /// Frames whose verdict was Tx but whose output ring was full.
    pub tx_full: usize,
}

/// A set of receive sources (one per bound port and queue) and the
/// transmit side of every port.
pub trait FrameIo {
    /// Number of receive sources.
    fn sources(&self) -> usize;

    /// Housekeeping before a pass: reclaim transmitted frames and post
    /// free ones for receiving.
    fn service(&mut self) {}

    /// Takes up to a batch from `source`, lets `process` set every frame's
    /// verdict, then transmits each frame on its output port or frees it.
    fn exchange(&mut self, source: usize, process: impl FnOnce(&mut [Frame<'_>])) -> Exchanged;

    /// Builds up to a batch of frames with `make` (which writes a frame
    /// into the buffer it is given, after the headroom, and returns its
    /// length and meta, or None when it has no more), then goes on as
    /// `exchange` does. For frames handed over by another worker.
    fn inject(
        &mut self,
        make: impl FnMut(&mut [u8]) -> Option<(usize, Meta)>,
        process: impl FnOnce(&mut [Frame<'_>]),
    ) -> Exchanged;

    /// New tables are current (ports may have come or gone).
    fn tables_changed(&mut self, _tables: &crate::Tables) {}

    /// Sleeps until a source may have frames, `timeout_ms` at most.
    fn wait(&mut self, _timeout_ms: i32) {}

    /// Also wakes `wait` when `fd` becomes readable.
    fn watch(&mut self, _fd: std::os::fd::RawFd) {}

    /// Asks the kernel to look at the fill rings when it wants to be
    /// woken (busy polling never sleeps in `wait`, so it does this instead).
    fn wake_fill(&mut self) {}
}
