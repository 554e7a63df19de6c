//! The dense family (to be implemented).

use super::{Dist, Family, FamilyConfig};
use crate::model::Model;
use crate::{Error, Result};

pub struct Dense;

impl Dense {
    pub fn new(_cfg: FamilyConfig, _dist: Dist, _model: &Model) -> Result<Dense> {
        Err(Error::Unsupported(
            "the dense family is not implemented yet".into(),
        ))
    }
}

#[allow(dead_code)]
fn _assert_family(f: Box<dyn Family>) -> Box<dyn Family> {
    f
}
