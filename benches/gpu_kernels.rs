//! GPU kernel microbenchmarks: elements/s and bytes/s of each kernel family's launcher, timed
//! with `iter_custom` around a device synchronisation so queued launches are counted in full.
//! Without the `cuda` feature, kernels or a GPU, prints why and exits 0.
//!
//! Families slot in as one function each taking `(&mut Criterion, &CudaDevice)`, listed in
//! `FAMILIES`. Groups named `*_flops` count FLOPs as criterion elements (so "elem/s" reads
//! FLOP/s); groups named `*_bytes` count the bytes a kernel must move at least once.

#[cfg(feature = "cuda")]
mod gpu {
    use std::cell::RefCell;
    use std::time::{Duration, Instant};

    use criterion::{BenchmarkId, Criterion, Throughput};
    use zo::backend::cuda::kernels::adapter::DeviceSegments;
    use zo::backend::cuda::kernels::attention::{PrefillAttention, QkvLayout, SeqTables, PAGE};
    use zo::backend::cuda::kernels::decode::{DecodeAttention, NoiseRows};
    use zo::backend::cuda::kernels::loss::Logits;
    use zo::backend::cuda::kernels::ops::{NormWeights, RowShape};
    use zo::backend::cuda::kernels::rng::Draw;
    use zo::backend::cuda::kernels::update::{Strided, UpdateDirs};
    use zo::backend::cuda::{kernels, linear, CudaDevice, DBuf, DType, GemmShape};
    use zo::backend::decode::Sampling;
    use zo::model::NormKind;
    use zo::perturb::adapter::{k_aug, padding, AugFamily, AugSite};
    use zo::perturb::{Dist, Segment};
    use zo::rng::Stream;
    use zo::Result;

    type Family = fn(&mut Criterion, &CudaDevice) -> Result<()>;

    /// Every family's benches, in kernel order.
    const FAMILIES: &[(&str, Family)] = &[
        ("rng", rng),
        ("adapter", adapter),
        ("attention", attention),
        ("decode", decode),
        ("loss", loss),
        ("update", update),
        ("ops", ops),
    ];

    /// Times `iters` calls of `f` and the synchronisation that drains them.
    fn timed(dev: &CudaDevice, iters: u64, mut f: impl FnMut()) -> Duration {
        dev.synchronize().expect("synchronize");
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        dev.synchronize().expect("synchronize");
        start.elapsed()
    }

    /// Mean microseconds per call of `f` over a fixed count, after one untimed call; for the
    /// summary lines criterion cannot print (ratios between benches).
    fn mean_us(dev: &CudaDevice, mut f: impl FnMut()) -> f64 {
        const REPS: u64 = 50;
        f();
        timed(dev, REPS, f).as_secs_f64() * 1e6 / REPS as f64
    }

    /// `n` elements of `std·N(0, 1)` drawn on the device (the seeded update applied to zeros):
    /// random operands, since a GEMM of zeros draws less power and clocks higher.
    fn random(dev: &CudaDevice, dtype: DType, n: usize, tensor: u32, std: f32) -> Result<DBuf> {
        let buf = DBuf::zeros(dev, dtype, n)?;
        let dirs = UpdateDirs::upload(dev, &[(0x5eed, std)])?;
        kernels::update::seeded_axpy(
            dev,
            buf.view(),
            Strided::flat(n),
            tensor,
            0,
            Dist::Gaussian,
            &dirs,
            None,
        )?;
        // `dirs` must outlive the launch.
        dev.synchronize()?;
        Ok(buf)
    }

