//! The init kernel (csrc/init.cu) through its launcher, on the emulated device and on a GPU
//! when there is one, bit for bit against the host: the uniform kind against the lora family's
//! init of A (`perturb::lora::init_a`, which the GPU backend draws with it), the normal kind
//! against the synthetic model's weights (`std · gaussian`, one f32 multiply), and constants.
#![cfg(feature = "cuda")]

#[path = "common/devices.rs"]
mod devices;

use devices::devices;
use zo::backend::cuda::kernels::init::{init, Init};
use zo::backend::cuda::{CudaDevice, DBuf, DType};
use zo::model::{Param, Site, Slot};
use zo::perturb::role;
use zo::rng::Stream;

/// A quiet NaN payload no init produces.
const UNWRITTEN: u32 = 0x7fbf_ffff;

/// Elements each side of the filled tensor that must keep their fill.
const GUARD: usize = 4;

/// `rows × cols` (stride `ld`) initialised in the middle of an f32 buffer of `fill`; returns
/// the `rows·ld` elements and fails if one outside them changed.
fn initialised(
    dev: &CudaDevice,
    rows: usize,
    cols: usize,
    ld: usize,
    how: Init,
    fill: f32,
) -> Vec<f32> {
    initialised_as(dev, DType::F32, rows, cols, ld, how, fill)
}

fn initialised_as(
    dev: &CudaDevice,
    dtype: DType,
    rows: usize,
    cols: usize,
    ld: usize,
    how: Init,
    fill: f32,
) -> Vec<f32> {
    let n = rows * ld;
    let buf = DBuf::from_f32(dev, dtype, &vec![fill; n + 2 * GUARD]).unwrap();
    init(dev, buf.slice(GUARD..GUARD + n), rows, cols, ld, how).unwrap();
    let mut all = buf.to_f32(dev).unwrap();
    let inside: Vec<f32> = all.drain(GUARD..GUARD + n).collect();
    let fill = dtype.round(fill);
    assert!(
        all.iter().all(|v| v.to_bits() == fill.to_bits()),
        "{how:?} of {rows}x{cols} (ld {ld}) wrote outside its range"
    );
    inside
}

/// (seed, site, rank, in): the shapes the backend launches (A as one row of r·in), odd sizes
/// that end inside a Philox block, and one large enough for several CUDA blocks.
fn uniform_cases() -> [(u64, Site, usize, usize); 4] {
    [
        (0, Site::layer(0, Slot::Q), 3, 32),
        (7, Site::layer(1, Slot::V), 8, 33),
        (u64::MAX, Site::layer(3, Slot::Down), 5, 1001),
        (0x5eed_0000_0001, Site::layer(11, Slot::Fc1), 16, 4099),
    ]
}

fn lora_a(seed: u64, site: Site, n_in: usize) -> Init {
    Init::Uniform {
        seed,
        tensor: Param::Weight(site).tensor_id(),
        role: role::LORA_INIT,
        bound: 1.0 / (n_in as f32).sqrt(),
    }
}

#[test]
fn uniform_init_equals_the_lora_init_of_a() {
    for (name, dev) in devices("uniform_init_equals_the_lora_init_of_a") {
        for (seed, site, r, n_in) in uniform_cases() {
            let n = r * n_in;
            let want: Vec<u32> = zo::perturb::lora::init_a(seed, site, r, n_in)
                .iter()
                .map(|x| x.to_bits())
                .collect();
            let how = lora_a(seed, site, n_in);
            let got = initialised(&dev, 1, n, n, how, f32::from_bits(UNWRITTEN));
            if let Some(i) = got
                .iter()
                .map(|x| x.to_bits())
                .zip(&want)
                .position(|(a, &b)| a != b)
            {
                panic!(
                    "{name}: seed {seed:#x} {site:?} {r}x{n_in}: element {i} device {} host {}",
                    got[i],
                    f32::from_bits(want[i])
                );
            }
        }
    }
}

