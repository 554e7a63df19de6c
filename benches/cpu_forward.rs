//! CPU reference forward over a packed plan: 16 sequences of ~48 tokens, each scored at its
//! last row, on random weights in the SmolLM2-135M shape and in a small OPT shape.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zo::backend::cpu::CpuBackend;
use zo::backend::Backend;
use zo::model::{Model, ModelConfig};
use zo::plan::{Plan, TokenizedExample, Variant};

/// 16 prompts of 40–56 tokens, two single-token candidates each: one forward, one packed
/// sequence per prompt.
fn plan(vocab: u32) -> Plan {
    let examples: Vec<TokenizedExample> = (0..16u32)
        .map(|i| TokenizedExample {
            prompt: (0..40 + i)
                .map(|j| (j * 7919 + i * 104_729) % vocab)
                .collect(),
            candidates: vec![vec![11], vec![12]],
            gold: (i % 2) as usize,
            answers: Vec::new(),
        })
        .collect();
    Plan::build(&examples, &[Variant::BASE]).expect("bench plan")
}

fn small_opt() -> ModelConfig {
    ModelConfig {
        vocab_size: 50272,
        hidden_size: 256,
        embed_dim: 256,
        intermediate_size: 1024,
        num_layers: 6,
        num_heads: 4,
        num_kv_heads: 4,
        head_dim: 64,
        max_position_embeddings: 2048,
        ..ModelConfig::tiny_opt()
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_forward");
    group.sample_size(10);
    for (name, config) in [
        ("smollm2_135m", ModelConfig::smollm2_135m()),
        ("opt_small", small_opt()),
    ] {
        let plan = plan(config.vocab_size as u32);
        let backend = CpuBackend::new(Model::random(config, 0));
        group.throughput(Throughput::Elements(plan.n_tokens() as u64));
        group.bench_with_input(BenchmarkId::new("score", name), &plan, |b, plan| {
            b.iter(|| backend.score(plan).expect("score"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
