//! Kernels that test the emulation runtime itself (emu/csrc/selftest.cpp), for
//! tests/emu_runtime.rs. Each wrapper checks its buffers against the grid it launches.

use crate::{check_len, ZoEmuDim};

extern "C" {
    fn zo_emu_selftest_block_sum(grid: ZoEmuDim, block: ZoEmuDim, inp: *const f32, out: *mut f32);
    fn zo_emu_selftest_warp_sums(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        inp: *const f32,
        xor_sum: *mut f32,
        down_sum: *mut f32,
    );
    fn zo_emu_selftest_shuffle(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        op: i32,
        arg: i32,
        width: i32,
        inp: *const u32,
        out32: *mut u32,
        out64: *mut f64,
    );
    fn zo_emu_selftest_dynamic_smem(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        smem: usize,
        per_thread: u32,
        before: *mut u32,
        after: *mut f32,
        aligned: *mut u32,
    );
    fn zo_emu_selftest_atomics(
        grid: ZoEmuDim,
        block: ZoEmuDim,
        f_sum: *mut f32,
        d_sum: *mut f64,
        i_sum: *mut i32,
        u_sum: *mut u32,
        ull_sum: *mut u64,
        i_max: *mut i32,
        i_min: *mut i32,
        u_max: *mut u32,
        u_min: *mut u32,
        cas_count: *mut u32,
        exch: *mut u32,
        exch_old: *mut u32,
    );
    fn zo_emu_selftest_early_return(grid: ZoEmuDim, block: ZoEmuDim, live: u32, out: *mut f32);
    fn zo_emu_selftest_geometry(grid: ZoEmuDim, block: ZoEmuDim, visits: *mut u32, info: *mut u32);
    fn zo_emu_selftest_roundtrip(
        dtype: i32,
        grid: ZoEmuDim,
        block: ZoEmuDim,
        n: usize,
        inp: *const f32,
        out: *mut f32,
    );
    fn zo_emu_selftest_deadlock(block: ZoEmuDim);
    fn zo_emu_selftest_smem_overrun(smem_floats: usize);
    fn zo_emu_selftest_empty(grid: ZoEmuDim, block: ZoEmuDim, smem: usize);
    fn zo_emu_selftest_store(p: *mut f32, i: usize);
    fn zo_emu_selftest_f32_to_bf16(inp: *const f32, out: *mut u16, n: usize);
    fn zo_emu_selftest_f32_to_f16(inp: *const f32, out: *mut u16, n: usize);
    fn zo_emu_selftest_bf16_to_f32(inp: *const u16, out: *mut f32, n: usize);
    fn zo_emu_selftest_f16_to_f32(inp: *const u16, out: *mut f32, n: usize);
}

fn count(d: ZoEmuDim) -> u64 {
    d.x as u64 * d.y as u64 * d.z as u64
}

/// Threads in a grid of `grid` blocks of `block` threads.
pub fn threads(grid: ZoEmuDim, block: ZoEmuDim) -> usize {
    (count(grid) * count(block)) as usize
}

/// Per block: the sum of its threads' inputs (`inp[block * threads + thread]`), reduced by a
/// halving tree through shared memory: `s[t] += s[t + h]` for `h = ceil(w / 2)`, `t < w - h`.
pub fn block_sum(grid: ZoEmuDim, block: ZoEmuDim, inp: &[f32], out: &mut [f32]) {
    check_len("block_sum input", inp, threads(grid, block) as u64);
    check_len("block_sum output", out, count(grid));
    // SAFETY: the kernel reads one input per thread and writes one output per block.
    unsafe { zo_emu_selftest_block_sum(grid, block, inp.as_ptr(), out.as_mut_ptr()) }
}