/// The kernel itself with a single CUDA block that has to stride over the rest. The
/// launcher's geometry strides only past 65535 blocks (a 67-million-element tensor), so the
/// kernel is launched directly on the emulator, into memory that ends at a guard page.
#[test]
fn uniform_init_from_a_single_block_strides_over_the_rest() {
    use zo_emu::params::{ZoInitParams, ZoRngStream, ZO_INIT_UNIFORM};
    use zo_emu::{GuardedVec, Launch};

    for (seed, site, r, n_in) in uniform_cases() {
        let n = r * n_in;
        let want = zo::perturb::lora::init_a(seed, site, r, n_in);
        let p = ZoInitParams {
            stream: ZoRngStream {
                seed_lo: seed as u32,
                seed_hi: (seed >> 32) as u32,
                tensor: Param::Weight(site).tensor_id(),
                role: role::LORA_INIT,
            },
            rows: 1,
            cols: n as u64,
            ld: n as u64,
            std_dev: 1.0 / (n_in as f32).sqrt(),
            value: 0.0,
            kind: ZO_INIT_UNIFORM,
            reserved: 0,
        };
        // Ends at a guard page: a write past the last element faults.
        let out = GuardedVec::filled(n, f32::from_bits(UNWRITTEN));
        // SAFETY: zo_init_f32(ZoInitParams, float*) writes exactly the rows·cols = n elements
        // of `out`.
        unsafe {
            zo_emu::launch(
                "zo_init_f32",
                Launch::new(1, 32, 0),
                &p as *const ZoInitParams as *const std::ffi::c_void,
                std::mem::size_of::<ZoInitParams>(),
                &[out.as_ptr() as u64],
            )
        }
        .unwrap();
        if let Some(i) = out
            .iter()
            .zip(&want)
            .position(|(a, b)| a.to_bits() != b.to_bits())
        {
            panic!(
                "seed {seed:#x} {site:?} {r}x{n_in}: element {i} emu {} host {}",
                out[i], want[i]
            );
        }
    }
}

/// With a row stride the kernel fills columns `[0, cols)` of each row (element index
/// `i·cols + j`) and leaves the rest.
#[test]
fn uniform_init_respects_the_row_stride() {
    let (rows, cols, ld) = (3usize, 5usize, 8usize);
    let site = Site::layer(0, Slot::O);
    let want = zo::perturb::lora::init_a(9, site, rows, cols);
    for (name, dev) in devices("uniform_init_respects_the_row_stride") {
        let out = initialised(&dev, rows, cols, ld, lora_a(9, site, cols), -7.0);
        for i in 0..rows {
            for j in 0..ld {
                let got = out[i * ld + j];
                if j < cols {
                    assert_eq!(
                        got.to_bits(),
                        want[i * cols + j].to_bits(),
                        "{name}: [{i}][{j}]"
                    );
                } else {
                    assert_eq!(
                        got, -7.0,
                        "{name}: [{i}][{j}] outside the columns was written"
                    );
                }
            }
        }
    }
}

/// Normal draws and constants in every storage type, strided: each element the host's f32
/// value rounded once to the type.
#[test]
fn normal_and_const_inits_equal_the_host() {
    let (rows, cols, ld) = (3usize, 37usize, 40usize);
    let (seed, tensor, role, std) = (0x5eed_u64, 17u32, 5u32, 0.02f32);
    let mut g = vec![0f32; rows * cols];
    Stream::new(seed, tensor, role).fill_gaussian(0, &mut g);
    let normal: Vec<f32> = g.iter().map(|&v| v * std).collect();
    let fill = -7.0;
    for (name, dev) in devices("normal_and_const_inits_equal_the_host") {
        for dtype in [DType::F32, DType::Bf16, DType::F16] {
            let how = Init::Normal {
                seed,
                tensor,
                role,
                std,
            };
            let got = initialised_as(&dev, dtype, rows, cols, ld, how, fill);
            let c = Init::Const(0.1);
            let got_c = initialised_as(&dev, dtype, rows, cols, ld, c, fill);
            for i in 0..rows {
                for j in 0..ld {
                    let (want, want_c) = if j < cols {
                        (dtype.round(normal[i * cols + j]), dtype.round(0.1))
                    } else {
                        (fill, fill)
                    };
                    let at = i * ld + j;
                    assert_eq!(
                        got[at].to_bits(),
                        want.to_bits(),
                        "{name} {dtype:?} normal [{i}][{j}]: device {} host {want}",
                        got[at]
                    );
                    assert_eq!(
                        got_c[at].to_bits(),
                        want_c.to_bits(),
                        "{name} {dtype:?} const [{i}][{j}]: device {} host {want_c}",
                        got_c[at]
                    );
                }
            }
        }
    }
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    for (name, dev) in devices("shapes_that_do_not_fit_are_errors") {
        let buf = DBuf::zeros(&dev, DType::F32, 3 * 8).unwrap();
        let how = Init::Const(1.0);
        let err = init(&dev, buf.view(), 3, 9, 8, how).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{name}: {err}");
        let err = init(&dev, buf.slice(0..2 * 8 + 4), 3, 5, 8, how).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{name}: {err}");
        // The last row needs only its columns, not a whole stride.
        init(&dev, buf.slice(0..2 * 8 + 5), 3, 5, 8, how).unwrap();
        init(&dev, buf.view(), 0, 5, 8, how).unwrap();
        assert!(
            buf.to_f32(&dev)
                .unwrap()
                .iter()
                .filter(|&&v| v == 1.0)
                .count()
                == 15
        );
    }
}
