//! The f32 reference backend: rayon-parallel, readable, the oracle for every GPU kernel.
