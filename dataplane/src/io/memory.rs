//! In-memory I/O: copies each input frame into a buffer with headroom,
//! runs batches of `BATCH_SIZE` through the pipeline, and hands every frame
//! with its verdict to a callback. Buffers are allocated once and reused.
//!
//! As a `FrameIo` (for a `Worker`), it has one source: frames queued with
//! `push`, and the frames the pipeline transmits collect in `sent`.
use super::{Exchanged, FrameIo};
use crate::frame::{Frame, BATCH_SIZE, FRAME_SIZE, HEADROOM};
use crate::pipeline::{Meta, Pipeline, Verdict};
use crate::table::{PortId, Tables};
use std::collections::VecDeque;

pub struct MemoryIo {
    buffers: Vec<Vec<u8>>,
    inbox: VecDeque<(PortId, Vec<u8>)>,
    /// (output port, bytes) of every frame transmitted, in order.
    pub sent: Vec<(PortId, Vec<u8>)>,
}

impl Default for MemoryIo {
    fn default() -> Self {
        MemoryIo {
            buffers: (0..BATCH_SIZE).map(|_| vec![0u8; FRAME_SIZE]).collect(),
            inbox: VecDeque::new(),
            sent: Vec::new(),
        }
    }
}

impl FrameIo for MemoryIo {
    fn sources(&self) -> usize {
        1
    }

    fn exchange(&mut self, _source: usize, process: impl FnOnce(&mut [Frame<'_>])) -> Exchanged {
        let mut frames: Vec<Frame<'_>> = Vec::with_capacity(BATCH_SIZE);
        for buf in self.buffers.iter_mut() {
            let Some((port, data)) = self.inbox.pop_front() else {
                break;
            };
            frames.push(Frame::with_data(buf, &data, port));
        }
        process(&mut frames);
        Self::transmit(&mut self.sent, &frames)
    }

    fn inject(
        &mut self,
        mut make: impl FnMut(&mut [u8]) -> Option<(usize, Meta)>,
        process: impl FnOnce(&mut [Frame<'_>]),
    ) -> Exchanged {
        let mut frames: Vec<Frame<'_>> = Vec::with_capacity(BATCH_SIZE);
        for buf in self.buffers.iter_mut() {
            let Some((len, meta)) = buf.get_mut(HEADROOM..).and_then(&mut make) else {
                break;
            };
            let mut frame = Frame::new(buf, HEADROOM, len, meta.in_port);
            frame.meta = meta;
            frames.push(frame);
        }
        process(&mut frames);
        Self::transmit(&mut self.sent, &frames)
    }
}

impl MemoryIo {
    pub fn new() -> Self {
        Self::default()
    }

    fn transmit(sent: &mut Vec<(PortId, Vec<u8>)>, frames: &[Frame<'_>]) -> Exchanged {
        let mut done = Exchanged {
            received: frames.len(),
            ..Exchanged::default()
        };
        for frame in frames {
            if let Verdict::Tx(out) = frame.meta.verdict {
                sent.push((out, frame.data().to_vec()));
                done.transmitted += 1;
            }
        }
        done
    }

    /// Queues a frame received on `port` for the next `exchange`.
    pub fn push(&mut self, port: PortId, data: &[u8]) {
        self.inbox.push_back((port, data.to_vec()));
    }

    /// Runs `input` (frames with the port they arrived on) through the
    /// pipeline in order, calling `output(in_port, verdict, bytes)` for each.
    pub fn run<'i>(
        &mut self,
        pipeline: &mut Pipeline,
        tables: &Tables,
        input: impl IntoIterator<Item = (PortId, &'i [u8])>,
        mut output: impl FnMut(PortId, Verdict, &[u8]),
    ) {
        let mut input = input.into_iter().peekable();
        while input.peek().is_some() {
            let mut frames: Vec<Frame<'_>> = Vec::with_capacity(BATCH_SIZE);
            for buf in self.buffers.iter_mut() {
                let Some((port, data)) = input.next() else {
                    break;
                };
                frames.push(Frame::with_data(buf, data, port));
            }
            pipeline.run(tables, &mut frames);
            for frame in &frames {
                output(frame.meta.in_port, frame.meta.verdict, frame.data());
            }
            // Later fragments of packets cut for the overlay, as a worker
            // sends them after the batch.
            for (bytes, meta) in pipeline.fragments.drain() {
                output(meta.in_port, meta.verdict, bytes);
            }
        }
    }

    /// Runs one frame and returns its verdict and bytes (tests).
    pub fn run_one(
        &mut self,
        pipeline: &mut Pipeline,
        tables: &Tables,
        port: PortId,
        data: &[u8],
    ) -> (Verdict, Vec<u8>) {
        let mut result = (Verdict::Pending, Vec::new());
        self.run(pipeline, tables, [(port, data)], |_, verdict, out| {
            result = (verdict, out.to_vec())
        });
        result
    }
}
