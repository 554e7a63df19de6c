//! Kernel parameter structs: the committed bindgen output for csrc/zo_params.h.
#![allow(non_camel_case_types, non_upper_case_globals, dead_code)]

include!("../../../csrc/zo_params.rs");

// SAFETY: plain #[repr(C)] structs of integers and floats, passed to kernels by value.
unsafe impl cudarc::driver::DeviceRepr for ZoRngDrawParams {}
unsafe impl cudarc::driver::DeviceRepr for ZoSegment {}

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
