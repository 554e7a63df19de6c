//! Kernel parameter structs and constants: the committed bindgen output for
//! csrc/zo_params.h. Compiled with or without the `cuda` feature, so host code that must agree
//! with the kernels (page size, shrink tiling) reads the constants from here.
#![allow(non_camel_case_types, non_upper_case_globals, dead_code)]

include!("../../csrc/zo_params.rs");

impl From<crate::rng::Stream> for ZoRngStream {
    fn from(s: crate::rng::Stream) -> Self {
        ZoRngStream {
            seed_lo: s.seed as u32,
            seed_hi: (s.seed >> 32) as u32,
            tensor: s.tensor,
            role: s.role,
        }
    }
}

impl From<&crate::perturb::Segment> for ZoSegment {
    fn from(s: &crate::perturb::Segment) -> Self {
        ZoSegment {
            row_start: s.rows.start as u32,
            row_end: s.rows.end as u32,
            seed_lo: s.seed as u32,
            seed_hi: (s.seed >> 32) as u32,
            scale: s.scale,
            reserved: 0,
        }
    }
}

/// Segments as the kernels read them: each `ZoSegment` record as its six 32-bit words, ready
/// for a word buffer on the device.
pub fn segment_words(segs: &[crate::perturb::Segment]) -> Vec<u32> {
    segs.iter()
        .map(ZoSegment::from)
        .flat_map(|s| {
            [
                s.row_start,
                s.row_end,
                s.seed_lo,
                s.seed_hi,
                s.scale.to_bits(),
                s.reserved,
            ]
        })
        .collect()
}

/// The kernels' code for a perturbation distribution (the one place it is written).
pub fn dist_code(d: crate::perturb::Dist) -> u32 {
    match d {
        crate::perturb::Dist::Gaussian => ZO_DIST_GAUSSIAN,
        crate::perturb::Dist::Rademacher => ZO_DIST_RADEMACHER,
    }
}
