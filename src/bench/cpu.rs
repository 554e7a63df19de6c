//! The CPU reference as a bench backend: f32 weights on the host, floors from the same
//! `gemm` crate the forward uses and a parallel memcpy.

use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::backend::{BenchBackend, BenchSpec, DType, GemmShape, ScoreTiming};
use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, Scores};
use crate::engine::replay::ZoBackend;
use crate::model::Model;
use crate::perturb::{Dist, StepRecord, UpdateConfig};
use crate::plan::Plan;
use crate::{Error, Result};

/// Leave this share of the available memory for activations, the family and the floors.
const MAX_WEIGHT_SHARE: f64 = 0.8;

/// Buffer copied to measure the memory bandwidth.
const COPY_BYTES: usize = 256 << 20;

pub struct CpuBench {
    inner: CpuBackend,
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

/// A `/proc` field in kB, as bytes.
fn proc_kb(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Memory the kernel says can be allocated without swapping (MemAvailable).
pub fn available_memory() -> Option<u64> {
    proc_kb("/proc/meminfo", "MemAvailable:")
}

/// The process's peak resident set (VmHWM).
pub fn peak_rss() -> Option<u64> {
    proc_kb("/proc/self/status", "VmHWM:")
}

impl CpuBench {
    /// Synthetic f32 weights on the host and a fresh family. Refuses architectures whose
    /// weights would not fit in the available memory.
    pub fn new(spec: &BenchSpec) -> Result<CpuBench> {
        if spec.dtype != DType::F32 {
            return Err(Error::Unsupported(format!(
                "the CPU backend computes in f32; --dtype {} needs --device cuda",
                spec.dtype.suffix()
            )));
        }
        let bytes = spec.config.n_params() as f64 * 4.0;
        if let Some(avail) = available_memory() {
            if bytes > MAX_WEIGHT_SHARE * avail as f64 {
                return Err(Error::Unsupported(format!(
                    "this architecture's f32 weights take {} ({} parameters) but only {} of \
                     memory is available; pick a smaller --arch or run with --device cuda",
                    gib(bytes),
                    spec.config.n_params(),
                    gib(avail as f64)
                )));
            }
        }
        let model = Model::random(spec.config.clone(), spec.weight_seed);
        let t = &spec.train;
        let family = crate::perturb::build(&t.family, t.dist, &model, t.seed)?;
        Ok(CpuBench {
            inner: CpuBackend::with_family(model, family),
        })
    }
}

impl Backend for CpuBench {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn score(&self, plan: &Plan) -> Result<Scores> {
        self.inner.score(plan)
    }
}

impl ZoBackend for CpuBench {
    fn begin_step(&mut self, step: u64, period_seed: Option<u64>) -> Result<()> {
        ZoBackend::begin_step(&mut self.inner, step, period_seed)
    }

    fn update(&mut self, rec: &StepRecord, cfg: &UpdateConfig) -> Result<()> {
        ZoBackend::update(&mut self.inner, rec, cfg)
    }

    fn perturb_in_place(&mut self, seed: u64, scale: f32, dist: Dist) -> Result<()> {
        self.inner.perturb_in_place(seed, scale, dist)
    }

    fn family_state(&self) -> Result<crate::backend::StateTensors> {
        self.inner.family_state()
    }
}

/// Fastest of `reps` runs after one warm-up.
fn best_of(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

impl BenchBackend for CpuBench {
    fn device_name(&self) -> String {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let mem = proc_kb("/proc/meminfo", "MemTotal:")
            .map_or(String::new(), |b| format!(", {}", gib(b as f64)));
        format!("{cpu}, {} threads{mem}", rayon::current_num_threads())
    }

    fn score_timed(&self, plan: &Plan) -> Result<(Scores, ScoreTiming)> {
        let (scores, [forward, loss]) = self.inner.score_split(plan)?;
        let timing = ScoreTiming {
            forward_s: forward.as_secs_f64(),
            loss_s: Some(loss.as_secs_f64()),
        };
        Ok((scores, timing))
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn peak_memory_bytes(&self) -> Result<u64> {
        peak_rss().ok_or_else(|| Error::Unsupported("no VmHWM in /proc/self/status".into()))
    }

    fn compute_floor_s(&self, shapes: &[GemmShape]) -> Result<f64> {
        let mut total = 0.0;
        for s in shapes {
            if s.m == 0 || s.n == 0 || s.k == 0 || s.count == 0 {
                continue;
            }
            // Operand values do not change a dense GEMM's time; small ones keep it finite.
            let x = vec![0.01f32; s.m * s.k];
            let w = vec![0.02f32; s.n * s.k];
            let t = best_of(2, || {
                std::hint::black_box(crate::matmul::matmul_wt(&x, &w, None, s.m, s.k, s.n));
            });
            total += t.as_secs_f64() * s.count as f64;
        }
        Ok(total)
    }

    fn memory_bandwidth(&self) -> Result<f64> {
        let n = COPY_BYTES / 4;
        let src = vec![1.0f32; n];
        let mut dst = vec![0.0f32; n];
        let chunk = n.div_ceil(4 * rayon::current_num_threads()).max(1 << 16);
        let t = best_of(4, || {
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s));
            std::hint::black_box(&dst);
        });
        Ok(2.0 * COPY_BYTES as f64 / t.as_secs_f64().max(1e-9))
    }
}
