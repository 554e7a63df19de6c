//! What `zo-run bench` needs from a backend, and how one is opened for a device.
//!
//! The bench drives real ZO steps through [`ZoBackend`] (the same estimator and update path as
//! training); [`BenchBackend`] adds the measurements around them. A backend is opened from a
//! [`BenchSpec`] and fills its own synthetic weights where it computes (host memory for the
//! CPU, device memory for CUDA), so nothing of model size crosses the host–device boundary.

pub use crate::backend::DType;
use crate::backend::Scores;
use crate::engine::config::TrainConfig;
use crate::engine::replay::ZoBackend;
use crate::model::ModelConfig;
use crate::plan::Plan;
use crate::Result;

/// Where the bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDevice {
    Cpu,
    Cuda,
}

impl BenchDevice {
    pub fn name(self) -> &'static str {
        match self {
            BenchDevice::Cpu => "cpu",
            BenchDevice::Cuda => "cuda",
        }
    }
}

/// Everything a backend needs to build itself for a bench: the architecture, the family and
/// estimator settings, the weight dtype and the seed of the synthetic weights.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub config: ModelConfig,
    pub train: TrainConfig,
    pub dtype: DType,
    /// Seed of the synthetic weights (init std 0.02, as HF's `initializer_range`).
    pub weight_seed: u64,
    /// CUDA: device bytes the weights may take; the layers past it stream from host memory.
    pub gpu_memory_budget: Option<usize>,
}

/// How a backend's layers stream from host memory, with the bus bandwidth measured for them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamFloor {
    pub resident_layers: usize,
    pub streamed_layers: usize,
    /// Weight bytes on the device (fixed tensors, resident layers, the two stream buffers).
    pub device_weight_bytes: usize,
    /// Weight bytes that cross the bus per forward.
    pub streamed_bytes: usize,
    /// Host-to-device copy bandwidth from page-locked memory, bytes/s.
    pub h2d_bandwidth: f64,
}

/// Wall time of one `score`, split where the backend can split it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreTiming {
    /// Embedding through the last layer (the hidden states of every packed row); the whole
    /// `score` when `loss_s` is None.
    pub forward_s: f64,
    /// Final norm, head at the scoring rows, log-softmax and per-example losses; None when
    /// the backend does not separate them from the forward.
    pub loss_s: Option<f64>,
}

/// `count` GEMMs `C[m][n] = A[m][k]·B[n][k]ᵀ` in the storage dtype (the Linears of a step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub count: usize,
}

impl GemmShape {
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.count as f64
    }
}

/// A backend the bench can drive and measure. Every method that returns a time returns it
/// only after the device is idle (implementations synchronise).
pub trait BenchBackend: ZoBackend {
    /// The device in words (model name, memory), for reports.
    fn device_name(&self) -> String;

    /// [`crate::backend::Backend::score`] with its time split (see [`ScoreTiming`]).
    fn score_timed(&self, plan: &Plan) -> Result<(Scores, ScoreTiming)>;

    /// Blocks until all queued work is done (a no-op on the CPU).
    fn synchronize(&self) -> Result<()>;

    /// Peak memory so far, in bytes: the process's peak RSS on the CPU, the device
    /// allocator's high-water mark on a GPU.
    fn peak_memory_bytes(&self) -> Result<u64>;

    /// Seconds to run `shapes` (each `count` times) as plain GEMMs of the storage dtype with
    /// the fastest library GEMM of the device (cuBLAS(Lt) on a GPU): the compute floor of a
    /// step.
    fn compute_floor_s(&self, shapes: &[GemmShape]) -> Result<f64>;

    /// Copy bandwidth of the device memory in bytes/s, counting bytes read plus bytes
    /// written: the memory floor is derived from it.
    fn memory_bandwidth(&self) -> Result<f64>;

    /// The backend's layer streaming with the measured host-to-device bandwidth (None: the
    /// whole model is resident).
    fn stream_floor(&self) -> Result<Option<StreamFloor>> {
        Ok(None)
    }
}

/// Opens a backend on `device` with synthetic weights for `spec`.
pub fn open(device: BenchDevice, spec: &BenchSpec) -> Result<Box<dyn BenchBackend>> {
    match device {
        BenchDevice::Cpu => Ok(Box::new(super::cpu::CpuBench::new(spec)?)),
        BenchDevice::Cuda => super::cuda::open(spec),
    }
}

/// The device `--device auto` picks: CUDA when its bench backend can run here, else the CPU,
/// with the reason CUDA was not picked.
pub fn auto_device() -> (BenchDevice, Option<String>) {
    match super::cuda::probe() {
        Ok(_) => (BenchDevice::Cuda, None),
        Err(e) => (BenchDevice::Cpu, Some(e.to_string())),
    }
}
