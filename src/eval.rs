//! Zero-shot evaluation of a model on a task split.
