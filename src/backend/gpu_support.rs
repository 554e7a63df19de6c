//! Which configurations the CUDA backend runs: the one place that decides it, asked by the
//! backend before it allocates anything and by `zo-run` when it picks a device.

use crate::model::ModelConfig;
use crate::perturb::FamilyConfig;

/// Largest head dimension the prefill attention kernels take.
pub const MAX_HEAD_DIM: usize = 256;

/// Why the CUDA backend cannot run `family` on `model` (when known), or None when it can.
/// `None` for the family is evaluation only. Every update rule the CPU runs for a family runs
/// on the GPU too (momentum and Adam on lora and prefix).
pub fn refusal(family: Option<&FamilyConfig>, model: Option<&ModelConfig>) -> Option<String> {
    match family {
        None
        | Some(FamilyConfig::LowRank { .. })
        | Some(FamilyConfig::Lora { .. })
        | Some(FamilyConfig::Prefix { .. })
        | Some(FamilyConfig::Dense { in_place: true }) => {}
        Some(other) => {
            return Some(format!(
                "the {} family{} does not run on the CUDA backend yet (lowrank, lora, prefix \
                 and in-place dense do)",
                other.name(),
                if matches!(other, FamilyConfig::Dense { .. }) {
                    " with fused variants"
                } else {
                    ""
                }
            ))
        }
    }
    let m = model?;
    if m.head_dim > MAX_HEAD_DIM {
        return Some(format!(
            "head_dim {} exceeds the {MAX_HEAD_DIM} the CUDA attention kernels take",
            m.head_dim
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gpu_families_and_models_are_named() {
        let lora = FamilyConfig::Lora {
            rank: 2,
            alpha: 4.0,
            targets: vec![crate::model::Slot::Q],
        };
        assert_eq!(refusal(Some(&lora), None), None);
        assert_eq!(refusal(None, Some(&ModelConfig::tiny_llama())), None);
        let fused = FamilyConfig::Dense { in_place: false };
        assert!(refusal(Some(&fused), None)
            .unwrap()
            .contains("fused variants"));
        let opt_350m = ModelConfig::tiny_opt_post_ln();
        assert_eq!(refusal(None, Some(&opt_350m)), None);
        let wide_heads = ModelConfig {
            head_dim: MAX_HEAD_DIM + 8,
            ..ModelConfig::tiny_llama()
        };
        assert!(refusal(None, Some(&wide_heads))
            .unwrap()
            .contains("head_dim"));
    }
}
