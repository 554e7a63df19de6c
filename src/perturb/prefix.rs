//! The prefix family (to be implemented).

use super::{Dist, Family, FamilyConfig};
use crate::model::Model;
use crate::{Error, Result};

pub struct Prefix;

impl Prefix {
    pub fn new(_cfg: FamilyConfig, _dist: Dist, _model: &Model, _seed: u64) -> Result<Prefix> {
        Err(Error::Unsupported(
            "the prefix family is not implemented yet".into(),
        ))
    }
}

#[allow(dead_code)]
fn _assert_family(f: Box<dyn Family>) -> Box<dyn Family> {
    f
}