/// Per thread: `zo_warp_sum` (butterfly) and the shfl_down tree sum.
pub fn warp_sums(
    grid: ZoEmuDim,
    block: ZoEmuDim,
    inp: &[f32],
    xor_sum: &mut [f32],
    down_sum: &mut [f32],
) {
    let n = threads(grid, block) as u64;
    check_len("warp_sums input", inp, n);
    check_len("warp_sums xor output", xor_sum, n);
    check_len("warp_sums down output", down_sum, n);
    // SAFETY: one element of each buffer per thread.
    unsafe {
        zo_emu_selftest_warp_sums(
            grid,
            block,
            inp.as_ptr(),
            xor_sum.as_mut_ptr(),
            down_sum.as_mut_ptr(),
        )
    }
}

/// Which warp shuffle [`shuffle`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shuffle {
    Idx,
    Xor,
    Up,
    Down,
}

/// Per thread: one shuffle of `inp` (as u32) and of `inp + 0.25` (as f64).
#[allow(clippy::too_many_arguments)]
pub fn shuffle(
    grid: ZoEmuDim,
    block: ZoEmuDim,
    op: Shuffle,
    arg: i32,
    width: i32,
    inp: &[u32],
    out32: &mut [u32],
    out64: &mut [f64],
) {
    let n = threads(grid, block) as u64;
    check_len("shuffle input", inp, n);
    check_len("shuffle u32 output", out32, n);
    check_len("shuffle f64 output", out64, n);
    // SAFETY: one element of each buffer per thread.
    unsafe {
        zo_emu_selftest_shuffle(
            grid,
            block,
            op as i32,
            arg,
            width,
            inp.as_ptr(),
            out32.as_mut_ptr(),
            out64.as_mut_ptr(),
        )
    }
}

/// Each thread records the bits it finds in its `per_thread` floats of dynamic shared memory
/// (`before`), writes `block * 100000 + its slot index` there, and after a barrier reads the
/// slots of thread `threads - 1 - t` (`after`); `aligned[block]` is 1 when the buffer is
/// 16-byte aligned.
pub fn dynamic_smem(
    grid: ZoEmuDim,
    block: ZoEmuDim,
    per_thread: u32,
    before: &mut [u32],
    after: &mut [f32],
    aligned: &mut [u32],
) {
    let n = threads(grid, block) as u64 * per_thread as u64;
    check_len("dynamic_smem before", before, n);
    check_len("dynamic_smem after", after, n);
    check_len("dynamic_smem aligned", aligned, count(grid));
    let smem = count(block) as usize * per_thread as usize * 4;
    // SAFETY: per_thread elements of before/after per thread, one of aligned per block.
    unsafe {
        zo_emu_selftest_dynamic_smem(
            grid,
            block,
            smem,
            per_thread,
            before.as_mut_ptr(),
            after.as_mut_ptr(),
            aligned.as_mut_ptr(),
        )
    }
}

/// Targets of [`atomics`]; every thread `g` (global index) adds, maxes, mins, counts and
/// exchanges into them (see emu/csrc/selftest.cpp).
#[derive(Debug, Clone, PartialEq)]
pub struct Atomics {
    pub f_sum: f32,
    pub d_sum: f64,
    pub i_sum: i32,
    pub u_sum: u32,
    pub ull_sum: u64,
    pub i_max: i32,
    pub i_min: i32,
    pub u_max: u32,
    pub u_min: u32,
    pub cas_count: u32,
    pub exch: u32,
    /// What each thread's atomicExch returned.
    pub exch_old: Vec<u32>,
}

pub fn atomics(grid: ZoEmuDim, block: ZoEmuDim, a: &mut Atomics) {
    check_len("atomics exch_old", &a.exch_old, threads(grid, block) as u64);
    // SAFETY: scalars are single targets; exch_old has one element per thread.
    unsafe {
        zo_emu_selftest_atomics(
            grid,
            block,
            &mut a.f_sum,
            &mut a.d_sum,
            &mut a.i_sum,
            &mut a.u_sum,
            &mut a.ull_sum,
            &mut a.i_max,
            &mut a.i_min,
            &mut a.u_max,
            &mut a.u_min,
            &mut a.cas_count,
            &mut a.exch,
            a.exch_old.as_mut_ptr(),
        )
    }
}