    /// The RNG draw kernels, each call writing into one preallocated device buffer: the
    /// kernel's own rate. Earlier figures of these groups also timed an allocation and the
    /// device-to-host copy of every draw (a lower bound on this rate), so they read lower.
    fn rng(c: &mut Criterion, dev: &CudaDevice) -> Result<()> {
        let s = Stream::new(1, 2, 3);
        for (unit, n) in [("elements", 1usize << 20), ("elements", 1 << 24)] {
            let out = DBuf::zeros(dev, DType::F32, n)?;
            let draw = |kind: Draw| kernels::rng::draw(dev, s, 0, kind, out.view());
            draw(Draw::Gaussian)?;
            draw(Draw::Raw)?;
            let mut g = c.benchmark_group(format!("gpu_rng_{unit}"));
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new("gaussian", n), &n, |b, _| {
                b.iter_custom(|iters| timed(dev, iters, || draw(Draw::Gaussian).expect("draw")))
            });
            g.bench_with_input(BenchmarkId::new("raw", n), &n, |b, _| {
                b.iter_custom(|iters| timed(dev, iters, || draw(Draw::Raw).expect("draw")))
            });
            g.finish();
            let mut g = c.benchmark_group("gpu_rng_bytes");
            g.throughput(Throughput::Bytes(4 * n as u64));
            g.bench_with_input(BenchmarkId::new("gaussian", n), &n, |b, _| {
                b.iter_custom(|iters| timed(dev, iters, || draw(Draw::Gaussian).expect("draw")))
            });
            g.finish();
        }
        Ok(())
    }

    /// Tokens × out × in of the GEMM the adapter benches perturb (a 4096-wide Linear over a
    /// 2048-token batch), bf16 storage.
    const ROWS: usize = 2048;
    const OUT: usize = 4096;
    const IN: usize = 4096;
    /// MeZO's one direction (q = 1): a + and a − segment sharing its seed.
    const DIRS: usize = 1;
    const DIR_SEED: u64 = 0xd1;

    /// One adapter configuration: the family and rank of the augmented columns.
    struct AdapterCase {
        family: AugFamily,
        rank: usize,
    }

    impl AdapterCase {
        fn name(&self) -> String {
            let f = match self.family {
                AugFamily::LowRank => "lowrank",
                AugFamily::Lora => "lora",
            };
            format!("{f}_r{}", self.rank)
        }

        fn ld(&self) -> usize {
            k_aug(IN, self.rank, DIRS, 1)
        }

        /// A single-site group (the o or down projection's layout): the block right after the
        /// activation, the padding after it.
        fn site(&self) -> AugSite {
            AugSite {
                family: self.family,
                k: IN,
                ld: self.ld(),
                col0: IN,
                rank: self.rank,
                dirs: DIRS,
                live: true,
                scale: match self.family {
                    AugFamily::LowRank => 1.0 / (self.rank as f32).sqrt(),
                    AugFamily::Lora => 16.0 / self.rank as f32,
                },
                // bf16 has fp32's exponent range: no rescaling.
                scale_exp: 0,
                tensor_id: 7,
                dist: Dist::Gaussian,
            }
        }

        /// Bytes the shrink must move: the activation and the factor in, its block and the
        /// padding out.
        fn shrink_bytes(&self) -> u64 {
            let t = DType::Bf16.size();
            (ROWS * IN * t + self.rank * IN * 4 + ROWS * (self.ld() - IN) * t) as u64
        }

        /// Bytes the pack must move: the trained state in, the weight's block out.
        fn pack_bytes(&self) -> u64 {
            let t = DType::Bf16.size();
            (self.rank * OUT * 4 + OUT * self.site().width() * t) as u64
        }
    }

    /// The lowrank/lora perturbed GEMM against the plain one at ROWS×OUT×IN, bf16: the plain
    /// cuBLASLt GEMM (y in bf16, the benchmarks' compute floor, and y in fp32 as the forward
    /// runs it), the shrink and pack kernels that write the augmented columns, and the
    /// K-augmented GEMM. Ends with a summary of shrink+pack as a fraction of the base GEMM.
    fn adapter(c: &mut Criterion, dev: &CudaDevice) -> Result<()> {
        let t = DType::Bf16;
        let x = random(dev, t, ROWS * IN, 1, 1.0)?;
        let w = random(dev, t, OUT * IN, 2, 0.02)?;
        let y_t = DBuf::zeros(dev, t, ROWS * OUT)?;
        let y_f32 = DBuf::zeros(dev, DType::F32, ROWS * OUT)?;
        let plain = |store_y: bool| GemmShape {
            dtype: t,
            rows: ROWS,
            out: OUT,
            k: IN,
            ld_x: IN,
            ld_w: IN,
            ld_y: OUT,
            bias: false,
            accumulate: false,
            store_y,
        };
        let run_plain = |store_y: bool| {
            let y = if store_y { &y_t } else { &y_f32 };
            linear(dev, &plain(store_y), x.view(), w.view(), y.view(), None)
        };
        run_plain(true)?;
        run_plain(false)?;
        let shape_id = format!("{ROWS}x{OUT}x{IN}_bf16");

        let mut g = c.benchmark_group("gpu_gemm_flops");
        g.throughput(Throughput::Elements(plain(true).flops() as u64));
        for (name, store_y) in [("plain_y_bf16", true), ("plain_y_f32", false)] {
            g.bench_function(BenchmarkId::new(name, &shape_id), |b| {
                b.iter_custom(|iters| timed(dev, iters, || run_plain(store_y).expect("gemm")))
            });
        }
        g.finish();

        let segs = [
            Segment {
                rows: 0..ROWS / 2,
                variant: 1,
                seed: DIR_SEED,
                scale: 1e-3,
            },
            Segment {
                rows: ROWS / 2..ROWS,
                variant: 2,
                seed: DIR_SEED,
                scale: -1e-3,
            },
        ];
        let dsegs = DeviceSegments::upload(dev, &segs, &[DIR_SEED])?;
        let base_us = mean_us(dev, || run_plain(false).expect("gemm"));
        let plain_t_us = mean_us(dev, || run_plain(true).expect("gemm"));
        let mut summary = vec![format!(
            "adapter summary at {shape_id}: plain GEMM {plain_t_us:.1} µs (y bf16), \
             {base_us:.1} µs (y fp32, the forward's; the base below)"
        )];

        for rank in [16, 2] {
            // The augmented GEMM depends only on K_aug, the same for both families.
            let lowrank = AdapterCase {
                family: AugFamily::LowRank,
                rank,
            };
            let ld = lowrank.ld();
            let xa = random(dev, t, ROWS * ld, 3, 1.0)?;
            let wa = random(dev, t, OUT * ld, 4, 0.02)?;
            let ya = DBuf::zeros(dev, DType::F32, ROWS * OUT)?;
            let factor = random(dev, DType::F32, rank * IN, 5, 1.0)?;
            let state = random(dev, DType::F32, rank * OUT, 6, 1e-3)?;
            let aug = GemmShape {
                k: ld,
                ld_x: ld,
                ld_w: ld,
                ..plain(false)
            };
            let run_aug = || linear(dev, &aug, xa.view(), wa.view(), ya.view(), None);
            run_aug()?;

            let mut g = c.benchmark_group("gpu_gemm_flops");
            g.throughput(Throughput::Elements(aug.flops() as u64));
            let id = format!("{shape_id}_r{rank}_k{ld}");
            g.bench_function(BenchmarkId::new("augmented_y_f32", &id), |b| {
                b.iter_custom(|iters| timed(dev, iters, || run_aug().expect("gemm")))
            });
            g.finish();
            let aug_us = mean_us(dev, || run_aug().expect("gemm"));

            for case in [
                lowrank,
                AdapterCase {
                    family: AugFamily::Lora,
                    rank,
                },
            ] {
                let site = case.site();
                let pad = padding(IN, rank, DIRS, 1);
                let name = case.name();
                let shrink = || {
                    let (x, f) = (xa.view(), factor.view());
                    kernels::adapter::shrink(dev, &site, ROWS, x, f, &dsegs, pad.clone())
                };
                let pack =
                    || kernels::adapter::pack(dev, &site, OUT, 0, wa.view(), state.view(), &dsegs);
                shrink()?;
                pack()?;

                let mut g = c.benchmark_group("gpu_adapter_bytes");
                g.throughput(Throughput::Bytes(case.shrink_bytes()));
                g.bench_function(BenchmarkId::new("shrink", &name), |b| {
                    b.iter_custom(|iters| timed(dev, iters, || shrink().expect("shrink")))
                });
                g.throughput(Throughput::Bytes(case.pack_bytes()));
                g.bench_function(BenchmarkId::new("pack", &name), |b| {
                    b.iter_custom(|iters| timed(dev, iters, || pack().expect("pack")))
                });
                g.throughput(Throughput::Bytes(case.shrink_bytes() + case.pack_bytes()));
                g.bench_function(BenchmarkId::new("shrink_pack", &name), |b| {
                    b.iter_custom(|iters| {
                        timed(dev, iters, || {
                            shrink().expect("shrink");
                            pack().expect("pack");
                        })
                    })
                });
                g.finish();

                let shrink_us = mean_us(dev, || shrink().expect("shrink"));
                let pack_us = mean_us(dev, || pack().expect("pack"));
                let pct = |us: f64| 100.0 * us / base_us;
                // The row tiling the launcher picks against one row per block (the kernel
                // before rows shared factor loads).
                let rpb = kernels::adapter::shrink_rows_per_block(case.family, ROWS, rank);
                let one_row_us = mean_us(dev, || {
                    let (x, f) = (xa.view(), factor.view());
                    kernels::adapter::shrink_tiled(dev, &site, ROWS, x, f, &dsegs, pad.clone(), 1)
                        .expect("shrink")
                });
                summary.push(format!(
                    "  {name} (K_aug {ld}): shrink {shrink_us:.1} µs ({:.1}%) + pack \
                     {pack_us:.1} µs ({:.1}%) = {:.1}% of the base GEMM (target <= 15%); \
                     augmented GEMM {aug_us:.1} µs = {:.3}x the base; shrink at {rpb} rows per \
                     block {shrink_us:.1} µs vs 1 row {one_row_us:.1} µs",
                    pct(shrink_us),
                    pct(pack_us),
                    pct(shrink_us + pack_us),
                    aug_us / base_us
                ));
            }
        }
        for line in summary {
            println!("{line}");
        }
        Ok(())
    }

    /// One prefill batch: `lens[s]` own tokens per sequence, no cached context, no prefix.
    struct AttnBatch {
        name: &'static str,
        lens: Vec<usize>,
    }

    /// Paged causal prefill attention, GQA off (kv_heads = heads = 32), output bf16, for a
    /// batch of the default task's short prompts (32 × ~26 tokens, 20..32) and a long one
    /// (16 × 512), head_dim 64 and 128. FLOPs: 4·heads·head_dim·Σ L²/2 (QKᵀ and PV over the
    /// causal half).
    fn attention(c: &mut Criterion, dev: &CudaDevice) -> Result<()> {
        const HEADS: usize = 32;
        let batches = [
            AttnBatch {
                name: "32x26",
                lens: (0..32).map(|s| 20 + (s * 5) % 13).collect(),
            },
            AttnBatch {
                name: "16x512",
                lens: vec![512; 16],
            },
        ];
        let mut g = c.benchmark_group("gpu_attention_flops");
        for batch in &batches {
            let n = batch.lens.len();
            let rows: usize = batch.lens.iter().sum();
            let max_seqlen = *batch.lens.iter().max().expect("sequences");
            let max_pages = max_seqlen.div_ceil(PAGE);
            let mut cu = vec![0u32];
            for &l in &batch.lens {
                cu.push(cu.last().copied().expect("cu_seqlens") + l as u32);
            }
            // Sequence s owns pages s·max_pages ..; its tokens are written in order.
            let tables: Vec<u32> = (0..n * max_pages).map(|i| i as u32).collect();
            let mut slots = Vec::with_capacity(rows);
            for (s, &l) in batch.lens.iter().enumerate() {
                slots.extend((0..l).map(|p| (s * max_pages * PAGE + p) as u32));
            }
            let sum_sq: f64 = batch.lens.iter().map(|&l| (l * l) as f64).sum();
            for hd in [64, 128] {
                let layout = QkvLayout::fused(rows, HEADS, HEADS, hd);
                let kv_width = HEADS * hd;
                let cache_len = n * max_pages * PAGE * kv_width;
                let qkv = random(dev, DType::F32, rows * layout.ld, 8, 1.0)?;
                let k_cache = DBuf::zeros(dev, DType::F32, cache_len)?;
                let v_cache = DBuf::zeros(dev, DType::F32, cache_len)?;
                let slots = DBuf::from_words(dev, &slots)?;
                kernels::attention::kv_write(
                    dev,
                    qkv.view(),
                    &layout,
                    slots.view(),
                    k_cache.view(),
                    v_cache.view(),
                )?;
                let cu = DBuf::from_words(dev, &cu)?;
                let ctx = DBuf::from_words(dev, &vec![0u32; n])?;
                let tables = DBuf::from_words(dev, &tables)?;
                let out_ld = HEADS * hd;
                let out = DBuf::zeros(dev, DType::Bf16, rows * out_ld)?;
                let a = PrefillAttention {
                    qkv: qkv.view(),
                    layout,
                    k_cache: k_cache.view(),
                    v_cache: v_cache.view(),
                    seqs: SeqTables {
                        cu_seqlens: cu.view(),
                        ctx_lens: ctx.view(),
                        own_starts: None,
                        block_tables: tables.view(),
                        max_pages,
                        max_seqlen,
                    },
                    prefix: None,
                    scale: 1.0 / (hd as f32).sqrt(),
                };
                let run = || kernels::attention::attention_prefill(dev, &a, out.view(), out_ld);
                run()?;
                let flops = 4.0 * (HEADS * hd) as f64 * sum_sq / 2.0;
                g.throughput(Throughput::Elements(flops as u64));
                g.bench_function(
                    BenchmarkId::new(format!("prefill_hd{hd}"), batch.name),
                    |b| b.iter_custom(|iters| timed(dev, iters, || run().expect("attention"))),
                );
            }
        }
        g.finish();
        Ok(())
    }

    /// Decode attention for Llama-3-8B's shape (32 heads, 8 kv heads, hd 128) at batch ×
    /// context sizes from one long sequence to many short ones, and the token pick over 64
    /// rows of Qwen's vocabulary, greedy and seeded. Bytes: the K and V caches read once
    /// (attention), the logits read once (pick).
    fn decode(c: &mut Criterion, dev: &CudaDevice) -> Result<()> {
        const HEADS: usize = 32;
        const KV_HEADS: usize = 8;
        const HD: usize = 128;
        let mut g = c.benchmark_group("gpu_decode_bytes");
        for (n, ctx) in [(1usize, 4096usize), (8, 2048), (32, 512), (64, 128)] {
            let layout = QkvLayout::fused(n, HEADS, KV_HEADS, HD);
            let kv_width = KV_HEADS * HD;
            let max_pages = ctx.div_ceil(PAGE);
            let cache_len = n * max_pages * PAGE * kv_width;
            let qkv = random(dev, DType::F32, n * layout.ld, 8, 1.0)?;
            let k_cache = random(dev, DType::F32, cache_len, 10, 1.0)?;
            let v_cache = random(dev, DType::F32, cache_len, 11, 1.0)?;
            // Sequence s owns pages s·max_pages ..
            let tables: Vec<u32> = (0..n * max_pages).map(|i| i as u32).collect();
            let tables = DBuf::from_words(dev, &tables)?;
            let ctx_lens = DBuf::from_words(dev, &vec![ctx as u32; n])?;
            let a = DecodeAttention {
                qkv: qkv.view(),
                layout,
                k_cache: k_cache.view(),
                v_cache: v_cache.view(),
                ctx_lens: ctx_lens.view(),
                block_tables: tables.view(),
                max_pages,
                max_ctx: ctx,
                prefix: None,
                scale: 1.0 / (HD as f32).sqrt(),
            };
            let ws = DBuf::zeros(dev, DType::F32, a.workspace_len().max(1))?;
            let out = DBuf::zeros(dev, DType::Bf16, n * HEADS * HD)?;
            let run =
                || kernels::decode::decode_attention(dev, &a, ws.view(), out.view(), HEADS * HD);
            run()?;
            g.throughput(Throughput::Bytes((2 * n * ctx * kv_width * 4) as u64));
            g.bench_function(
                BenchmarkId::new("attn_decode_hd128_gqa4", format!("{n}x{ctx}")),
                |b| b.iter_custom(|iters| timed(dev, iters, || run().expect("decode"))),
            );
        }
        const ROWS: usize = 64;
        let vocab = 151936;
        let logits = random(dev, DType::F32, ROWS * vocab, 9, 3.0)?;
        let seq = DBuf::from_words(dev, &(0..ROWS as u32).collect::<Vec<_>>())?;
        let pos = DBuf::from_words(dev, &vec![100u32; ROWS])?;
        let picked = DBuf::zeros(dev, DType::F32, ROWS)?;
        let l = Logits {
            data: logits.view(),
            rows: ROWS,
            vocab,
            ld: vocab,
        };
        let seeded = Sampling::Seeded {
            seed: 5,
            temperature: 0.8,
        };
        for (name, sampling) in [("greedy", Sampling::Greedy), ("gumbel", seeded)] {
            let noise = NoiseRows {
                seq: seq.view(),
                pos: pos.view(),
            };
            let run = || kernels::decode::pick_tokens(dev, l, sampling, Some(noise), picked.view());
            run()?;
            g.throughput(Throughput::Bytes((ROWS * vocab * 4) as u64));
            g.bench_function(
                BenchmarkId::new(format!("pick_{name}"), format!("{ROWS}x{vocab}")),
                |b| b.iter_custom(|iters| timed(dev, iters, || run().expect("pick"))),
            );
        }
        g.finish();
        Ok(())
    }

    /// Candidate log-probs (log-softmax at the scoring rows, one query per row) over 64 rows of
    /// fp32 logits for OPT's and Qwen's vocabularies; bytes: one read of the logits.
    fn loss(c: &mut Criterion, dev: &CudaDevice) -> Result<()> {
        const ROWS: usize = 64;
        let mut g = c.benchmark_group("gpu_loss_bytes");
        for vocab in [50272usize, 151936] {
            let logits = random(dev, DType::F32, ROWS * vocab, 9, 3.0)?;
            let queries: Vec<u32> = (0..ROWS)
                .flat_map(|r| [r as u32, ((r * 7919) % vocab) as u32])
                .collect();
            let queries = DBuf::from_words(dev, &queries)?;
            let lse = DBuf::zeros(dev, DType::F32, ROWS)?;
            let logprobs = DBuf::zeros(dev, DType::F32, ROWS)?;
            let l = Logits {
                data: logits.view(),
                rows: ROWS,
                vocab,
                ld: vocab,
            };
            let run = || {
                let (q, lse) = (queries.view(), Some(lse.view()));
                kernels::loss::candidate_logprobs(dev, l, q, lse, logprobs.view())
            };
            run()?;
            g.throughput(Throughput::Bytes((ROWS * vocab * 4) as u64));
            g.bench_function(
                BenchmarkId::new("candidate_logprobs", format!("{ROWS}x{vocab}")),
                |b| b.iter_custom(|iters| timed(dev, iters, || run().expect("logprobs"))),
            );
        }
        g.finish();
        Ok(())
    }

    /// MeZO's in-place perturbation `θ = round(fma(ε, z, θ))` over 64M elements (the seeded
    /// axpy with one term), bf16 and f32. Each call also uploads its one (seed, coefficient)
    /// pair, as each pass of the update does. Bytes: θ read and written once.
    fn update(c: &mut Criterion, dev: &CudaDevice) -> Result<()> {
        const N: usize = 64 << 20;
        for dtype in [DType::Bf16, DType::F32] {
            let theta = random(dev, dtype, N, 10, 0.02)?;
            // Every call's pair must outlive its launch: held until the closing
            // synchronisation, then freed outside the timed window.
            let held = RefCell::new(Vec::new());
            let run = || -> Result<()> {
                let dirs = UpdateDirs::upload(dev, &[(0xface, 1e-3)])?;
                let flat = Strided::flat(N);
                kernels::update::perturb_in_place(
                    dev,
                    theta.view(),
                    flat,
                    11,
                    Dist::Gaussian,
                    &dirs,
                )?;
                held.borrow_mut().push(dirs);
                Ok(())
            };
            run()?;
            dev.synchronize()?;
            held.borrow_mut().clear();
            let id = format!("{}M_{dtype}", N >> 20);
            for (group, tp) in [
                (
                    "gpu_update_bytes",
                    Throughput::Bytes((2 * N * dtype.size()) as u64),
                ),
                ("gpu_update_elements", Throughput::Elements(N as u64)),
            ] {
                let mut g = c.benchmark_group(group);
                g.throughput(tp);
                g.bench_function(BenchmarkId::new("perturb_in_place", &id), |b| {
                    b.iter_custom(|iters| {
                        let t = timed(dev, iters, || run().expect("perturb"));
                        held.borrow_mut().clear();
                        t
                    })
                });
                g.finish();
            }
        }
        Ok(())
    }

    /// RMSNorm and LayerNorm of a 2048×4096 fp32 residual into the bf16 GEMM input. Bytes:
    /// x read, the output written, the weight (and bias) read once.
    fn ops(c: &mut Criterion, dev: &CudaDevice) -> Result<()> {
        const ROWS: usize = 2048;
        const WIDTH: usize = 4096;
        let t = DType::Bf16;
        let x = random(dev, DType::F32, ROWS * WIDTH, 12, 1.0)?;
        let w = random(dev, t, WIDTH, 13, 1.0)?;
        let bias = random(dev, t, WIDTH, 14, 0.1)?;
        let out = DBuf::zeros(dev, t, ROWS * WIDTH)?;
        let shape = RowShape::dense(ROWS, WIDTH);
        let mut g = c.benchmark_group("gpu_norm_bytes");
        for (name, kind, with_bias) in [
            ("rmsnorm", NormKind::Rms, false),
            ("layernorm", NormKind::Layer, true),
        ] {
            let nw = NormWeights {
                kind,
                eps: 1e-5,
                w: Some(w.view()),
                b: with_bias.then_some(bias.view()),
            };
            let run = || kernels::ops::norm(dev, &nw, shape, x.view(), out.view());
            run()?;
            let params = 1 + with_bias as usize;
            let bytes = ROWS * WIDTH * (4 + t.size()) + params * WIDTH * t.size();
            g.throughput(Throughput::Bytes(bytes as u64));
            g.bench_function(
                BenchmarkId::new(name, format!("{ROWS}x{WIDTH}_f32_to_{t}")),
                |b| b.iter_custom(|iters| timed(dev, iters, || run().expect("norm"))),
            );
        }
        g.finish();
        Ok(())
    }

    pub fn main() {
        if !zo::backend::cuda::kernels_built() {
            println!("skipping GPU benches: this build has no CUDA kernels (nvcc not found)");
            return;
        }
        let dev = match CudaDevice::new(0) {
            Ok(d) => d,
            Err(e) => {
                println!("skipping GPU benches: {e}");
                return;
            }
        };
        if let Ok(d) = dev.describe() {
            println!("device: {d}");
        }
        // Short runs: the whole suite stays near a minute and a half on an H100.
        let mut c = Criterion::default()
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .configure_from_args();
        for (name, family) in FAMILIES {
            println!("family {name}");
            if let Err(e) = family(&mut c, &dev) {
                println!("skipping the rest of family {name}: {e}");
            }
        }
        c.final_summary();
    }
}

fn main() {
    #[cfg(feature = "cuda")]
    gpu::main();
    #[cfg(not(feature = "cuda"))]
    println!("skipping GPU benches: built without the cuda feature");
}
