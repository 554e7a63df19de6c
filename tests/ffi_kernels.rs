//! The C ABI's kernel level (src/ffi/kernels/) called as a C client calls it, through the
//! `extern "C"` functions on raw pointers: on host memory (ZO_KERNEL_HOST) bit for bit against
//! the CPU twins in the crate (the log-probs and attention under the tolerance rules of their
//! kernel tests), and on a GPU when there is one (ZO_KERNEL_CUDA, device buffers on a
//! non-default stream) bit for bit against the host twin. Bad arguments come back as their
//! named status with a message. No call may allocate device memory (zo's accounting stays at
//! zero in this binary, which allocates nothing through zo itself). tests/c/kernels.c does
//! the seeded update from C against a C computation of its documented formula.

#[cfg(feature = "cuda")]
#[path = "common/adapter.rs"]
mod adapter;
#[cfg(feature = "cuda")]
#[path = "common/attention.rs"]
mod attn;
#[cfg(feature = "cuda")]
#[path = "common/c_client.rs"]
mod c_client;
#[cfg(feature = "cuda")]
#[path = "common/devices.rs"]
mod devices;
#[cfg(feature = "cuda")]
mod ops_cases;

use std::ffi::CStr;

use zo::ffi::kernels::*;
use zo::ffi::status::*;

