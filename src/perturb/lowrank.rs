//! The lowrank family (to be implemented).

use super::{Dist, Family, FamilyConfig};
use crate::model::Model;
use crate::{Error, Result};

pub struct LowRank;

impl LowRank {
    pub fn new(_cfg: FamilyConfig, _dist: Dist, _model: &Model) -> Result<LowRank> {
        Err(Error::Unsupported(
            "the lowrank family is not implemented yet".into(),
        ))
    }
}

#[allow(dead_code)]
fn _assert_family(f: Box<dyn Family>) -> Box<dyn Family> {
    f
}
