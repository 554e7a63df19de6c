//! Throughput of the portable RNG fills (elements/s): the CPU backend regenerates every
//! perturbation from these, so they bound how fast a dense or low-rank direction can be drawn.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use zo::rng::{Stream, PAR_MIN_LEN};

fn fills(c: &mut Criterion) {
    let s = Stream::new(0x1234_5678_9abc_def0, 3, 1);
    let mut g = c.benchmark_group("rng_fill");
    // One serial-size fill and one big enough to go parallel.
    for n in [PAR_MIN_LEN / 2, 1 << 22] {
        let mut out = vec![0f32; n];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("gaussian", n), &n, |b, _| {
            b.iter(|| s.fill_gaussian(black_box(1), &mut out))
        });
        g.bench_with_input(BenchmarkId::new("rademacher", n), &n, |b, _| {
            b.iter(|| s.fill_rademacher(black_box(1), &mut out))
        });
        let mut raw = vec![0u32; n];
        g.bench_with_input(BenchmarkId::new("raw", n), &n, |b, _| {
            b.iter(|| s.fill_raw(black_box(1), &mut raw))
        });
    }
    g.finish();
}

criterion_group!(benches, fills);
criterion_main!(benches);
