//! Runs one pipeline path for a number of batches, for instruction counting
//! under `valgrind --tool=callgrind` (scripts/insn-count runs it twice with
//! different batch counts and divides the difference, so setup cancels).
//!
//! `xvr-insn PATH BATCHES [reset-only|offering]`, PATH one of the
//! `pipeline` bench ids; `reset-only` skips the pipeline, to count the
//! harness's own share; `offering` runs it with flow offload on (a sink
//! that installs nothing), to count what offering costs the packets that
//! still reach a worker.
use xvr_bench::{check_path, example_tables, reset, Buffers, Path};
use xvr_dataplane::{ArrivingFlow, FlowOffload, Offer, Pipeline};

/// Takes every offer and installs nothing.
struct NoMap;

impl FlowOffload for NoMap {
    fn install(&mut self, offer: &Offer) {
        std::hint::black_box(offer);
    }
    fn withdraw(&mut self, flow: &ArrivingFlow) {
        std::hint::black_box(flow);
    }
    fn idle_for(&mut self, _: &ArrivingFlow) -> Option<u32> {
        None
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: xvr-insn PATH BATCHES (PATH: a pipeline bench id, e.g. east_west_64 or snat_established_64)";
    let path = args.next().and_then(|p| Path::from_id(&p)).expect(usage);
    let batches: u64 = args.next().and_then(|n| n.parse().ok()).expect(usage);
    let mode = args.next();
    let reset_only = mode.as_deref() == Some("reset-only");
    let tables = example_tables();
    check_path(path, &tables);
    let inputs = path.inputs(&tables);
    let mut buffers = Buffers::default();
    let mut frames = buffers.frames(&inputs);
    let mut pipeline = Pipeline::new();
    if mode.as_deref() == Some("offering") {
        pipeline.offload = Some(Box::new(NoMap));
    }
    path.prime(&mut pipeline, &tables);
    for _ in 0..batches {
        reset(&mut frames, &inputs);
        if !reset_only {
            pipeline.run(&tables, std::hint::black_box(&mut frames));
        }
        std::hint::black_box(&mut frames);
    }
    println!(
        "{} batches of {}: {:?}",
        batches,
        frames.len(),
        pipeline.stats.nonzero_events().collect::<Vec<_>>()
    );
}