/// Threads `>= live` return at once, then those with `t % 3 == 1` after the first barrier;
/// thread 0 writes two sums per block (`out[2 block]`, `out[2 block + 1]`).
pub fn early_return(grid: ZoEmuDim, block: ZoEmuDim, live: u32, out: &mut [f32]) {
    check_len("early_return output", out, 2 * count(grid));
    // SAFETY: two outputs per block.
    unsafe { zo_emu_selftest_early_return(grid, block, live, out.as_mut_ptr()) }
}

/// Per thread (global index `g`): `visits[g] += 1` and `info[12 g ..]` = threadIdx, blockIdx,
/// blockDim, gridDim (x, y, z each).
pub fn geometry(grid: ZoEmuDim, block: ZoEmuDim, visits: &mut [u32], info: &mut [u32]) {
    let n = threads(grid, block) as u64;
    check_len("geometry visits", visits, n);
    check_len("geometry info", info, 12 * n);
    // SAFETY: one visit counter and 12 info words per thread.
    unsafe { zo_emu_selftest_geometry(grid, block, visits.as_mut_ptr(), info.as_mut_ptr()) }
}

/// `out[i] = zo_f32(zo_from_f32<T>(inp[i]))` with T = float (0), bf16 (1) or f16 (2).
pub fn roundtrip(dtype: i32, grid: ZoEmuDim, block: ZoEmuDim, inp: &[f32], out: &mut [f32]) {
    assert_eq!(inp.len(), out.len());
    // SAFETY: the kernel touches [0, n) of both, grid-stride.
    unsafe {
        zo_emu_selftest_roundtrip(
            dtype,
            grid,
            block,
            inp.len(),
            inp.as_ptr(),
            out.as_mut_ptr(),
        )
    }
}

/// Aborts the process: half of each warp at __syncwarp, half at __syncthreads.
pub fn deadlock(block: ZoEmuDim) {
    // SAFETY: no memory is touched; the runtime aborts.
    unsafe { zo_emu_selftest_deadlock(block) }
}

/// Faults: writes the float just past `smem_floats` floats of dynamic shared memory.
pub fn smem_overrun(smem_floats: usize) {
    // SAFETY: the write hits the runtime's guard page and the process dies.
    unsafe { zo_emu_selftest_smem_overrun(smem_floats) }
}

/// A kernel that does nothing, to test the launch checks.
pub fn empty(grid: ZoEmuDim, block: ZoEmuDim, smem: usize) {
    // SAFETY: no memory is touched.
    unsafe { zo_emu_selftest_empty(grid, block, smem) }
}

/// A kernel that stores 1.0 to `p[i]`, unchecked: for testing [`crate::GuardedVec`].
///
/// # Safety
/// `p[i]` must be writable, unless the test means the process to die.
pub unsafe fn store(p: *mut f32, i: usize) {
    zo_emu_selftest_store(p, i)
}

pub fn f32_to_bf16(inp: &[f32]) -> Vec<u16> {
    let mut out = vec![0; inp.len()];
    // SAFETY: equal lengths.
    unsafe { zo_emu_selftest_f32_to_bf16(inp.as_ptr(), out.as_mut_ptr(), inp.len()) };
    out
}

pub fn f32_to_f16(inp: &[f32]) -> Vec<u16> {
    let mut out = vec![0; inp.len()];
    // SAFETY: equal lengths.
    unsafe { zo_emu_selftest_f32_to_f16(inp.as_ptr(), out.as_mut_ptr(), inp.len()) };
    out
}

pub fn bf16_to_f32(inp: &[u16]) -> Vec<f32> {
    let mut out = vec![0.0; inp.len()];
    // SAFETY: equal lengths.
    unsafe { zo_emu_selftest_bf16_to_f32(inp.as_ptr(), out.as_mut_ptr(), inp.len()) };
    out
}

pub fn f16_to_f32(inp: &[u16]) -> Vec<f32> {
    let mut out = vec![0.0; inp.len()];
    // SAFETY: equal lengths.
    unsafe { zo_emu_selftest_f16_to_f32(inp.as_ptr(), out.as_mut_ptr(), inp.len()) };
    out
}
