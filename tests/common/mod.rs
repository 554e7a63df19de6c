//! Helpers shared by integration tests. Each test crate uses a subset.
#![allow(dead_code)]

pub mod naive;
pub mod synth;
