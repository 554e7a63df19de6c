//! Opt-in per-op timing of the CUDA backend (`ZO_PROFILE=1`): every timed region is bracketed
//! by stream synchronisations, so the totals say where a step's time goes (launch latency
//! included) at the cost of serialising the stream. Off, a region costs one branch.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::device::CudaDevice;
use crate::Result;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("ZO_PROFILE").is_ok_and(|v| v == "1"))
}

fn table() -> &'static Mutex<BTreeMap<&'static str, (f64, u64)>> {
    static T: OnceLock<Mutex<BTreeMap<&'static str, (f64, u64)>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Runs `f`, and with profiling on adds its synchronised wall time to `name`'s total.
pub(crate) fn region<T>(
    dev: &CudaDevice,
    name: &'static str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if !enabled() {
        return f();
    }
    let sync = || dev.synchronize();
    sync()?;
    let t = Instant::now();
    let out = f()?;
    sync()?;
    let s = t.elapsed().as_secs_f64();
    if let Ok(mut m) = table().lock() {
        let e = m.entry(name).or_insert((0.0, 0));
        e.0 += s;
        e.1 += 1;
    }
    Ok(out)
}

/// The totals so far as a table (ms, calls), largest first; None with profiling off.
pub fn report() -> Option<String> {
    if !enabled() {
        return None;
    }
    let m = table().lock().ok()?;
    let mut rows: Vec<_> = m.iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    let total: f64 = rows.iter().map(|r| r.1 .0).sum();
    let mut s = format!("{:<24} {:>10} {:>8} {:>6}\n", "region", "ms", "calls", "%");
    for (name, (sec, n)) in rows {
        s += &format!(
            "{name:<24} {:>10.3} {n:>8} {:>6.1}\n",
            sec * 1e3,
            100.0 * sec / total.max(1e-12)
        );
    }
    Some(s)
}

/// Clears the totals (e.g. after a warm-up).
pub fn reset() {
    if let Ok(mut m) = table().lock() {
        m.clear();
    }
}
