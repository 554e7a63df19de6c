//! The params structs as kernel arguments, and the kernel name scheme.

pub use crate::backend::params::*;

macro_rules! kernel_params {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: bindgen's #[repr(C)] structs of integers and floats, passed by value.
            unsafe impl super::device::KernelParams for $t {}
        )*
    };
}

kernel_params!(
    ZoRngDrawParams,
    ZoShrinkParams,
    ZoPackParams,
    ZoAxpyParams,
    ZoMomentumParams,
    ZoMomentsParams,
    ZoMergeParams,
    ZoBasisParams,
    ZoRopeParams,
    ZoKvWriteParams,
    ZoAttnParams,
    ZoEmbedParams,
    ZoNormParams,
    ZoActParams,
    ZoLogprobParams,
    ZoInitParams,
    ZoDecodeParams,
    ZoPickParams,
);

/// `base_<dtype>`: the name scheme of every kernel instantiated per storage type
/// (csrc/dtype.cuh's ZO_INSTANTIATE), as the `&'static str` kernels are looked up by.
pub fn typed(base: &'static str, dtype: super::DType) -> &'static str {
    use super::DType::*;
    macro_rules! names {
        ($($b:literal),* $(,)?) => {
            match (base, dtype) {
                $(
                    ($b, F32) => concat!($b, "_f32"),
                    ($b, Bf16) => concat!($b, "_bf16"),
                    ($b, F16) => concat!($b, "_f16"),
                )*
                _ => panic!("{base} is not a kernel instantiated per storage type"),
            }
        };
    }
    names!(
        "zo_embed",
        "zo_norm",
        "zo_act",
        "zo_adapter_shrink",
        "zo_adapter_pack",
        "zo_seeded_axpy",
        "zo_factor_merge",
        "zo_attn_prefill_hd64",
        "zo_attn_prefill_hd128",
        "zo_attn_prefill_any",
        "zo_init",
        "zo_attn_decode_hd64",
        "zo_attn_decode_hd128",
        "zo_attn_decode_any",
        "zo_attn_decode_combine",
    )
}
