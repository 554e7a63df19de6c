//! cuBLASLt for the GPU device's GEMMs: `y[rows][out] (fp32) = x[rows][k] · W[out][k]ᵀ
//! (+ bias) (+ y)`, with x and W in the storage dtype and fp32 accumulation.
//!
//! cudarc's safe `Matmul` wants A, B and C of one type (and f32 through TF32), so this calls
//! the cuBLASLt API directly: inputs bf16/f16/f32, output and bias fp32, compute
//! `CUBLAS_COMPUTE_32F` (full fp32 for f32 inputs, never TF32: the f32 path is the one checked
//! tightly against the CPU). Layouts, descriptor and the heuristic's algorithm are found once
//! per shape and cached; a call sets only the bias pointer and launches.
//!
//! Row-major `Y = X·Wᵀ` is column-major `Yᵀ = W·Xᵀ`: A = W (transposed, lda = ld_w),
//! B = X (not transposed, ldb = ld_x), C = D = Y (ldc = ld_y), m = out, n = rows.

use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::size_of;
use std::sync::{Arc, Mutex};

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::CudaStream;

use super::cuda_err;
use crate::backend::cuda::gemm::GemmShape;
use crate::backend::cuda::DType;
use crate::{Error, Result};

fn cuda_type(d: DType) -> sys::cudaDataType {
    match d {
        DType::F32 => sys::cudaDataType_t::CUDA_R_32F,
        DType::Bf16 => sys::cudaDataType_t::CUDA_R_16BF,
        DType::F16 => sys::cudaDataType_t::CUDA_R_16F,
    }
}

fn blas_err(what: &'static str) -> impl FnOnce(lt::CublasError) -> Error {
    move |e| Error::Cuda(format!("cuBLASLt {what}: {e}"))
}

/// A shape's cuBLASLt objects.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    c: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: each handle was created by this plan and is destroyed once; failures here
        // are ignored (nothing useful to do with them while dropping).
        unsafe {
            let _ = lt::destroy_matrix_layout(self.a);
            let _ = lt::destroy_matrix_layout(self.b);
            let _ = lt::destroy_matrix_layout(self.c);
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}

/// A cuBLASLt handle, its workspace, and the plans made so far.
pub struct Gemm {
    handle: sys::cublasLtHandle_t,
    stream: Arc<CudaStream>,
    workspace: cudarc::driver::CudaSlice<u8>,
    _tracked: crate::backend::cuda::buffer::Tracked,
    plans: Mutex<HashMap<GemmShape, Plan>>,
}

// SAFETY: the handle is used only under `plans`' lock or for launches on one stream, which
// cuBLASLt allows from any thread.
unsafe impl Send for Gemm {}
unsafe impl Sync for Gemm {}

impl Drop for Gemm {
    fn drop(&mut self) {
        self.plans.lock().map(|mut p| p.clear()).ok();
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            let _ = lt::destroy_handle(self.handle);
        }
    }
}

/// cuBLASLt's recommended workspace on Hopper (32 MiB; 4 MiB suffices before it).
const WORKSPACE: usize = 32 << 20;

impl Gemm {
    pub fn new(stream: Arc<CudaStream>) -> Result<Gemm> {
        let handle = lt::create_handle().map_err(blas_err("creating a handle"))?;
        // SAFETY: uninitialised bytes are fine for a scratch workspace.
        let workspace = unsafe { stream.alloc::<u8>(WORKSPACE) }
            .map_err(cuda_err("allocating the cuBLASLt workspace"))?;
        Ok(Gemm {
            handle,
            stream,
            workspace,
            _tracked: crate::backend::cuda::buffer::Tracked::new(WORKSPACE),
            plans: Mutex::new(HashMap::new()),
        })
    }

