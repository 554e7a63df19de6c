//! Builds the CUDA kernels when the `cuda` feature is on.
//!
//! - Finds nvcc (the `NVCC` variable, else `nvcc` on PATH). Without it the crate still builds,
//!   without the GPU kernels, and says so with a warning; the CUDA backend then reports at run
//!   time that it cannot open a GPU (its emulated device, zo-emu, still runs).
//! - Compiles every `csrc/*.cu` into ONE fatbin in OUT_DIR (SASS for sm_80 and sm_90a, PTX for
//!   compute_80 so newer GPUs can JIT it) and sets `cfg(zo_kernels)`; the backend embeds it.
//!
//! The Rust mirror of the kernel parameter structs is committed (`csrc/zo_params.rs`), so
//! building needs no libclang; the zo-emu build regenerates it where libclang exists and the
//! `params_bindings` test fails when the committed file is stale.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(zo_kernels)");
    println!("cargo::rerun-if-changed=build.rs");
    // The tests compile C clients of libzo with the cc crate, which needs the target triple.
    let target = env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo::rustc-env=ZO_BUILD_TARGET={target}");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    // csrc/include holds the C ABI's header, which the kernels do not include.
    for entry in std::fs::read_dir("csrc").expect("csrc/ is readable") {
        let path = entry.expect("csrc/ is readable").path();
        if path.file_name().is_some_and(|n| n != "include") {
            println!("cargo::rerun-if-changed={}", path.display());
        }
    }
    println!("cargo::rerun-if-env-changed=NVCC");
    println!("cargo::rerun-if-env-changed=ZO_REQUIRE_KERNELS");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(nvcc) = find_nvcc() else {
        // CI sets this so that a lost nvcc fails the build instead of silently going CPU-only.
        if env::var_os("ZO_REQUIRE_KERNELS").is_some_and(|v| v != "0") {
            panic!("ZO_REQUIRE_KERNELS is set but nvcc was not found (set NVCC or PATH)");
        }
        println!(
            "cargo::warning=feature `cuda` is on but nvcc was not found, so the CUDA kernels \
             are not built and the CUDA backend will refuse to open a GPU (its emulated device \
             still runs). Set NVCC=/path/to/nvcc or \
             put nvcc on PATH (see README, \"Building the CUDA kernels\")."
        );
        return;
    };
    compile_fatbin(&nvcc, &out);
    println!("cargo::rustc-cfg=zo_kernels");
}

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            panic!(
                "NVCC={} is not a file; point it at the nvcc binary",
                p.display()
            );
        }
        return Some(p);
    }
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join("nvcc"))
        .find(|p| p.is_file())
}

fn compile_fatbin(nvcc: &Path, out: &Path) {
    let csrc = Path::new(env!("CARGO_MANIFEST_DIR")).join("csrc");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&csrc)
        .unwrap_or_else(|e| panic!("reading {}: {e}", csrc.display()))
        .map(|e| e.expect("listing csrc").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();

    // nvcc writes one output per translation unit, so the .cu files are compiled as one unit
    // that includes each of them: one fatbin, one module to load, every kernel in it. Helpers
    // local to a .cu file therefore need names unique across csrc/ (prefix or namespace).
    let unity = out.join("zo_kernels.cu");
    let body: String = sources
        .iter()
        .map(|p| format!("#include \"{}\"\n", p.display()))
        .collect();
    std::fs::write(&unity, body).expect("writing the kernel unity file");

    let fatbin = out.join("zo_kernels.fatbin");
    // No --use_fast_math: it would approximate divide/sqrt and break the bit-exact host/device
    // RNG and update contract. No -fmad=false either: the RNG and update code spells every
    // float operation as an explicit round-to-nearest intrinsic (__fmul_rn, __fadd_rn,
    // __fmaf_rn, ...), which PTX marks with .rn and which neither nvcc nor ptxas contracts, so
    // the GEMM and attention kernels keep their FMA contraction.
    let status = Command::new(nvcc)
        // Uncompressed: the loader skips a decompression and tests can read the SASS headers.
        .args(["-fatbin", "-O3", "-std=c++17", "-lineinfo", "-no-compress"])
        .args(["-gencode", "arch=compute_80,code=sm_80"])
        .args(["-gencode", "arch=compute_90a,code=sm_90a"])
        .args(["-gencode", "arch=compute_80,code=compute_80"])
        .arg("-I")
        .arg(&csrc)
        .arg("-o")
        .arg(&fatbin)
        .arg(&unity)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
    if !status.success() {
        panic!("{} failed ({status}) compiling csrc/*.cu", nvcc.display());
    }
}
