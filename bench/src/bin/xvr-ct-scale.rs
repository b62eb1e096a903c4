//! Established sessions at scale against themselves, in one run: the work
//! of `conntrack/established_1k_sessions` and `established_1m_sessions`
//! (the same pipelines and inputs) in alternating rounds, so that the
//! machine's noise falls on both alike, and the ratio of their times per
//! packet, round by round. Criterion runs the two one after the other,
//! seconds apart, and on a shared machine their ratio swings more than the
//! difference it is meant to show.
//!
//! `xvr-ct-scale [ROUNDS]` (default 21; each round runs both for about
//! 20 ms, in turns that swap which goes first).
use std::time::{Duration, Instant};
use xvr_bench::{established_sessions, example_tables, reset, Batches, Buffers};
use xvr_dataplane::frame::BATCH_SIZE;
use xvr_dataplane::table::Tables;
use xvr_dataplane::Pipeline;

/// Batches per round and workload.
const BATCHES: usize = 2048;

struct Workload {
    pipeline: Pipeline,
    inputs: Batches,
    buffers: Buffers,
    next: usize,
}

impl Workload {
    fn new(tables: &Tables, sessions: u32) -> Workload {
        let (pipeline, inputs) = established_sessions(tables, sessions);
        Workload {
            pipeline,
            inputs,
            buffers: Buffers::default(),
            next: 0,
        }
    }

    /// Nanoseconds per packet over `BATCHES` batches.
    fn round(&mut self, tables: &Tables) -> f64 {
        let mut frames = self.buffers.frames(&self.inputs[0]);
        let mut took = Duration::ZERO;
        for _ in 0..BATCHES {
            reset(&mut frames, &self.inputs[self.next % self.inputs.len()]);
            self.next += 1;
            let start = Instant::now();
            self.pipeline.run(tables, std::hint::black_box(&mut frames));
            took += start.elapsed();
        }
        took.as_nanos() as f64 / (BATCHES * BATCH_SIZE) as f64
    }
}

/// The value at fraction `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("usage: xvr-ct-scale [ROUNDS]"))
        .unwrap_or(21);
    let tables = example_tables();
    let mut small = Workload::new(&tables, 1 << 10);
    let mut large = Workload::new(&tables, 1 << 20);
    // A first round each, not counted: caches and branch predictors.
    small.round(&tables);
    large.round(&tables);
    let (mut ns_small, mut ns_large, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (s, l) = match r % 2 {
            0 => (small.round(&tables), large.round(&tables)),
            _ => {
                let l = large.round(&tables);
                (small.round(&tables), l)
            }
        };
        ns_small.push(s);
        ns_large.push(l);
        ratios.push(l / s);
    }
    for (w, name) in [(&small, "1k"), (&large, "1m")] {
        assert_eq!(
            w.pipeline.stats.total_drops(),
            0,
            "{name}: {:?}",
            w.pipeline.stats
        );
    }
    for v in [&mut ns_small, &mut ns_large, &mut ratios] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{rounds} rounds of {} packets each: 1k sessions {:.1} ns/packet, 1m sessions {:.1} (medians)",
        BATCHES * BATCH_SIZE,
        quantile(&ns_small, 0.5),
        quantile(&ns_large, 0.5)
    );
    println!(
        "1m/1k per round: median {:.3}, quartiles {:.3} to {:.3}, range {:.3} to {:.3}",
        quantile(&ratios, 0.5),
        quantile(&ratios, 0.25),
        quantile(&ratios, 0.75),
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
