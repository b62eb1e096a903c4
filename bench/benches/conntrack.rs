//! `conntrack/*`: sessions through the whole pipeline (acme-web to the
//! internet through source NAT, UDP), a batch of 64 frames per iteration.
//! - `session_setup`: every frame opens a new session (a fresh 5-tuple);
//!   criterion reports new sessions per second. `session_setup_saved`
//!   the same with each session written to a session file on tmpfs, as
//!   xvrd's workers do.
//! - `established_1k_sessions`, `established_1m_sessions`: frames of
//!   established sessions picked at random among 1k or 1M live ones, so
//!   the 1M case pays its cache misses.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xvr_bench::{
    established_sessions, example_tables, first_packets, flow_batches, pipeline_for, reset, Buffers,
};
use xvr_dataplane::conntrack::{SessionFile, Writer};
use xvr_dataplane::frame::BATCH_SIZE;
use xvr_dataplane::table::Tables;

fn session_setup(c: &mut Criterion, tables: &Tables) {
    // 2^18 fresh flows; when they are used up, a new pipeline (untimed).
    const FLOWS: u32 = 1 << 18;
    let inputs = flow_batches(tables, 0..FLOWS);
    let mut group = c.benchmark_group("conntrack");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    group.bench_function("session_setup", |b| {
        b.iter_custom(first_packets(tables, &inputs, || pipeline_for(FLOWS)))
    });
    // /dev/shm where it exists: tmpfs, as xvrd's default.
    let shm = std::path::Path::new("/dev/shm");
    let dir = match shm.is_dir() {
        true => tempfile::tempdir_in(shm),
        false => tempfile::tempdir(),
    }
    .unwrap();
    let path = dir.path().join("worker-0.sessions");
    let saving = || {
        let mut pipeline = pipeline_for(FLOWS);
        let writer = Writer {
            worker: 0,
            workers: 1,
        };
        let resumed = SessionFile::resume(&path, FLOWS, writer).unwrap();
        pipeline.conntrack.save_to(resumed.file);
        pipeline
    };
    group.bench_function("session_setup_saved", |b| {
        b.iter_custom(first_packets(tables, &inputs, saving))
    });
    group.finish();
}

fn established(c: &mut Criterion, tables: &Tables, id: &str, sessions: u32) {
    let (mut pipeline, inputs) = established_sessions(tables, sessions);
    let mut buffers = Buffers::default();
    let mut frames = buffers.frames(&inputs[0]);
    let mut group = c.benchmark_group("conntrack");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    let mut next = 0;
    group.bench_function(id, |b| {
        b.iter(|| {
            reset(&mut frames, &inputs[next % inputs.len()]);
            next += 1;
            pipeline.run(tables, std::hint::black_box(&mut frames));
        })
    });
    group.finish();
    assert_eq!(pipeline.stats.total_drops(), 0, "{:?}", pipeline.stats);
}

fn conntrack(c: &mut Criterion) {
    let tables = example_tables();
    session_setup(c, &tables);
    established(c, &tables, "established_1k_sessions", 1 << 10);
    established(c, &tables, "established_1m_sessions", 1 << 20);
}

criterion_group!(benches, conntrack);
criterion_main!(benches);
