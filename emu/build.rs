//! Compiles the emulated kernels and the Rust twins of their parameter structs.
//!
//! - Every `emu/csrc/*.cpp` (each includes `zo_emu.h` and one `csrc/<family>.cu`, and defines
//!   its `extern "C"` launchers) is compiled as C++20 into one static library. No fast-math
//!   and no FMA contraction: the RNG and update kernels are bit-exact only under IEEE
//!   single-precision rounding of every operation, as on the device.
//! - The params structs (`zo_emu::params`, the ones the CUDA backend passes) are the committed
//!   `csrc/zo_params.rs`, so no build needs libclang. Where libclang is found, bindgen
//!   regenerates them from `csrc/zo_params.h` into OUT_DIR and sets `cfg(zo_params_regenerated)`;
//!   the `params_bindings` test then fails if the committed file is stale.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let kernels = manifest.join("../csrc");
    let include = manifest.join("include");
    let sources_dir = manifest.join("csrc");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(zo_params_regenerated)");
    println!("cargo::rerun-if-env-changed=LIBCLANG_PATH");
    for dir in [&kernels, &include, &sources_dir] {
        println!("cargo::rerun-if-changed={}", dir.display());
    }

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&sources_dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", sources_dir.display()))
        .map(|e| e.expect("listing emu/csrc").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    sources.sort();
    for s in &sources {
        println!("cargo::rerun-if-changed={}", s.display());
    }

    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .opt_level(2)
        .flag("-ffp-contract=off")
        .flag("-fno-fast-math")
        .flag("-pthread")
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag_if_supported("-Wno-unused-parameter")
        .define("ZO_EMU", None)
        .include(&include)
        .include(&kernels)
        .files(&sources)
        .compile("zo_emu_kernels");
    println!("cargo::rustc-link-lib=pthread");

    generate_params(&kernels.join("zo_params.h"), &out);
}

fn generate_params(header: &Path, out: &Path) {
    // bindgen panics when libclang is missing; ask clang-sys first so that such a machine
    // builds on the committed bindings and the staleness test says why it skipped.
    if let Err(why) = clang_sys::load() {
        println!(
            "cargo::warning=libclang not found ({}); using the committed csrc/zo_params.rs \
             without checking it against csrc/zo_params.h",
            why.lines().next().unwrap_or("no reason given")
        );
        return;
    }
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .allowlist_type("Zo.*")
        .allowlist_var("ZO_.*")
        .derive_default(true)
        .derive_debug(true)
        .derive_copy(true)
        // prettyplease, not rustfmt: the output must not depend on which rustfmt a machine has.
        .formatter(bindgen::Formatter::Prettyplease)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen over {} failed: {e}", header.display()));
    bindings
        .write_to_file(out.join("params.rs"))
        .expect("writing params.rs");
    println!("cargo::rustc-cfg=zo_params_regenerated");
}
