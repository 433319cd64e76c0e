//! Real data: Convex snapshot exports (`npx convex export`, domain.md §6). `scan` streams an
//! export's `objects` table through the plan's mapping and reports what would not migrate;
//! `load` turns an export into a dataset for `check --from-export`; `generate` writes a faithful
//! export of generated data. Reading the ZIP is the one place outside `main.rs` and `output.rs`
//! that touches files: it reads the export given on the command line, entry by entry, and
//! never writes.

pub mod archive;
pub mod encoding;
pub mod generate;
pub mod ids;
pub mod load;
pub mod report;
pub mod scan;

use serde::{Deserialize, Serialize};

/// Why an export cannot be used at all (exit code 2). Problems with single entries, lines or
/// documents are `Finding`s instead, and the scan goes on.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The file cannot be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Not a ZIP, not a snapshot export, or no `objects` table that can be read.
    #[error("{path}: {reason}")]
    Unusable { path: String, reason: String },
}

/// What kind of problem a finding is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A legacy document that the plan's mapping rejects.
    Unmappable,
    /// A reference to an `objects` document that is not in the export.
    UnresolvedReference,
    /// A document over one of Convex's per-document limits.
    Limit,
    /// A line that is not a JSON document.
    BadLine,
    /// A document whose `_id` is missing or not a Convex id of its table.
    BadId,
    /// An entry that cannot be read (a corrupt or inflating entry, a name that escapes).
    Entry,
    /// A table whose value encoding is unknown.
    Encoding,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Unmappable => "unmappable",
            FindingKind::UnresolvedReference => "unresolved_reference",
            FindingKind::Limit => "limit",
            FindingKind::BadLine => "bad_line",
            FindingKind::BadId => "bad_id",
            FindingKind::Entry => "entry",
            FindingKind::Encoding => "encoding",
        }
    }
}

/// One problem, with its place: the entry, the line, the document's `_id` and the field path
/// where they apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub entry: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub reason: String,
}

impl Finding {
    pub fn entry(kind: FindingKind, entry: String, reason: String) -> Finding {
        Finding {
            kind,
            entry,
            line: None,
            id: None,
            path: None,
            reason,
        }
    }

    pub fn line(kind: FindingKind, entry: &str, line: u64, reason: String) -> Finding {
        Finding {
            kind,
            entry: entry.to_string(),
            line: Some(line),
            id: None,
            path: None,
            reason,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.entry)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(id) = &self.id {
            write!(f, " {id}")?;
        }
        if let Some(p) = &self.path {
            write!(f, " {p}")?;
        }
        write!(f, ": {}", self.reason)
    }
}
