//! The bench report: one JSON object with stable keys (`--json`), or a short text summary.

use serde::Serialize;

use super::backend::GemmShape;

/// Version of the key set below; bumped when a key changes meaning or goes away.
pub const SCHEMA: &str = "zo-bench/1";

/// Median and spread of a timing, in milliseconds. Percentiles interpolate linearly between
/// the sorted samples (p50 of an even count is the mean of the middle two).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub p10: f64,
    pub p90: f64,
    pub mean: f64,
}

impl Spread {
    /// The spread of `seconds`, reported in ms. Empty input gives zeros.
    pub fn of_seconds(seconds: &[f64]) -> Spread {
        let mut v: Vec<f64> = seconds.iter().map(|s| s * 1e3).collect();
        if v.is_empty() {
            return Spread {
                median: 0.0,
                min: 0.0,
                max: 0.0,
                p10: 0.0,
                p90: 0.0,
                mean: 0.0,
            };
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let x = p * (v.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
        };
        Spread {
            median: q(0.5),
            min: v[0],
            max: v[v.len() - 1],
            p10: q(0.1),
            p90: q(0.9),
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

/// What `zo-run bench --json` prints. Times in ms unless the key says otherwise; "per step"
/// means per ZO step (all directions and signs of one batch).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// Built-in arch name or config path.
    pub arch: String,
    pub model_type: String,
    /// All parameters (HF `num_parameters()`), and the weights of the Linears run on every
    /// token (`P_lin` of the FLOP model).
    pub params: u64,
    pub linear_params: u64,
    /// "cpu" or "cuda", and the hardware in words.
    pub device: String,
    pub device_name: String,
    /// Storage dtype of the weights.
    pub dtype: String,
    /// Perturbation family (lowrank, lora, dense, prefix), the preset it came from, and its
    /// full settings.
    pub family: String,
    pub preset: Option<String>,
    pub family_config: serde_json::Value,
    pub q: usize,
    pub one_sided: bool,
    /// Dense MeZO perturbing the weights in place (+ε, −2ε, +ε) rather than fused variants.
    pub in_place: bool,
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    /// Seed of the synthetic weights and token ids.
    pub seed: u64,
    /// Where the prompt lengths came from.
    pub lengths: String,
    pub prompt_len_mean: f64,
    /// Packed sequences and tokens scored per step (over all forwards of the step).
    pub sequences_per_step: f64,
    pub tokens_per_step: f64,
    /// Forward passes per step: 1 when all variants are packed into one plan, 2q in place.
    pub forwards_per_step: usize,
    /// Seconds to build the backend with its synthetic weights.
    pub setup_s: f64,
    /// Whole step: begin_step + scoring + loss + in-place perturbations + update.
    pub step_ms: Spread,
    /// Forward to the last hidden states (the whole score when `loss_separate` is false).
    pub scoring_ms: Spread,
    /// Head at the scoring rows, log-softmax and losses; null when not separable.
    pub loss_ms: Option<Spread>,
    pub loss_separate: bool,
    /// In-place perturbations (dense in-place only; zero otherwise).
    pub perturb_ms: Spread,
    /// begin_step (low-rank period merge) + update.
    pub update_ms: Spread,
    /// tokens_per_step / median step time.
    pub tokens_per_s: f64,
    /// Mean FLOPs per step under `flop_model`, and that over the median step time.
    pub flops_per_step: f64,
    pub tflops: f64,
    pub flop_model: String,
    /// Peak memory: process peak RSS (cpu) or device high-water mark (cuda), bytes, read
    /// after the measured steps and before the floors.
    pub peak_memory_bytes: u64,
    /// The step's GEMMs alone (Linears on every token and the head at the scored rows, the
    /// mean step's shapes, storage dtype, the device's library GEMM); null with floors off.
    pub compute_floor_ms: Option<f64>,
    pub compute_floor_gemms: Vec<GemmShape>,
    /// One read of every weight in the storage dtype at the measured copy bandwidth.
    pub memory_floor_ms: Option<f64>,
    pub memory_floor_bytes: u64,
    /// Copy bandwidth, (bytes read + bytes written) / s, in GB/s.
    pub memory_bandwidth_gbs: Option<f64>,
    /// Median step time over each floor.
    pub ratio_to_compute_floor: Option<f64>,
    pub ratio_to_memory_floor: Option<f64>,
    /// Steps of a full run, and its estimated hours at the median step time.
    pub run_steps: u64,
    pub est_hours_run: f64,
    /// Measured steps whose estimate was not finite (and so not applied).
    pub skipped_steps: usize,
    /// Training-loss estimate of the last step (finite on sane synthetic weights).
    pub last_loss: f64,
    /// `--gpu-memory-budget` in bytes, and how the layers streamed under it (null: resident).
    pub gpu_memory_budget: Option<u64>,
    pub streaming: Option<StreamReport>,
}

/// Layer streaming in a bench: what crossed the bus, and the step against the bus's floor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StreamReport {
    pub resident_layers: usize,
    pub streamed_layers: usize,
    pub device_weight_bytes: u64,
    /// Weight bytes copied to the device per step (every forward of the step).
    pub streamed_bytes_per_step: u64,
    /// Host-to-device bandwidth from page-locked memory, GB/s.
    pub h2d_bandwidth_gbs: f64,
    /// `streamed_bytes_per_step` at that bandwidth: the step cannot be faster.
    pub pcie_floor_ms: f64,
    pub ratio_to_pcie_floor: f64,
}

fn si(x: f64) -> String {
    match x {
        x if x >= 1e12 => format!("{:.2} T", x / 1e12),
        x if x >= 1e9 => format!("{:.2} G", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.2} k", x / 1e3),
        x => format!("{x:.2} "),
    }
}

impl BenchReport {
    /// A few lines for people; `--json` prints the whole report.
    pub fn text(&self) -> String {
        let s = &self.step_ms;
        let mut out = vec![
            format!(
                "{} ({}, {}parameters) on {} [{}], {}, family {}{} q {}, batch {}",
                self.arch,
                self.model_type,
                si(self.params as f64),
                self.device,
                self.device_name,
                self.dtype,
                self.family,
                self.preset
                    .as_ref()
                    .map_or(String::new(), |p| format!(" (preset {p})")),
                self.q,
                self.batch
            ),
            format!("prompt lengths: {}", self.lengths),
            format!(
                "{} steps after {} warm-up: {:.1} sequences, {:.0} tokens per step ({} forward{})",
                self.steps,
                self.warmup,
                self.sequences_per_step,
                self.tokens_per_step,
                self.forwards_per_step,
                if self.forwards_per_step == 1 { "" } else { "s" }
            ),
            format!(
                "step: median {:.2} ms (min {:.2}, p10 {:.2}, p90 {:.2}, max {:.2})",
                s.median, s.min, s.p10, s.p90, s.max
            ),
        ];
        let split = match &self.loss_ms {
            Some(l) => format!(
                "split (medians): scoring {:.2} ms, loss {:.2} ms, update {:.2} ms",
                self.scoring_ms.median, l.median, self.update_ms.median
            ),
            None => format!(
                "split (medians): scoring+loss {:.2} ms (not separable here), update {:.2} ms",
                self.scoring_ms.median, self.update_ms.median
            ),
        };
        out.push(if self.in_place {
            format!(
                "{split}, in-place perturbation {:.2} ms",
                self.perturb_ms.median
            )
        } else {
            split
        });
        out.push(format!(
            "throughput: {}tokens/s, {:.3} TFLOP/s ({}FLOP per step), peak memory {}B",
            si(self.tokens_per_s),
            self.tflops,
            si(self.flops_per_step),
            si(self.peak_memory_bytes as f64)
        ));
        if let (Some(c), Some(m)) = (self.compute_floor_ms, self.memory_floor_ms) {
            out.push(format!(
                "floors: compute {c:.2} ms (step = {:.2}x), memory {m:.2} ms at {:.1} GB/s (step = {:.2}x)",
                self.ratio_to_compute_floor.unwrap_or(f64::NAN),
                self.memory_bandwidth_gbs.unwrap_or(f64::NAN),
                self.ratio_to_memory_floor.unwrap_or(f64::NAN),
            ));
        }
        if let Some(st) = &self.streaming {
            out.push(format!(
                "streaming: {} layers resident, {} streamed, {}B of weights on the GPU, {}B \
                 per step over the bus at {:.1} GB/s: PCIe floor {:.2} ms (step = {:.2}x)",
                st.resident_layers,
                st.streamed_layers,
                si(st.device_weight_bytes as f64),
                si(st.streamed_bytes_per_step as f64),
                st.h2d_bandwidth_gbs,
                st.pcie_floor_ms,
                st.ratio_to_pcie_floor
            ));
        }
        out.push(format!(
            "estimated {} steps: {:.2} h",
            self.run_steps, self.est_hours_run
        ));
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_interpolates_percentiles() {
        let s = Spread::of_seconds(&[0.004, 0.001, 0.003, 0.002]);
        assert_eq!((s.min, s.max), (1.0, 4.0));
        assert!((s.median - 2.5).abs() < 1e-12);
        assert!((s.p10 - 1.3).abs() < 1e-9 && (s.p90 - 3.7).abs() < 1e-9);
        assert!((s.mean - 2.5).abs() < 1e-12);
        assert_eq!(Spread::of_seconds(&[0.002]).p90, 2.0);
    }
}
