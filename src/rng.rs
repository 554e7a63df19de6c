//! Philox4x32-10 counter-based RNG and the portable Gaussian/Rademacher transforms: the host twin of csrc/philox.cuh.
