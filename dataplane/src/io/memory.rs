//! In-memory I/O: copies each input frame into a buffer with headroom,
//! runs batches of `BATCH_SIZE` through the pipeline, and hands every frame
//! with its verdict to a callback. Buffers are allocated once and reused.
use crate::frame::{Frame, BATCH_SIZE, FRAME_SIZE};
use crate::pipeline::{Pipeline, Verdict};
use crate::table::{PortId, Tables};

pub struct MemoryIo {
    buffers: Vec<Vec<u8>>,
}

impl Default for MemoryIo {
    fn default() -> Self {
        MemoryIo {
            buffers: (0..BATCH_SIZE).map(|_| vec![0u8; FRAME_SIZE]).collect(),
        }
    }
}

impl MemoryIo {
    pub fn new() -> Self {
        Self::default()
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
