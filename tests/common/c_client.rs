//! Builds the C clients in tests/c/ against the library cargo built for this test run
//! (libzo.so, next to the test binary) and the committed header, csrc/include/zo.h. Each
//! test crate uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder cargo wrote libzo.so and libzo.a to: the test binary's own.
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .expect("the test binary is in a folder")
        .to_path_buf();
    assert!(
        dir.join("libzo.so").is_file(),
        "libzo.so is not in {}: the cdylib was not built",
        dir.display()
    );
    dir
}

/// How a client links libzo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// libzo.so, found through the executable's run path.
    Shared,
    /// libzo.a, with the system libraries a Rust static library needs (and the C++
    /// runtime for zo-emu).
    Static,
}

/// Compiles tests/c/`name`.c into an executable in `out` linked against libzo.so (with the
/// library's folder as its run path).
pub fn build(name: &str, out: &Path) -> PathBuf {
    build_linked(name, out, Link::Shared)
}

pub fn build_linked(name: &str, out: &Path, link: Link) -> PathBuf {
    let src = repo().join("tests/c").join(format!("{name}.c"));
    let exe = out.join(format!("{name}-{link:?}").to_lowercase());
    compile(&src, &exe, link);
    exe
}

/// Compiles and links one C source file into `exe`.
pub fn compile(src: &Path, exe: &Path, link: Link) {
    let target = env!("ZO_BUILD_TARGET");
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .target(target)
        .host(target)
        .opt_level(1)
        .debug(false)
        .get_compiler();
    let lib = lib_dir();
    let mut cmd = compiler.to_command();
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg("-I")
        .arg(repo().join("csrc/include"))
        .arg(src)
        .arg("-o")
        .arg(exe);
    match link {
        Link::Shared => cmd
            .arg(format!("-L{}", lib.display()))
            // DT_RPATH rather than DT_RUNPATH: cargo's LD_LIBRARY_PATH for tests names
            // target/release, whose libzo.so may be another build's.
            .arg(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display()))
            // -ldl: dlopen is in libc only from glibc 2.34 (tests/c/kernels_gpu.c loads
            // libcuda itself).
            .args(["-lzo", "-lm", "-ldl"]),
        Link::Static => cmd.arg(lib.join("libzo.a")).args([
            "-lstdc++",
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ]),
    };
    let status = cmd.status().expect("the C compiler runs");
    assert!(status.success(), "compiling {} failed", src.display());
}

/// Runs a C client; panics with its output when it fails.
pub fn run<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(exe: &Path, args: &[S]) -> String {
    let out = Command::new(exe)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("the client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\n{text}",
        exe.display(),
        out.status
    );
    text
}
