//! The on-device init kernel (csrc/init.cu) in its uniform kind, run on the CPU through the
//! emulation harness with the CUDA wrapper's launch geometry, against the lora family's init of
//! A (`perturb::lora::init_a`), bit for bit: the GPU backend draws LoRA A with it.

use zo::backend::launch::init_launch_config;
use zo::model::{Param, Site, Slot};
use zo::perturb::role;
use zo_emu::params::{ZoInitParams, ZoRngStream, ZO_INIT_UNIFORM};
use zo_emu::{GuardedVec, Launch};

fn params(seed: u64, tensor: u32, rows: usize, cols: usize, ld: usize, bound: f32) -> ZoInitParams {
    ZoInitParams {
        stream: ZoRngStream {
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            tensor,
            role: role::LORA_INIT,
        },
        rows: rows as u64,
        cols: cols as u64,
        ld: ld as u64,
        std_dev: bound,
        value: 0.0,
        kind: ZO_INIT_UNIFORM,
        reserved: 0,
    }
}

/// (seed, site, rank, in): the shapes the backend launches (A as one row of r·in), odd sizes
/// that end inside a Philox block, and one large enough for several CUDA blocks.
#[test]
fn uniform_init_equals_the_lora_init_of_a() {
    let cases = [
        (0u64, Site::layer(0, Slot::Q), 3usize, 32usize),
        (7, Site::layer(1, Slot::V), 8, 33),
        (u64::MAX, Site::layer(3, Slot::Down), 5, 1001),
        (0x5eed_0000_0001, Site::layer(11, Slot::Fc1), 16, 4099),
    ];
    for (seed, site, r, n_in) in cases {
        let n = r * n_in;
        let tensor = Param::Weight(site).tensor_id();
        let bound = 1.0 / (n_in as f32).sqrt();
        let want: Vec<u32> = zo::perturb::lora::init_a(seed, site, r, n_in)
            .iter()
            .map(|x| x.to_bits())
            .collect();
        let d = init_launch_config(n);
        // The wrapper's geometry, and a single CUDA block that has to stride over the rest.
        for cfg in [Launch::new(d.grid, d.block, d.smem), Launch::new(1, 32, 0)] {
            let mut out = GuardedVec::filled(n, f32::from_bits(0x7fbf_ffff));
            zo_emu::init::init_f32(cfg, params(seed, tensor, 1, n, n, bound), &mut out);
            let got: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
            if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
                panic!(
                    "seed {seed:#x} {site:?} {r}x{n_in} {cfg:?}: element {i} emu {} host {}",
                    f32::from_bits(got[i]),
                    f32::from_bits(want[i])
                );
            }
        }
    }
}

/// With a row stride the kernel fills columns `[0, cols)` of each row (element index
/// `i·cols + j`) and leaves the rest.
#[test]
fn uniform_init_respects_the_row_stride() {
    let (rows, cols, ld) = (3usize, 5usize, 8usize);
    let site = Site::layer(0, Slot::O);
    let bound = 1.0 / (cols as f32).sqrt();
    let want = zo::perturb::lora::init_a(9, site, rows, cols);
    let d = init_launch_config(rows * cols);
    let mut out = GuardedVec::filled(rows * ld, -7.0f32);
    zo_emu::init::init_f32(
        Launch::new(d.grid, d.block, d.smem),
        params(9, Param::Weight(site).tensor_id(), rows, cols, ld, bound),
        &mut out,
    );
    for i in 0..rows {
        for j in 0..ld {
            let got = out[i * ld + j];
            if j < cols {
                assert_eq!(got.to_bits(), want[i * cols + j].to_bits(), "[{i}][{j}]");
            } else {
                assert_eq!(got, -7.0, "[{i}][{j}] outside the columns was written");
            }
        }
    }
}
