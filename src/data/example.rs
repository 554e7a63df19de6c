//! One labelled example: named text fields and a label, remembering where it was read from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// File and 1-based line an example was read from, so errors found later (a field the template
/// needs, a label the task does not know) can point at the line to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Labels are kept as strings: data files write them as ints (`1`) or strings (`"1"`,
/// `"positive"`), and a task's label words are keyed by the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub fields: BTreeMap<String, String>,
    pub label: String,
    pub origin: Option<Origin>,
}

impl Example {
    pub fn new(label: impl Into<String>) -> Self {
        Example {
            fields: BTreeMap::new(),
            label: label.into(),
            origin: None,
        }
    }

    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Prefix for error messages: `file:line` when known.
    pub fn location(&self) -> String {
        match &self.origin {
            Some(o) => o.to_string(),
            None => "example".to_string(),
        }
    }
}
