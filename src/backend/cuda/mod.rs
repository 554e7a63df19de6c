//! The CUDA backend on cudarc.
