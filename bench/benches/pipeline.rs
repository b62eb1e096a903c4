//! `pipeline/<path>`: one batch of 64 frames through every stage per
//! iteration; criterion reports packets/s (Throughput::Elements(64)).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xvr_bench::{check_path, example_tables, reset, Buffers, Path};
use xvr_dataplane::frame::BATCH_SIZE;
use xvr_dataplane::Pipeline;

fn pipeline(c: &mut Criterion) {
    let tables = example_tables();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for path in Path::ALL {
        check_path(path, &tables);
        let inputs = path.inputs(&tables);
        let mut buffers = Buffers::default();
        let mut frames = buffers.frames(&inputs);
        let mut pipeline = Pipeline::new();
        path.prime(&mut pipeline, &tables);
        group.bench_function(path.id(), |b| {
            b.iter(|| {
                reset(&mut frames, &inputs);
                pipeline.run(&tables, std::hint::black_box(&mut frames));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
