//! Names for the places where parameters are applied, shared by the forward passes and the
//! perturbation families (which key their random streams on them).

/// Which Linear of a layer (or of the model) an application is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
    Fc1,
    Fc2,
    ProjectIn,
    ProjectOut,
}

impl Slot {
    pub const ALL: [Slot; 11] = [
        Slot::Q,
        Slot::K,
        Slot::V,
        Slot::O,
        Slot::Gate,
        Slot::Up,
        Slot::Down,
        Slot::Fc1,
        Slot::Fc2,
        Slot::ProjectIn,
        Slot::ProjectOut,
    ];

    /// Short names as used in target-module lists ("q", "v", "fc1", ...).
    pub fn name(self) -> &'static str {
        match self {
            Slot::Q => "q",
            Slot::K => "k",
            Slot::V => "v",
            Slot::O => "o",
            Slot::Gate => "gate",
            Slot::Up => "up",
            Slot::Down => "down",
            Slot::Fc1 => "fc1",
            Slot::Fc2 => "fc2",
            Slot::ProjectIn => "project_in",
            Slot::ProjectOut => "project_out",
        }
    }

    pub fn from_name(s: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|x| x.name() == s)
    }

    fn index(self) -> u32 {
        Slot::ALL.iter().position(|&x| x == self).unwrap() as u32
    }
}

/// One Linear application site: the layer (None for model-level projections) and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    pub layer: Option<usize>,
    pub slot: Slot,
}

impl Site {
    pub fn layer(i: usize, slot: Slot) -> Site {
        Site {
            layer: Some(i),
            slot,
        }
    }

    pub fn model(slot: Slot) -> Site {
        Site { layer: None, slot }
    }
}

/// Which norm of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NormSite {
    /// Before (pre-LN) or after (post-LN) attention of a layer.
    Attn(usize),
    /// Before (pre-LN) or after (post-LN) the MLP of a layer.
    Mlp(usize),
    Final,
}

/// Every parameter tensor of a model, for the stable tensor ids the RNG counters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    Embed,
    PosEmbed,
    /// The untied output head (a tied head is `Embed`).
    Head,
    Weight(Site),
    Bias(Site),
    NormWeight(NormSite),
    NormBias(NormSite),
    /// Trainable prefix keys / values of a layer (prefix family).
    PrefixKey(usize),
    PrefixValue(usize),
}

/// Ids below this are model-level; each layer owns a block of `LAYER_STRIDE` ids after it.
const LAYER_BASE: u32 = 64;
const LAYER_STRIDE: u32 = 64;

impl Param {
    /// The tensor id in the RNG counter. Stable across versions: changing it changes every
    /// trained result, so a seed log records the scheme version it was made with.
    pub fn tensor_id(self) -> u32 {
        let layer = |l: usize, off: u32| LAYER_BASE + l as u32 * LAYER_STRIDE + off;
        let site = |s: Site, bias: u32| match s.layer {
            Some(l) => layer(l, s.slot.index() * 2 + bias),
            None => 8 + s.slot.index() * 2 + bias,
        };
        let norm = |n: NormSite, bias: u32| match n {
            NormSite::Attn(l) => layer(l, 32 + bias),
            NormSite::Mlp(l) => layer(l, 34 + bias),
            NormSite::Final => 4 + bias,
        };
        match self {
            Param::Embed => 1,
            Param::PosEmbed => 2,
            Param::Head => 3,
            Param::Weight(s) => site(s, 0),
            Param::Bias(s) => site(s, 1),
            Param::NormWeight(n) => norm(n, 0),
            Param::NormBias(n) => norm(n, 1),
            Param::PrefixKey(l) => layer(l, 40),
            Param::PrefixValue(l) => layer(l, 41),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tensor_ids_are_distinct() {
        let mut all = vec![Param::Embed, Param::PosEmbed, Param::Head];
        for n in [
            NormSite::Final,
            NormSite::Attn(0),
            NormSite::Mlp(0),
            NormSite::Attn(3),
        ] {
            all.push(Param::NormWeight(n));
            all.push(Param::NormBias(n));
        }
        for l in [None, Some(0), Some(1), Some(200)] {
            for s in Slot::ALL {
                all.push(Param::Weight(Site { layer: l, slot: s }));
                all.push(Param::Bias(Site { layer: l, slot: s }));
            }
        }
        for l in [0, 1, 200] {
            all.push(Param::PrefixKey(l));
            all.push(Param::PrefixValue(l));
        }
        let ids: HashSet<u32> = all.iter().map(|p| p.tensor_id()).collect();
        assert_eq!(ids.len(), all.len());
    }
}
