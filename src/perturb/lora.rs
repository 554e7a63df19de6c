//! The lora family (to be implemented).

use super::{Dist, Family, FamilyConfig};
use crate::model::Model;
use crate::{Error, Result};

pub struct Lora;

impl Lora {
    pub fn new(_cfg: FamilyConfig, _dist: Dist, _model: &Model, _seed: u64) -> Result<Lora> {
        Err(Error::Unsupported(
            "the lora family is not implemented yet".into(),
        ))
    }
}

#[allow(dead_code)]
fn _assert_family(f: Box<dyn Family>) -> Box<dyn Family> {
    f
}
