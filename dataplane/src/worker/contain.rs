//! The second line of defence: a frame must never stop a worker. The data
//! path checks every bound it reads, but should a batch still panic, the
//! panic is caught here, the whole batch is dropped and counted, the first
//! such batch's bytes are logged, and the worker goes on with the next.
//! A thread that died would leave its queues undrained for good.
use crate::frame::Frame;
use crate::pipeline::{DropReason, Pipeline, Verdict};
use crate::table::Tables;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of each frame logged after the first panic.
const LOGGED_BYTES: usize = 64;

/// Panics caught in all workers of this process.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Runs `frames` through `pipeline`; after a panic every frame of the
/// batch is dropped as `worker_panic`, and `panics` counts the batch.
pub(super) fn run(
    pipeline: &mut Pipeline,
    tables: &Tables,
    frames: &mut [Frame<'_>],
    panics: &mut u64,
) {
    run_with(pipeline, frames, panics, |p, frames| p.run(tables, frames));
}

fn run_with(
    pipeline: &mut Pipeline,
    frames: &mut [Frame<'_>],
    panics: &mut u64,
    stages: impl FnOnce(&mut Pipeline, &mut [Frame<'_>]),
) {
    // A panic leaves the pipeline's state as it was at the panic: every
    // structure stays memory-safe, at worst a session half made, which
    // expires as any other.
    let ran = catch_unwind(AssertUnwindSafe(|| stages(pipeline, frames)));
    if ran.is_ok() {
        return;
    }
    *panics += 1;
    if CAUGHT.fetch_add(1, Ordering::Relaxed) == 0 {
        for (i, frame) in frames.iter().enumerate() {
            let data = frame.data();
            let head = data.get(..LOGGED_BYTES).unwrap_or(data);
            eprintln!(
                "xvr: worker panic: batch frame {i} on port {}, {} bytes: {}",
                frame.meta.in_port,
                data.len(),
                hex(head)
            );
        }
    }
    for frame in frames.iter_mut() {
        pipeline.stats.drop(DropReason::WorkerPanic);
        frame.meta.verdict = Verdict::Drop(DropReason::WorkerPanic);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps a flood of panicking frames from flooding the log: the panic
/// message of a worker thread (named `xvr-worker-*`) is printed the first
/// time only; `worker_panics` in the stats counts the rest.
pub fn quiet_repeated_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("xvr-worker"));
        if in_worker && CAUGHT.load(Ordering::Relaxed) > 0 {
            return;
        }
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_batch_is_dropped_and_counted() {
        let mut pipeline = Pipeline::new();
        let mut bufs = vec![vec![0u8; crate::frame::FRAME_SIZE]; 3];
        let mut frames: Vec<Frame<'_>> = bufs
            .iter_mut()
            .map(|b| Frame::with_data(b, &[0xab; 35], 1))
            .collect();
        let mut panics = 0;
        run_with(&mut pipeline, &mut frames, &mut panics, |_, _| {
            panic!("a frame the data path did not expect")
        });
        assert_eq!(panics, 1);
        assert!(frames
            .iter()
            .all(|f| f.meta.verdict == Verdict::Drop(DropReason::WorkerPanic)));
        assert_eq!(pipeline.stats.drops_of(DropReason::WorkerPanic), 3);
        // And the same pipeline goes on.
        run_with(&mut pipeline, &mut frames, &mut panics, |_, _| {});
        assert_eq!(panics, 1);
    }
}
