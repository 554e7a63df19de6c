//! Tasks (prompt templates, candidates), dataset loaders and splits.