fn last_error() -> String {
    // SAFETY: zo_last_error returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(zo_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A call's status is `want`, with a message when it is an error.
#[track_caller]
fn expect(status: zo_status, want: zo_status, what: &str) {
    let msg = last_error();
    assert_eq!(
        status, want,
        "{what}: got {status} ({msg}), expected {want}"
    );
    assert_eq!(
        msg.is_empty(),
        want == ZO_OK,
        "{what}: status {status} with message {msg:?}"
    );
}

fn host_target() -> zo_kernel_target {
    zo_kernel_target {
        device: ZO_KERNEL_HOST,
        ..zo_kernel_target_default_params()
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_cuda_feature_every_kernel_call_is_unsupported() {
    let t = host_target();
    let mut theta = [0f32; 4];
    let p = zo_kernel_axpy_default_params();
    // SAFETY: valid structs and buffers.
    let s =
        unsafe { zo_kernel_seeded_axpy(&t, &p, theta.as_mut_ptr().cast(), 4, std::ptr::null(), 0) };
    expect(s, ZO_ERR_UNSUPPORTED, "seeded axpy");
    assert!(last_error().contains("--features cuda"), "{}", last_error());
    // SAFETY: as above.
    expect(
        unsafe { zo_kernel_prepare(&t) },
        ZO_ERR_UNSUPPORTED,
        "prepare",
    );
    let mut bytes = 0usize;
    // SAFETY: as above.
    let s = unsafe { zo_kernel_segment_table_size(1, 1, &mut bytes) };
    expect(s, ZO_ERR_UNSUPPORTED, "segment table size");
    let (p, b) = (
        zo_kernel_attention_default_params(),
        zo_kernel_attention_default_buffers(),
    );
    // SAFETY: as above.
    let s = unsafe { zo_kernel_attention_prefill(&t, &p, &b) };
    expect(s, ZO_ERR_UNSUPPORTED, "attention");
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::ffi::c_void;
    use std::sync::Arc;

    use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
    use zo::backend::cuda::{kernels_built, peak_device_bytes, DType};
    use zo::perturb::adapter::AugFamily;
    use zo::perturb::dense::{self, Tensor};
    use zo::perturb::lowrank::{
        bank_update, merge_factors, merge_low_rank, momentum_coefs, BankStep,
    };
    use zo::perturb::{role, Dist, Segment};

    use super::*;

    const DTYPES: [DType; 3] = [DType::F32, DType::Bf16, DType::F16];

    /// Host bytes, 8-byte aligned (as the segment table must be).
    #[derive(Clone, PartialEq, Eq)]
    pub struct Buf {
        words: Vec<u64>,
        bytes: usize,
    }

    impl std::fmt::Debug for Buf {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Buf({} bytes)", self.bytes)
        }
    }

    impl Buf {
        fn from_bytes(b: &[u8]) -> Buf {
            let mut words = vec![0u64; b.len().div_ceil(8).max(1)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..b.len()].copy_from_slice(b);
            Buf {
                words,
                bytes: b.len(),
            }
        }

        fn as_bytes(&self) -> &[u8] {
            &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.bytes]
        }

        fn ptr(&mut self) -> *mut c_void {
            self.words.as_mut_ptr().cast()
        }

        /// `v` rounded to and stored as `dtype`.
        fn values(dtype: DType, v: &[f32]) -> Buf {
            let b: Vec<u8> = match dtype {
                DType::F32 => bytemuck::cast_slice(v).to_vec(),
                DType::Bf16 => v
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
                DType::F16 => v
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            };
            Buf::from_bytes(&b)
        }

        fn f32s(v: &[f32]) -> Buf {
            Buf::values(DType::F32, v)
        }

        fn words(v: &[u32]) -> Buf {
            Buf::from_bytes(bytemuck::cast_slice(v))
        }

        fn to_f32(&self, dtype: DType) -> Vec<f32> {
            let b = self.as_bytes();
            match dtype {
                DType::F32 => b
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                DType::Bf16 => b
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                DType::F16 => b
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            }
        }
    }

    /// The bytes of `#[repr(C)]` records.
    fn records<T: Copy>(v: &[T]) -> Buf {
        // SAFETY: plain-old-data structs of integers and floats without padding.
        Buf::from_bytes(unsafe {
            std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v))
        })
    }

    /// A buffer placed where a call runs.
    #[derive(Clone, Copy)]
    pub struct Ptr {
        slot: usize,
        pub addr: *mut c_void,
    }

    impl Ptr {
        fn f32(self) -> *mut f32 {
            self.addr.cast()
        }

        fn u32(self) -> *mut u32 {
            self.addr.cast()
        }
    }

    enum Slot {
        Host(Buf),
        Dev(CudaSlice<u8>, usize),
    }

    /// The memory of one side of a comparison: host buffers (ZO_KERNEL_HOST), or device
    /// buffers of GPU 0 used on a stream of their own (ZO_KERNEL_CUDA).
    pub struct Mem {
        stream: Option<Arc<CudaStream>>,
        slots: Vec<Slot>,
    }

    impl Mem {
        fn host() -> Mem {
            Mem {
                stream: None,
                slots: Vec::new(),
            }
        }

        fn gpu() -> Mem {
            let ctx = CudaContext::new(0).expect("GPU 0 opens");
            Mem {
                stream: Some(ctx.new_stream().expect("a stream")),
                slots: Vec::new(),
            }
        }

        fn target(&self) -> zo_kernel_target {
            match &self.stream {
                None => host_target(),
                Some(s) => zo_kernel_target {
                    device: ZO_KERNEL_CUDA,
                    stream: s.cu_stream().cast(),
                    ..zo_kernel_target_default_params()
                },
            }
        }

        fn put(&mut self, mut b: Buf) -> Ptr {
            let slot = self.slots.len();
            let (addr, s) = match &self.stream {
                None => (b.ptr(), Slot::Host(b)),
                Some(stream) => {
                    // The whole backing words: never a zero-length allocation.
                    let d = stream
                        .clone_htod(bytemuck::cast_slice::<u64, u8>(&b.words))
                        .expect("upload");
                    let addr = d.device_ptr(stream).0 as *mut c_void;
                    (addr, Slot::Dev(d, b.bytes))
                }
            };
            self.slots.push(s);
            Ptr { slot, addr }
        }

        fn get(&self, p: Ptr) -> Buf {
            match (&self.slots[p.slot], &self.stream) {
                (Slot::Host(b), _) => b.clone(),
                (Slot::Dev(d, bytes), Some(stream)) => {
                    stream.synchronize().expect("the stream's work completes");
                    let v = stream.clone_dtoh(d).expect("download");
                    Buf::from_bytes(&v[..*bytes])
                }
                (Slot::Dev(..), None) => unreachable!("device slots live on a GPU side"),
            }
        }
    }

    /// Runs `case` on host memory, then on the GPU when there is one, where every output must
    /// equal the host twin's bit for bit; returns the host's outputs.
    fn on_both(test: &str, case: impl Fn(&mut Mem) -> Vec<Buf>) -> Vec<Buf> {
        let host = case(&mut Mem::host());
        if devices::gpu(test).is_some() {
            let gpu = case(&mut Mem::gpu());
            for (i, (g, h)) in gpu.iter().zip(&host).enumerate() {
                assert!(
                    g == h,
                    "{test}: output {i} differs between the GPU and the host twin"
                );
            }
        }
        assert_eq!(peak_device_bytes(), 0, "{test}: a kernel call allocated");
        host
    }

    #[track_caller]
    fn ok(status: zo_status, what: &str) {
        expect(status, ZO_OK, what);
    }

    #[track_caller]
    fn assert_bits(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        if let Some(i) = got
            .iter()
            .zip(want)
            .position(|(a, b)| a.to_bits() != b.to_bits())
        {
            panic!(
                "{what}: element {i}: kernel {:e} twin {:e}",
                got[i], want[i]
            );
        }
    }

    fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut v = vec![0.0; n];
        Dist::Gaussian.fill(seed, 3, 9, 0, &mut v);
        v.iter_mut().for_each(|x| *x *= scale);
        v
    }

    fn dtype_code(d: DType) -> i32 {
        match d {
            DType::F32 => ZO_DTYPE_F32,
            DType::Bf16 => ZO_DTYPE_BF16,
            DType::F16 => ZO_DTYPE_F16,
        }
    }

    fn dist_code(d: Dist) -> i32 {
        match d {
            Dist::Gaussian => ZO_DIST_GAUSSIAN,
            Dist::Rademacher => ZO_DIST_RADEMACHER,
        }
    }

    /// Update directions laid out by the ABI's own helper.
    fn dirs(terms: &[(u64, f32)]) -> Buf {
        let seeds: Vec<u64> = terms.iter().map(|t| t.0).collect();
        let coefs: Vec<f32> = terms.iter().map(|t| t.1).collect();
        let mut out = vec![zo_kernel_update_dir::default(); terms.len()];
        // SAFETY: n elements each.
        let s = unsafe {
            zo_kernel_update_dirs_fill(
                seeds.as_ptr(),
                coefs.as_ptr(),
                terms.len(),
                out.as_mut_ptr(),
            )
        };
        ok(s, "update dirs");
        records(&out)
    }

    /// `(seed_d, -(lr·g_d)/q)` of a q-direction step.
    fn terms(q: usize, lr: f32) -> Vec<(u64, f32)> {
        (0..q)
            .map(|d| {
                let g = 2.5 - 1.7 * d as f32;
                (0xabcd_0000_1234 + d as u64 * 977, -(lr * g) / q as f32)
            })
            .collect()
    }

    /// The segment table of `segs`, laid out by the ABI's own helper.
    fn segment_table(segs: &[Segment], dir_seeds: &[u64]) -> Buf {
        let mut bytes = 0usize;
        // SAFETY: a writable size_t.
        ok(
            unsafe { zo_kernel_segment_table_size(segs.len(), dir_seeds.len(), &mut bytes) },
            "segment table size",
        );
        let c: Vec<zo_kernel_segment> = segs
            .iter()
            .map(|s| zo_kernel_segment {
                row_start: s.rows.start,
                row_end: s.rows.end,
                seed: s.seed,
                scale: s.scale,
            })
            .collect();
        let mut table = Buf::from_bytes(&vec![0xa5u8; bytes]);
        // SAFETY: the counts are the arrays'; the table holds `bytes` bytes.
        let s = unsafe {
            zo_kernel_segment_table_fill(
                c.as_ptr(),
                c.len(),
                dir_seeds.as_ptr(),
                dir_seeds.len(),
                table.ptr(),
                bytes,
            )
        };
        ok(s, "segment table fill");
        table
    }

    /// The CPU twin of a seeded axpy of a `rows × cols` tensor at stride `ld` stored as
    /// `dtype`: zo's dense update on the packed rows, rounded once.
    #[allow(clippy::too_many_arguments)]
    fn axpy_twin(
        dtype: DType,
        host: &[f32],
        (rows, cols, ld): (usize, usize, usize),
        tensor: u32,
        role: u32,
        dist: Dist,
        terms: &[(u64, f32)],
        decay: f32,
    ) -> Vec<f32> {
        let mut out: Vec<f32> = host.iter().map(|&v| dtype.round(v)).collect();
        let mut packed: Vec<f32> = (0..rows)
            .flat_map(|i| out[i * ld..i * ld + cols].to_vec())
            .collect();
        let t = Tensor {
            param: zo::model::Param::Embed,
            tensor_id: tensor,
            data: &mut packed,
            decay: true,
        };
        dense::seeded_axpy(vec![t], role, dist, terms, (decay != 0.0).then_some(decay));
        for i in 0..rows {
            for j in 0..cols {
                out[i * ld + j] = dtype.round(packed[i * cols + j]);
            }
        }
        out
    }

    #[test]
    fn seeded_axpy_matches_the_dense_and_lora_updates() {
        let shapes = [(1, 37, 0), (5, 7, 9), (3, 300, 310)];
        for dtype in DTYPES {
            for (n, &(rows, cols, ld)) in shapes.iter().enumerate() {
                for (q, decay, rl, dist) in [
                    (1, 0.0, role::DENSE, Dist::Gaussian),
                    (3, 1e-4f32, role::DENSE, Dist::Rademacher),
                    (2, 0.5, role::LORA_A, Dist::Gaussian),
                    (3, 1e-3, role::LORA_B, Dist::Rademacher),
                ] {
                    let stride = if ld == 0 { cols } else { ld };
                    let len = (rows - 1) * stride + cols;
                    let host = values(n as u64, len, 0.3);
                    let terms = terms(q, 1e-3);
                    let tensor = 1000 + n as u32;
                    let what = format!("axpy {dtype} {rows}×{cols}/{ld} q {q} role {rl} {dist:?}");
                    let out = on_both("seeded_axpy", |m| {
                        let theta = m.put(Buf::values(dtype, &host));
                        let d = m.put(dirs(&terms));
                        let p = zo_kernel_axpy_params {
                            dtype: dtype_code(dtype),
                            dist: dist_code(dist),
                            tensor_id: tensor,
                            role: rl,
                            rows,
                            cols,
                            ld,
                            decay,
                            ..zo_kernel_axpy_default_params()
                        };
                        let t = m.target();
                        // SAFETY: the buffers hold the counts given.
                        let s = unsafe {
                            zo_kernel_seeded_axpy(&t, &p, theta.addr, len, d.addr.cast(), q)
                        };
                        ok(s, &what);
                        vec![m.get(theta)]
                    });
                    let twin = axpy_twin(
                        dtype,
                        &host,
                        (rows, cols, stride),
                        tensor,
                        rl,
                        dist,
                        &terms,
                        decay,
                    );
                    assert_bits(&out[0].to_f32(dtype), &twin, &what);
                }
            }
        }
    }

    #[test]
    fn bank_updates_match_the_lowrank_family() {
        let (r, out) = (4, 130);
        let n = r * out;
        let lr = 1e-2f32;
        let rec = zo::perturb::StepRecord {
            step: 3,
            seeds: terms(3, lr).iter().map(|t| t.0).collect(),
            grads: vec![2.5, 0.8, -0.9],
            lr,
            period_seed: None,
        };
        let bank0 = values(1, n, 1e-4);
        let mom0 = values(2, n, 1e-2);
        for dist in [Dist::Gaussian, Dist::Rademacher] {
            let steps = [
                BankStep::Plain(zo::perturb::lowrank::bank_coefs(&rec)),
                BankStep::Momentum {
                    beta: 0.9,
                    neg_lr: -lr,
                    coefs: momentum_coefs(&rec, 0.9, true),
                },
                BankStep::Momentum {
                    beta: 0.9,
                    neg_lr: -lr,
                    coefs: momentum_coefs(&rec, 0.9, false),
                },
            ];
            for step in &steps {
                let (coefs, momentum) = match step {
                    BankStep::Plain(c) => (c, None),
                    BankStep::Momentum {
                        beta,
                        neg_lr,
                        coefs,
                    } => (coefs, Some((*beta, *neg_lr))),
                };
                let what = format!("bank {dist:?} {step:?}");
                let got = on_both("bank_update", |m| {
                    let bank = m.put(Buf::f32s(&bank0));
                    let mom = m.put(Buf::f32s(&mom0));
                    let d = m.put(dirs(coefs));
                    let (beta, neg_lr) = momentum.unwrap_or((0.0, 0.0));
                    let p = zo_kernel_bank_params {
                        dist: dist_code(dist),
                        tensor_id: 321,
                        beta,
                        neg_lr,
                        ..zo_kernel_bank_default_params()
                    };
                    let mp = if momentum.is_some() {
                        mom.f32()
                    } else {
                        std::ptr::null_mut()
                    };
                    let t = m.target();
                    // SAFETY: the buffers hold the counts given.
                    let s = unsafe {
                        zo_kernel_lowrank_bank_update(
                            &t,
                            &p,
                            bank.f32(),
                            mp,
                            n,
                            d.addr.cast(),
                            coefs.len(),
                        )
                    };
                    ok(s, &what);
                    vec![m.get(bank), m.get(mom)]
                });
                let (mut cb, mut cm) = (bank0.clone(), mom0.clone());
                bank_update(dist, 321, r, &mut cb, &mut cm, step);
                assert_bits(&got[0].to_f32(DType::F32), &cb, &what);
                assert_bits(
                    &got[1].to_f32(DType::F32),
                    &cm,
                    &format!("{what}: momentum"),
                );
            }
        }
    }

    /// Momentum and Adam through the C call, three updates in a row, against the host's
    /// `Moments`: θ and both moments bit for bit; a bad rule or β is refused.
    #[test]
    fn moments_updates_match_the_host_rules() {
        use zo::perturb::step_rule::{direction_coefs, Moments, StepRule};
        let n = 1_037;
        let theta0 = values(5, n, 0.1);
        let adam = StepRule::Adam {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-6,
        };
        for (rule, code) in [
            (StepRule::Momentum { beta: 0.8 }, ZO_RULE_MOMENTUM),
            (adam, ZO_RULE_ADAM),
        ] {
            let what = format!("{rule:?}");
            let (mut host, mut cpu) = (theta0.clone(), Moments::default());
            let (mut theta, mut m1, mut m2) = (theta0.clone(), vec![0.0; n], vec![0.0; n]);
            for step in 0..3u64 {
                let rec = zo::perturb::StepRecord {
                    step,
                    seeds: vec![11 + step, 12 + step],
                    grads: vec![1.5, -0.5 * step as f32],
                    lr: 1e-2,
                    period_seed: None,
                };
                let decay = 1e-4f32;
                let got = on_both("moments_update", |m| {
                    let t = m.put(Buf::f32s(&theta));
                    let a = m.put(Buf::f32s(&m1));
                    let b = m.put(Buf::f32s(&m2));
                    let d = m.put(dirs(&direction_coefs(&rec)));
                    let p = zo_kernel_moments_params {
                        rule: code,
                        tensor_id: 77,
                        role: ZO_ROLE_LORA_A,
                        beta1: match rule {
                            StepRule::Momentum { beta } => beta,
                            _ => 0.9,
                        },
                        beta2: 0.99,
                        eps: 1e-6,
                        lr: rec.lr,
                        updates: step,
                        decay,
                        ..zo_kernel_moments_default_params()
                    };
                    let target = m.target();
                    // SAFETY: the buffers hold the counts given.
                    let s = unsafe {
                        zo_kernel_moments_update(
                            &target,
                            &p,
                            t.f32(),
                            a.f32(),
                            b.f32(),
                            n,
                            d.addr.cast(),
                            2,
                        )
                    };
                    ok(s, &what);
                    vec![m.get(t), m.get(a), m.get(b)]
                });
                theta = got[0].to_f32(DType::F32);
                m1 = got[1].to_f32(DType::F32);
                m2 = got[2].to_f32(DType::F32);
                let tensors = vec![zo::perturb::dense::Tensor {
                    param: zo::model::Param::Embed,
                    tensor_id: 77,
                    data: &mut host,
                    decay: true,
                }];
                let role = zo::perturb::role::LORA_A;
                cpu.apply(rule, tensors, role, Dist::Gaussian, &rec, Some(decay))
                    .unwrap();
                cpu.finish_update();
                assert_bits(&theta, &host, &format!("{what}: update {step}"));
            }
        }
        let mut m = Mem::host();
        let t = m.put(Buf::f32s(&[0.0; 4]));
        let target = m.target();
        for (p, want) in [
            (
                zo_kernel_moments_params {
                    rule: 7,
                    ..zo_kernel_moments_default_params()
                },
                "rule is 7",
            ),
            (
                zo_kernel_moments_params {
                    beta1: 1.0,
                    ..zo_kernel_moments_default_params()
                },
                "β must be in [0, 1)",
            ),
        ] {
            // SAFETY: as above; the call is refused before it reads a buffer.
            let s = unsafe {
                zo_kernel_moments_update(
                    &target,
                    &p,
                    t.f32(),
                    t.f32(),
                    std::ptr::null_mut(),
                    4,
                    std::ptr::null(),
                    0,
                )
            };
            expect(s, ZO_ERR_ARGUMENT, want);
            assert!(last_error().contains(want), "{}", last_error());
        }
    }

    #[test]
    fn merges_match_the_lowrank_and_lora_merges() {
        let (r, out, k, ld) = (5, 130, 260, 288);
        let bt = values(10, r * out, 1e-3);
        let vt = values(11, r * k, 1.0);
        let host = values(12, out * ld, 0.2);
        for dtype in [DType::F32, DType::Bf16] {
            for left in [ZO_FACTOR_BANK_T, ZO_FACTOR_LORA_B] {
                let scale = 0.25f32;
                let what = format!("merge {dtype} left {left}");
                let got = on_both("factor_merge", |m| {
                    let w = m.put(Buf::values(dtype, &host));
                    let b = m.put(Buf::f32s(&bt));
                    let a = m.put(Buf::f32s(&vt));
                    let p = zo_kernel_merge_params {
                        dtype: dtype_code(dtype),
                        left,
                        out,
                        k,
                        ld,
                        rank: r,
                        scale,
                        ..zo_kernel_merge_default_params()
                    };
                    let t = m.target();
                    // SAFETY: the buffers hold the counts given.
                    let s = unsafe {
                        zo_kernel_factor_merge(
                            &t,
                            &p,
                            w.addr,
                            host.len(),
                            b.f32(),
                            bt.len(),
                            a.f32(),
                            vt.len(),
                        )
                    };
                    ok(s, &what);
                    vec![m.get(w)]
                });
                let mut packed: Vec<f32> = (0..out)
                    .flat_map(|i| host[i * ld..i * ld + k].iter().map(|&v| dtype.round(v)))
                    .collect();
                if left == ZO_FACTOR_BANK_T {
                    merge_low_rank(&mut packed, scale, &bt, &vt, r, k);
                } else {
                    merge_factors(&mut packed, scale, &bt, &vt, r, k);
                }
                let mut twin: Vec<f32> = host.iter().map(|&v| dtype.round(v)).collect();
                for i in 0..out {
                    for j in 0..k {
                        twin[i * ld + j] = dtype.round(packed[i * k + j]);
                    }
                }
                assert_bits(&got[0].to_f32(dtype), &twin, &what);
            }
        }
    }

    #[test]
    fn candidate_logprobs_match_the_cpu_log_softmax() {
        // The emulation keeps to the small cases (as tests/kernels_loss.rs).
        for case in ops_cases::logprob_cases().into_iter().take(5) {
            let n_q = case.n_queries();
            let run = |with_lse: bool| {
                on_both("candidate_logprobs", |m| {
                    let logits = m.put(Buf::f32s(&case.logits));
                    let queries = m.put(Buf::words(&case.queries));
                    let lse = m.put(Buf::f32s(&vec![f32::NAN; case.rows]));
                    let lp = m.put(Buf::f32s(&vec![f32::NAN; n_q]));
                    let p = zo_kernel_logprob_params {
                        rows: case.rows,
                        vocab: case.vocab,
                        ld: case.ld,
                        ..zo_kernel_logprob_default_params()
                    };
                    let lse_ptr = if with_lse {
                        lse.f32()
                    } else {
                        std::ptr::null_mut()
                    };
                    let t = m.target();
                    // SAFETY: the buffers hold the counts given.
                    let s = unsafe {
                        zo_kernel_candidate_logprobs(
                            &t,
                            &p,
                            logits.f32(),
                            case.logits.len(),
                            queries.u32(),
                            n_q,
                            lse_ptr,
                            case.rows,
                            lp.f32(),
                            n_q,
                        )
                    };
                    ok(s, "candidate log-probs");
                    vec![m.get(lse), m.get(lp)]
                })
            };
            let with = run(true);
            let (lse, lp) = (with[0].to_f32(DType::F32), with[1].to_f32(DType::F32));
            case.check("ffi host", &lse, &lp);
            let without = run(false);
            assert_bits(&without[1].to_f32(DType::F32), &lp, "log-probs without lse");
            assert!(
                without[0].to_f32(DType::F32).iter().all(|v| v.is_nan()),
                "lse written though NULL was passed"
            );
        }
    }

    /// Every site's shrink and pack through the ABI; x' and W' widened to f32.
    fn adapter_run(m: &mut Mem, case: &adapter::Case, prec: DType) -> Vec<Buf> {
        let x = m.put(Buf::values(prec, &case.x_input(prec)));
        let w = m.put(Buf::values(prec, &case.w_input(prec)));
        let (nx, nw) = (case.rows * case.ld, case.out_total * case.ld);
        let table = m.put(segment_table(&case.segs, &case.dir_seeds));
        let (n_segs, n_dirs) = (case.segs.len(), case.dir_seeds.len());
        let sites = case.aug_sites(prec);
        let n = sites.len();
        let t = m.target();
        for (g, (sc, a)) in case.sites.iter().zip(&sites).enumerate() {
            let factor = m.put(Buf::f32s(&sc.factor));
            let state = m.put(Buf::f32s(&sc.state));
            let site = zo_kernel_adapter_site {
                family: match a.family {
                    AugFamily::LowRank => ZO_ADAPTER_LOWRANK,
                    AugFamily::Lora => ZO_ADAPTER_LORA,
                },
                dtype: dtype_code(prec),
                k: a.k,
                ld: a.ld,
                col0: a.col0,
                rank: a.rank,
                dirs: a.dirs,
                live: a.live as i32,
                dist: dist_code(a.dist),
                tensor_id: a.tensor_id,
                scale_exp: a.scale_exp,
                scale: a.scale,
                ..zo_kernel_adapter_site_default_params()
            };
            let pad = if g + 1 == n { case.padding() } else { 0..0 };
            // SAFETY: the buffers hold the counts given.
            let s = unsafe {
                zo_kernel_adapter_shrink(
                    &t,
                    &site,
                    case.rows,
                    x.addr,
                    nx,
                    factor.f32(),
                    sc.factor.len(),
                    table.addr,
                    n_segs,
                    n_dirs,
                    pad.start,
                    pad.end,
                )
            };
            ok(s, "shrink");
            // SAFETY: as above.
            let s = unsafe {
                zo_kernel_adapter_pack(
                    &t,
                    &site,
                    sc.lin.out_dim,
                    sc.row0,
                    w.addr,
                    nw,
                    state.f32(),
                    sc.state.len(),
                    table.addr,
                    n_segs,
                    n_dirs,
                )
            };
            ok(s, "pack");
        }
        vec![m.get(x), m.get(w)]
    }

    #[test]
    fn shrink_and_pack_match_the_adapter_twin() {
        let mut cases = adapter::cases(70);
        let qkv = [zo::model::Slot::Q, zo::model::Slot::K, zo::model::Slot::V];
        cases.push(
            adapter::case(false, &qkv, 3, 5, Dist::Gaussian, true, 70).naming_fewer_directions(1),
        );
        for case in &cases {
            for prec in DTYPES {
                let got = on_both("shrink_and_pack", |m| adapter_run(m, case, prec));
                let (xt, wt) = case.twin(prec);
                let what = format!("{} {prec}", case.name);
                assert_bits(&got[0].to_f32(prec), &xt, &format!("{what}: shrink"));
                assert_bits(&got[1].to_f32(prec), &wt, &format!("{what}: pack"));
            }
        }
    }

    /// Extra output columns past the heads, which the kernel must leave alone.
    const OUT_PAD: usize = 8;
    const SENTINEL: f32 = -12345.0;

    fn attention_run(m: &mut Mem, c: &attn::Case, dtype: DType) -> Vec<Buf> {
        let width = c.spec.heads * c.spec.head_dim;
        let out_ld = width + OUT_PAD;
        let mut seeds: Vec<u64> = Vec::new();
        for s in &c.segments {
            if !seeds.contains(&s.seed) {
                seeds.push(s.seed);
            }
        }
        let q = m.put(Buf::f32s(&c.qkv_roped));
        let kc = m.put(Buf::f32s(&c.k_cache_after));
        let vc = m.put(Buf::f32s(&c.v_cache_after));
        let cu = m.put(Buf::words(&c.cu_seqlens));
        let ctx = m.put(Buf::words(&c.ctx_lens));
        let own = c.own_starts.as_ref().map(|o| m.put(Buf::words(o)));
        let bt = m.put(Buf::words(&c.block_tables));
        let pk = m.put(Buf::f32s(&c.prefix_k));
        let pv = m.put(Buf::f32s(&c.prefix_v));
        let table = m.put(segment_table(&c.segments, &seeds));
        let out = m.put(Buf::values(dtype, &vec![SENTINEL; c.layout.rows * out_ld]));
        let p = zo_kernel_attention_params {
            out_dtype: dtype_code(dtype),
            heads: c.spec.heads,
            kv_heads: c.spec.kv_heads,
            head_dim: c.spec.head_dim,
            rows: c.layout.rows,
            q_ld: c.layout.ld,
            q_col: c.layout.q_col,
            out_ld,
            max_pages: c.max_pages,
            max_seqlen: c.max_seqlen,
            scale: c.scale,
            prefix_tokens: c.spec.prefix,
            prefix_layer: c.layer,
            prefix_dist: dist_code(c.spec.dist),
            ..zo_kernel_attention_default_params()
        };
        let b = zo_kernel_attention_buffers {
            q: q.f32(),
            q_len: c.qkv_roped.len(),
            k_cache: kc.f32(),
            k_cache_len: c.k_cache_after.len(),
            v_cache: vc.f32(),
            v_cache_len: c.v_cache_after.len(),
            cu_seqlens: cu.u32(),
            cu_seqlens_len: c.cu_seqlens.len(),
            ctx_lens: ctx.u32(),
            ctx_lens_len: c.ctx_lens.len(),
            block_tables: bt.u32(),
            block_tables_len: c.block_tables.len(),
            prefix_k: pk.f32(),
            prefix_k_len: c.prefix_k.len(),
            prefix_v: pv.f32(),
            prefix_v_len: c.prefix_v.len(),
            segment_table: table.addr,
            n_segments: c.segments.len(),
            n_dirs: seeds.len(),
            out: out.addr,
            out_len: c.layout.rows * out_ld,
            own_starts: own.as_ref().map_or(std::ptr::null(), |o| o.u32()),
            own_starts_len: c.own_starts.as_ref().map_or(0, Vec::len),
            ..zo_kernel_attention_default_buffers()
        };
        let t = m.target();
        // SAFETY: the buffers hold the counts given.
        ok(
            unsafe { zo_kernel_attention_prefill(&t, &p, &b) },
            "attention",
        );
        vec![m.get(out)]
    }

    #[test]
    fn prefill_attention_with_the_prefix_matches_the_references() {
        let specs = attn::cases(true);
        let prefix = specs.iter().filter(|s| s.prefix > 0).count();
        assert!(
            prefix >= 2,
            "the attention cases hold {prefix} prefix batches"
        );
        assert!(specs.iter().any(|s| s.fresh_pages && s.prefix > 0));
        for spec in specs
            .iter()
            .filter(|s| s.prefix > 0 || s.name.contains("hd80") || s.fresh_pages)
        {
            let c = spec.build();
            for dtype in DTYPES {
                let got = on_both("attention", |m| attention_run(m, &c, dtype));
                let what = format!("ffi attention {dtype}");
                let out_ld = spec.heads * spec.head_dim + OUT_PAD;
                let y =
                    c.unpack_output(&got[0].to_f32(dtype), out_ld, dtype.round(SENTINEL), &what);
                c.check_output(&y, dtype, &what);
            }
        }
    }

    #[test]
    fn prepare_and_the_cuda_target_say_what_is_missing() {
        let t = host_target();
        // SAFETY: a valid target.
        ok(unsafe { zo_kernel_prepare(&t) }, "prepare on the host");
        if devices::gpu("prepare_and_the_cuda_target_say_what_is_missing").is_some() {
            let t = zo_kernel_target_default_params();
            // SAFETY: GPU 0's legacy default stream.
            ok(unsafe { zo_kernel_prepare(&t) }, "prepare on GPU 0");
            return;
        }
        let t = zo_kernel_target_default_params();
        // SAFETY: a valid target.
        let s = unsafe { zo_kernel_prepare(&t) };
        let want = if kernels_built() {
            ZO_ERR_CUDA
        } else {
            ZO_ERR_UNSUPPORTED
        };
        expect(s, want, "ZO_KERNEL_CUDA without a GPU");
        let mut theta = [1f32; 4];
        let p = zo_kernel_axpy_params {
            cols: 4,
            ..zo_kernel_axpy_default_params()
        };
        // SAFETY: as above.
        let s = unsafe {
            zo_kernel_seeded_axpy(&t, &p, theta.as_mut_ptr().cast(), 4, std::ptr::null(), 0)
        };
        expect(s, want, "seeded axpy on ZO_KERNEL_CUDA without a GPU");
    }

    #[test]
    fn bad_arguments_are_refused_with_their_status() {
        let t = host_target();
        let mut theta = vec![0.5f32; 10];
        let d = dirs(&terms(2, 1e-3));
        let dp: *const zo_kernel_update_dir = d.as_bytes().as_ptr().cast();
        let p = zo_kernel_axpy_params {
            rows: 2,
            cols: 5,
            ..zo_kernel_axpy_default_params()
        };
        let th = theta.as_mut_ptr().cast::<c_void>();
        let axpy = |t: *const zo_kernel_target,
                    p: *const zo_kernel_axpy_params,
                    th: *mut c_void,
                    n: usize| {
            // SAFETY: the pointers are NULL or valid for the counts (the bad cases are the
            // ones the library must catch before touching memory).
            unsafe { zo_kernel_seeded_axpy(t, p, th, n, dp, 2) }
        };
        expect(
            axpy(std::ptr::null(), &p, th, 10),
            ZO_ERR_NULL,
            "NULL target",
        );
        expect(
            axpy(&t, std::ptr::null(), th, 10),
            ZO_ERR_NULL,
            "NULL params",
        );
        expect(
            axpy(&t, &p, std::ptr::null_mut(), 10),
            ZO_ERR_NULL,
            "NULL theta",
        );
        let small = zo_kernel_axpy_params {
            struct_size: 8,
            ..p
        };
        expect(axpy(&t, &small, th, 10), ZO_ERR_STRUCT_SIZE, "struct_size");
        let bad_t = zo_kernel_target {
            struct_size: 0,
            ..t
        };
        expect(
            axpy(&bad_t, &p, th, 10),
            ZO_ERR_STRUCT_SIZE,
            "target struct_size",
        );
        let bad_dev = zo_kernel_target { device: 7, ..t };
        expect(axpy(&bad_dev, &p, th, 10), ZO_ERR_ARGUMENT, "device code");
        let bad_dtype = zo_kernel_axpy_params { dtype: 9, ..p };
        expect(axpy(&t, &bad_dtype, th, 10), ZO_ERR_ARGUMENT, "dtype code");
        let bad_dist = zo_kernel_axpy_params { dist: -1, ..p };
        expect(axpy(&t, &bad_dist, th, 10), ZO_ERR_ARGUMENT, "dist code");
        let nan = zo_kernel_axpy_params {
            decay: f32::NAN,
            ..p
        };
        expect(axpy(&t, &nan, th, 10), ZO_ERR_ARGUMENT, "NaN decay");
        expect(axpy(&t, &p, th, 9), ZO_ERR_SHAPE, "theta shorter than 2×5");
        let narrow = zo_kernel_axpy_params { ld: 4, ..p };
        expect(axpy(&t, &narrow, th, 10), ZO_ERR_SHAPE, "ld below cols");
        // A bf16 tensor at an odd address.
        let odd = zo_kernel_axpy_params {
            dtype: ZO_DTYPE_BF16,
            ..p
        };
        // SAFETY: one byte in, still inside the buffer; refused for its alignment.
        let th1 = unsafe { th.cast::<u8>().add(1) }.cast();
        expect(axpy(&t, &odd, th1, 10), ZO_ERR_ARGUMENT, "misaligned theta");
        assert!(
            theta.iter().all(|&v| v == 0.5),
            "a refused call wrote theta"
        );

        // A NaN coefficient never reaches a table.
        let mut out = [zo_kernel_update_dir::default()];
        // SAFETY: one element each.
        let s = unsafe { zo_kernel_update_dirs_fill(&7u64, &f32::INFINITY, 1, out.as_mut_ptr()) };
        expect(s, ZO_ERR_NOT_FINITE, "infinite coefficient");
        // SAFETY: NULL arrays of one element.
        let s = unsafe { zo_kernel_update_dirs_fill(std::ptr::null(), &1.0, 1, out.as_mut_ptr()) };
        expect(s, ZO_ERR_NULL, "NULL seeds");

        // Bank: trained state must be f32 and as long as n.
        let mut bank = vec![0f32; 8];
        let bp = zo_kernel_bank_default_params();
        // SAFETY: `bank` holds 8 floats, `dp` two directions.
        let s = unsafe {
            zo_kernel_lowrank_bank_update(
                &t,
                &bp,
                bank.as_mut_ptr(),
                std::ptr::null_mut(),
                8,
                dp,
                2,
            )
        };
        ok(s, "bank update");
        let bad = zo_kernel_bank_params {
            struct_size: 0,
            ..bp
        };
        // SAFETY: as above.
        let s = unsafe {
            zo_kernel_lowrank_bank_update(
                &t,
                &bad,
                bank.as_mut_ptr(),
                std::ptr::null_mut(),
                8,
                dp,
                2,
            )
        };
        expect(s, ZO_ERR_STRUCT_SIZE, "bank struct_size");

        // Merge: a factor shorter than rank × out.
        let mut w = vec![0f32; 12];
        let fb = [0f32; 5];
        let mp = zo_kernel_merge_params {
            out: 3,
            k: 4,
            rank: 2,
            ..zo_kernel_merge_default_params()
        };
        // SAFETY: each pointer holds its count.
        let merge = |p: &zo_kernel_merge_params, w: &mut [f32], b_len| unsafe {
            zo_kernel_factor_merge(
                &t,
                p,
                w.as_mut_ptr().cast(),
                w.len(),
                fb.as_ptr(),
                b_len,
                fb.as_ptr(),
                5,
            )
        };
        expect(
            merge(&mp, &mut w, 5),
            ZO_ERR_SHAPE,
            "left factor of 5 for 2×3",
        );
        let lf = zo_kernel_merge_params { left: 5, ..mp };
        expect(merge(&lf, &mut w, 5), ZO_ERR_ARGUMENT, "left factor code");

        // Log-probs: an output shorter than the queries.
        let logits = [0f32; 6];
        let queries = [0u32, 1, 1, 2];
        let mut lp = [0f32; 2];
        let lpp = zo_kernel_logprob_params {
            rows: 2,
            vocab: 3,
            ..zo_kernel_logprob_default_params()
        };
        // SAFETY: each pointer holds at least its count.
        let logprobs = |n_out: usize, lp: &mut [f32]| unsafe {
            zo_kernel_candidate_logprobs(
                &t,
                &lpp,
                logits.as_ptr(),
                6,
                queries.as_ptr(),
                2,
                std::ptr::null_mut(),
                0,
                lp.as_mut_ptr(),
                n_out,
            )
        };
        expect(
            logprobs(1, &mut lp),
            ZO_ERR_SHAPE,
            "one log-prob slot for two queries",
        );
        ok(logprobs(2, &mut lp), "log-probs");
        assert!(
            (lp[0] - (-(3f32).ln())).abs() < 1e-6,
            "uniform logits: {lp:?}"
        );

        // Segment tables: too small, out of order, a seed that is no direction's.
        let seg = |a: usize, b: usize, seed: u64| zo_kernel_segment {
            row_start: a,
            row_end: b,
            seed,
            scale: 1e-3,
        };
        let mut bytes = 0;
        // SAFETY: a writable size_t.
        ok(
            unsafe { zo_kernel_segment_table_size(2, 1, &mut bytes) },
            "table size",
        );
        assert_eq!(bytes, 4 * (14 + 2), "two segments and a seed");
        let mut table = Buf::from_bytes(&vec![0u8; bytes]);
        let fill = |segs: &[zo_kernel_segment], table: &mut Buf, len: usize| {
            // SAFETY: the arrays hold their counts, the table `len` bytes.
            unsafe {
                zo_kernel_segment_table_fill(segs.as_ptr(), segs.len(), &5u64, 1, table.ptr(), len)
            }
        };
        let good = [seg(0, 3, 5), seg(3, 6, 5)];
        ok(fill(&good, &mut table, bytes), "table");
        expect(
            fill(&good, &mut table, bytes - 4),
            ZO_ERR_BUFFER_TOO_SMALL,
            "short table",
        );
        expect(
            fill(&[seg(2, 4, 5), seg(3, 6, 5)], &mut table, bytes),
            ZO_ERR_ARGUMENT,
            "overlap",
        );
        expect(
            fill(&[seg(0, 3, 5), seg(3, 6, 6)], &mut table, bytes),
            ZO_ERR_ARGUMENT,
            "seed",
        );

        // Shrink: a site whose block runs past ld, and a misaligned segment table.
        let site = zo_kernel_adapter_site {
            dtype: ZO_DTYPE_F32,
            k: 4,
            ld: 8,
            col0: 4,
            rank: 2,
            dirs: 1,
            ..zo_kernel_adapter_site_default_params()
        };
        let mut x = vec![0f32; 6 * 8];
        let factor = [0f32; 8];
        let shrink = |site: &zo_kernel_adapter_site, x: &mut [f32], table: *const c_void| {
            // SAFETY: each pointer holds its count.
            unsafe {
                zo_kernel_adapter_shrink(
                    &t,
                    site,
                    6,
                    x.as_mut_ptr().cast(),
                    x.len(),
                    factor.as_ptr(),
                    8,
                    table,
                    2,
                    1,
                    0,
                    0,
                )
            }
        };
        ok(shrink(&site, &mut x, table.ptr()), "shrink");
        let wide = zo_kernel_adapter_site { rank: 3, ..site };
        expect(
            shrink(&wide, &mut x, table.ptr()),
            ZO_ERR_SHAPE,
            "block past ld",
        );
        let fam = zo_kernel_adapter_site { family: 2, ..site };
        expect(
            shrink(&fam, &mut x, table.ptr()),
            ZO_ERR_ARGUMENT,
            "family code",
        );
        // SAFETY: 4 bytes in, still inside the table; refused for its alignment.
        let off = unsafe { table.ptr().cast::<u8>().add(4) }.cast();
        expect(
            shrink(&site, &mut x, off),
            ZO_ERR_ARGUMENT,
            "table at 4 bytes",
        );
        expect(
            shrink(&site, &mut x, std::ptr::null()),
            ZO_ERR_NULL,
            "NULL table",
        );

        // Attention: block tables of the wrong length.
        let p = zo_kernel_attention_params {
            out_dtype: ZO_DTYPE_F32,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
            rows: 1,
            max_pages: 1,
            max_seqlen: 1,
            ..zo_kernel_attention_default_params()
        };
        let q = [0f32; 8];
        let cache = vec![0f32; 16 * 4];
        let cu = [0u32, 1];
        let ctx = [0u32];
        let pages = [0u32, 0];
        let mut o = [0f32; 8];
        let b = zo_kernel_attention_buffers {
            q: q.as_ptr(),
            q_len: 8,
            k_cache: cache.as_ptr(),
            k_cache_len: cache.len(),
            v_cache: cache.as_ptr(),
            v_cache_len: cache.len(),
            cu_seqlens: cu.as_ptr(),
            cu_seqlens_len: 2,
            ctx_lens: ctx.as_ptr(),
            ctx_lens_len: 1,
            block_tables: pages.as_ptr(),
            block_tables_len: 1,
            out: o.as_mut_ptr().cast(),
            out_len: 8,
            ..zo_kernel_attention_default_buffers()
        };
        // SAFETY: each pointer holds its count.
        ok(
            unsafe { zo_kernel_attention_prefill(&t, &p, &b) },
            "attention",
        );
        let long = zo_kernel_attention_buffers {
            block_tables_len: 2,
            ..b
        };
        // SAFETY: as above.
        let s = unsafe { zo_kernel_attention_prefill(&t, &p, &long) };
        expect(s, ZO_ERR_SHAPE, "block tables of 2 for 1 sequence × 1 page");
        let prefixed = zo_kernel_attention_params {
            prefix_tokens: 2,
            ..p
        };
        // SAFETY: as above.
        let s = unsafe { zo_kernel_attention_prefill(&t, &prefixed, &b) };
        expect(s, ZO_ERR_SHAPE, "a prefix without its keys");
        let bad = zo_kernel_attention_buffers {
            struct_size: 1,
            ..b
        };
        // SAFETY: as above.
        let s = unsafe { zo_kernel_attention_prefill(&t, &p, &bad) };
        expect(s, ZO_ERR_STRUCT_SIZE, "buffers struct_size");
        // A caller built against the header before own_starts passes the shorter struct: it
        // is read as such (the fields past it are never looked at), own starts NULL.
        let starts = [0u32, 0];
        let older = zo_kernel_attention_buffers {
            struct_size: std::mem::offset_of!(zo_kernel_attention_buffers, own_starts),
            own_starts: starts.as_ptr(),
            own_starts_len: 2,
            ..b
        };
        // SAFETY: as above.
        ok(
            unsafe { zo_kernel_attention_prefill(&t, &p, &older) },
            "attention through the older buffers struct",
        );
        let two_starts = zo_kernel_attention_buffers {
            struct_size: std::mem::size_of::<zo_kernel_attention_buffers>(),
            ..older
        };
        // SAFETY: as above.
        let s = unsafe { zo_kernel_attention_prefill(&t, &p, &two_starts) };
        expect(s, ZO_ERR_SHAPE, "own starts of 2 for 1 sequence");
    }

    /// tests/c/kernels.c: the seeded update from C on the host twin, against the formula
    /// computed in C from zo_rng_fill and fmaf, and its refusals of bad arguments.
    #[test]
    fn c_client_checks_the_seeded_update_against_its_formula() {
        let dir = tempfile::tempdir().unwrap();
        let exe = c_client::build("kernels", dir.path());
        let out = c_client::run::<&str>(&exe, &[]);
        assert!(out.contains("kernels: ok"), "{out}");
    }

    /// tests/c/kernels_gpu.c: a C client that loads the CUDA driver itself, owns the device
    /// buffers and a non-blocking stream, runs the seeded update and the log-probs there and
    /// replays one update captured into its own CUDA graph, each bit for bit against the host
    /// twin. Its `--host` run puts the host twin on both sides, so that its calls and
    /// comparisons run where there is no GPU; without one the GPU run prints `skipped:`.
    #[test]
    fn c_client_runs_the_kernels_on_its_own_stream_and_graph() {
        let test = "c_client_runs_the_kernels_on_its_own_stream_and_graph";
        let dir = tempfile::tempdir().unwrap();
        let exe = c_client::build("kernels_gpu", dir.path());
        let host = c_client::run(&exe, &["--host"]);
        assert!(host.contains("kernels_gpu: ok"), "{host}");
        let out = c_client::run::<&str>(&exe, &[]);
        if let Some(why) = out.lines().find_map(|l| l.strip_prefix("skipped: ")) {
            if std::env::var("ZO_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("ZO_REQUIRE_GPU=1 but the C client found no usable GPU: {why}");
            }
            use std::io::Write;
            // Past the harness's capture, as tests/common/devices.rs reports its skips.
            let _ = writeln!(std::io::stderr(), "skipped on the GPU: {test}: {why}");
            return;
        }
        assert!(out.contains("kernels_gpu: ok"), "{out}");
    }
}
