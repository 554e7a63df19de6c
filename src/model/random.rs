//! Seeded random weights for any config: tests, fixtures and benchmarks.
