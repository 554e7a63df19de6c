//! Model architectures: configuration (HF config.json), weights in f32 for the CPU reference,
//! and loading from safetensors directories.

pub mod arch_presets;
pub mod config;
pub mod load;
pub mod random;
pub mod save;
pub mod shapes;
pub mod site;

pub use config::{Activation, Arch, ModelConfig, RopeScaling};
pub use shapes::LinearShape;
pub use site::{NormSite, Param, Site, Slot};

/// A dense layer `y = x·Wᵀ + b`, W stored row-major as [out][in] like HF/PyTorch.
#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Vec<f32>,
    pub b: Option<Vec<f32>>,
    pub out_dim: usize,
    pub in_dim: usize,
}

/// RMSNorm (no bias) or LayerNorm (with bias, `b` is Some; OPT may also drop the affine part).
#[derive(Debug, Clone)]
pub struct Norm {
    pub w: Option<Vec<f32>>,
    pub b: Option<Vec<f32>>,
    pub eps: f32,
    pub kind: NormKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    Rms,
    Layer,
}

#[derive(Debug, Clone)]
pub enum Mlp {
    /// Llama family: down(act(gate(x)) * up(x)).
    Gated {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// OPT: fc2(act(fc1(x))).
    Plain { fc1: Linear, fc2: Linear },
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub attn_norm: Norm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub mlp_norm: Norm,
    pub mlp: Mlp,
}

/// A whole decoder in f32. Field meaning follows the HF implementations:
/// Llama: embed → layers (pre-norm, RoPE) → final_norm → lm_head (or tied embed).
/// OPT: embed (word_embed_proj_dim) → project_in → + pos_embed[pos + 2] → layers (pre- or
/// post-LN) → final_norm (pre-LN models only) → project_out → lm_head (tied to embed).
#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    /// [vocab][embed_dim] where embed_dim is word_embed_proj_dim for OPT, hidden for Llama.
    pub embed: Vec<f32>,
    /// OPT learned positions, [max_positions + 2][hidden].
    pub pos_embed: Option<Vec<f32>>,
    pub project_in: Option<Linear>,
    pub project_out: Option<Linear>,
    pub layers: Vec<Layer>,
    pub final_norm: Option<Norm>,
    /// [vocab][embed_dim]; None means tied to `embed`.
    pub lm_head: Option<Vec<f32>>,
}

impl Model {
    /// Rows of the output projection: the untied head or the embedding.
    pub fn head(&self) -> &[f32] {
        self.lm_head.as_deref().unwrap_or(&self.embed)
    }

    /// The Linear slots of a transformer layer of this architecture, in forward order.
    pub fn layer_slots(&self) -> &'static [Slot] {
        use Slot::*;
        match self.layers.first().map(|l| &l.mlp) {
            Some(Mlp::Plain { .. }) => &[Q, K, V, O, Fc1, Fc2],
            _ => &[Q, K, V, O, Gate, Up, Down],
        }
    }

    /// The Linear applied at `site`, if the model has one there.
    pub fn linear_at(&self, site: Site) -> Option<&Linear> {
        let Some(l) = site.layer else {
            return match site.slot {
                Slot::ProjectIn => self.project_in.as_ref(),
                Slot::ProjectOut => self.project_out.as_ref(),
                _ => None,
            };
        };
        let layer = self.layers.get(l)?;
        match (site.slot, &layer.mlp) {
            (Slot::Q, _) => Some(&layer.q),
            (Slot::K, _) => Some(&layer.k),
            (Slot::V, _) => Some(&layer.v),
            (Slot::O, _) => Some(&layer.o),
            (Slot::Gate, Mlp::Gated { gate, .. }) => Some(gate),
            (Slot::Up, Mlp::Gated { up, .. }) => Some(up),
            (Slot::Down, Mlp::Gated { down, .. }) => Some(down),
            (Slot::Fc1, Mlp::Plain { fc1, .. }) => Some(fc1),
            (Slot::Fc2, Mlp::Plain { fc2, .. }) => Some(fc2),
            _ => None,
        }
    }

    /// Mutable [`Model::linear_at`].
    pub fn linear_at_mut(&mut self, site: Site) -> Option<&mut Linear> {
        let Some(l) = site.layer else {
            return match site.slot {
                Slot::ProjectIn => self.project_in.as_mut(),
                Slot::ProjectOut => self.project_out.as_mut(),
                _ => None,
            };
        };
        let layer = self.layers.get_mut(l)?;
        match (site.slot, &mut layer.mlp) {
            (Slot::Q, _) => Some(&mut layer.q),
            (Slot::K, _) => Some(&mut layer.k),
            (Slot::V, _) => Some(&mut layer.v),
            (Slot::O, _) => Some(&mut layer.o),
            (Slot::Gate, Mlp::Gated { gate, .. }) => Some(gate),
            (Slot::Up, Mlp::Gated { up, .. }) => Some(up),
            (Slot::Down, Mlp::Gated { down, .. }) => Some(down),
            (Slot::Fc1, Mlp::Plain { fc1, .. }) => Some(fc1),
            (Slot::Fc2, Mlp::Plain { fc2, .. }) => Some(fc2),
            _ => None,
        }
    }
}
