//! Tasks (prompt templates, candidates), dataset loaders and splits.
//!
//! The flow is: a loader reads a split file into [`Example`]s (text fields plus a label), a
//! [`Task`] renders each into a prompt and candidate continuations, and [`tokenize_examples`]
//! turns those into the [`crate::plan::TokenizedExample`]s that plans are built from.

pub mod answer_metrics;
mod choice_task;
mod example;
mod generation_task;
mod loaders;
mod split;
mod task;
mod template;
mod tokenize;

pub use answer_metrics::{exact_match, normalize_answer, token_f1};
pub use choice_task::ChoiceTask;
pub use example::{Example, Origin};
pub use generation_task::GenerationTask;
pub use loaders::{load_file, load_jsonl, load_split, load_tsv};
pub use split::{mezo_splits, sample, sample_per_label, shuffle, SplitSpec, Splits, TrainSize};
pub use task::{
    resolve_task, task_from_json, ClassificationTask, GenerationDefaults, Rendered, Task, TaskKind,
};
pub use template::Template;
pub use tokenize::{tokenize_examples, tokenize_within};