    fn make_plan(&self, s: &GemmShape) -> Result<Plan> {
        let t = cuda_type(s.dtype);
        let f32t = sys::cudaDataType_t::CUDA_R_32F;
        let yt = if s.store_y { t } else { f32t };
        let desc = lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, f32t)
            .map_err(blas_err("creating a matmul descriptor"))?;
        let mut plan = Plan {
            desc,
            a: lt::create_matrix_layout(t, s.k as u64, s.out as u64, s.ld_w as i64)
                .map_err(blas_err("layout of W"))?,
            b: lt::create_matrix_layout(t, s.k as u64, s.rows as u64, s.ld_x as i64)
                .map_err(blas_err("layout of x"))?,
            c: lt::create_matrix_layout(yt, s.out as u64, s.rows as u64, s.ld_y as i64)
                .map_err(blas_err("layout of y"))?,
            algo: unsafe { std::mem::zeroed() },
        };
        let set = |attr, v: *const c_void, n: usize| {
            // SAFETY: `v` points at `n` readable bytes of the attribute's type.
            unsafe { lt::set_matmul_desc_attribute(plan.desc, attr, v, n) }
                .map_err(blas_err("setting a descriptor attribute"))
        };
        use sys::cublasLtMatmulDescAttributes_t as A;
        // cublasOperation_t: CUBLAS_OP_T = 1.
        let trans_a: i32 = 1;
        set(
            A::CUBLASLT_MATMUL_DESC_TRANSA,
            &trans_a as *const i32 as *const c_void,
            size_of::<i32>(),
        )?;
        if s.bias {
            let epi = sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS;
            set(
                A::CUBLASLT_MATMUL_DESC_EPILOGUE,
                &epi as *const _ as *const c_void,
                size_of::<sys::cublasLtEpilogue_t>(),
            )?;
            set(
                A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                &yt as *const _ as *const c_void,
                size_of::<sys::cudaDataType>(),
            )?;
        }
        let pref = lt::create_matmul_pref().map_err(blas_err("creating a preference"))?;
        let ws = WORKSPACE;
        // SAFETY: the preference handle is live; the value is a usize as the attribute wants.
        let heur = unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &ws as *const usize as *const c_void,
                size_of::<usize>(),
            )
            .map_err(blas_err("setting the workspace size"))
            .and_then(|_| {
                lt::get_matmul_algo_heuristic(
                    self.handle,
                    plan.desc,
                    plan.a,
                    plan.b,
                    plan.c,
                    plan.c,
                    pref,
                )
                .map_err(|e| {
                    Error::Cuda(format!(
                        "cuBLASLt has no algorithm for {s:?} ({e}); strides of 16-bit inputs \
                         should be multiples of 8 elements"
                    ))
                })
            })
        };
        // SAFETY: created above, destroyed once.
        unsafe {
            let _ = lt::destroy_matmul_pref(pref);
        }
        plan.algo = heur?.algo;
        Ok(plan)
    }

    /// Enqueues `y = x·Wᵀ (+ bias) (+ y)` on the stream. Pointers are device addresses of
    /// buffers holding at least `rows·ld_x` (x), `out·ld_w` (W), `rows·ld_y` (y) elements and
    /// `out` fp32 biases.
    ///
    /// # Safety
    /// The pointers must be live device allocations of the sizes above, in `shape.dtype` (x, W)
    /// and fp32 (y, bias; y in the storage dtype with `store_y`), not freed before the
    /// stream reaches this GEMM.
    pub unsafe fn run(
        &self,
        shape: &GemmShape,
        x: CUdeviceptr,
        w: CUdeviceptr,
        y: CUdeviceptr,
        bias: Option<CUdeviceptr>,
    ) -> Result<()> {
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| Error::Cuda("gemm plan cache poisoned".into()))?;
        if !plans.contains_key(shape) {
            let p = self.make_plan(shape)?;
            plans.insert(*shape, p);
        }
        let plan = &plans[shape];
        if let Some(b) = bias {
            lt::set_matmul_desc_attribute(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                &b as *const CUdeviceptr as *const c_void,
                size_of::<CUdeviceptr>(),
            )
            .map_err(blas_err("setting the bias pointer"))?;
        }
        let alpha = 1.0f32;
        let beta = if shape.accumulate { 1.0f32 } else { 0.0 };
        use cudarc::driver::DevicePtr;
        let (ws, _guard) = self.workspace.device_ptr(&self.stream);
        lt::matmul(
            self.handle,
            plan.desc,
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
            w as *const c_void,
            plan.a,
            x as *const c_void,
            plan.b,
            y as *const c_void,
            plan.c,
            y as *mut c_void,
            plan.c,
            &plan.algo,
            ws as *mut c_void,
            WORKSPACE,
            self.stream.cu_stream() as *mut _,
        )
        .map_err(blas_err("matmul"))
    }
}
