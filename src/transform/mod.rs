//! Type-aware transforms, one module per kind.
//!
//! Every function here is pure with respect to the catalog: it reads an input file, writes an
//! output file, and reports what it wrote. Decisions about *whether* to keep the output (it must
//! be smaller, the stage must be due) belong to the engine.
//!
//! What each kind produces (see DESIGN.md section 3):
//!
//! | kind        | stage 1                                   | stage 2 (at most 2 KiB for text)   |
//! |-------------|-------------------------------------------|------------------------------------|
//! | image       | `image/jpeg` q45 (chroma q35), same size  | `image/jpeg` q20/15, side ≤ 1024   |
//! | text        | JSON shape (`application/json`), log digest (`text/plain`), Markdown outline (`text/markdown`), text extract (`text/plain`) | the same, compacted |
//! | spreadsheet | csv/tsv: `text/csv` stats + first rows; workbooks: `text/plain` | schema only, same format |
//! | document    | `text/plain` metadata, headings, paragraphs | `text/plain` metadata + first paragraph |
//! | binary      | chunked zstd container (`Encoding::Chunked`), format unchanged | none (`NoTransform`) |
//!
//! A stage-2 transform given stage-1 bytes (`Input::stage == 1`, `Input::format` the stage-1
//! format) compacts that summary; given the original it summarizes the original directly.
//!
//! Invariants:
//! - No transform panics on hostile input; third-party decoders are additionally run behind
//!   `catch_unwind` so a decoder bug becomes a `Decode` error.
//! - Every decoder honours [`Limits`]; memory use is bounded by the limits, not by the input size.

pub mod binary;
pub mod detect;
pub mod document;
pub mod image;
pub mod sheet;
pub mod stub;
pub mod text;

mod pdf_guard;
mod util;
mod xml;
mod ziplimit;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{Duration, Instant};

/// The broad family a file belongs to; chooses the transform chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Image,
    Text,
    Spreadsheet,
    Document,
    Binary,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Image,
        Kind::Text,
        Kind::Spreadsheet,
        Kind::Document,
        Kind::Binary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Text => "text",
            Kind::Spreadsheet => "spreadsheet",
            Kind::Document => "document",
            Kind::Binary => "binary",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What detection found: the kind and a MIME type for the bytes (e.g. "image/png",
/// "text/markdown", "application/json", "text/csv", "application/pdf",
/// "application/octet-stream").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub kind: Kind,
    pub format: String,
}

/// Resource limits every decoder honours.
#[derive(Debug, Clone)]
pub struct Limits {
    /// width * height of a decoded image.
    pub max_image_pixels: u64,
    /// Given to `image::Limits::max_alloc`; also caps how much of a PDF is loaded.
    pub max_alloc_bytes: u64,
    /// Total bytes inflated from one zip container.
    pub max_inflated_bytes: u64,
    pub max_zip_entries: usize,
    pub max_xml_depth: usize,
    pub max_json_depth: usize,
    /// Summaries read at most this much of a text file.
    pub max_text_scan_bytes: u64,
    /// Wall time one transform may take; loops over input check it through [`Limits::check_time`].
    pub max_transform_time: Duration,
    /// When the running transform must give up; set by [`apply`] from `max_transform_time`.
    pub deadline: Option<Instant>,
}

impl Limits {
    /// A copy whose deadline is `max_transform_time` from now.
    pub fn started_now(&self) -> Limits {
        Limits {
            deadline: Some(Instant::now() + self.max_transform_time),
            ..self.clone()
        }
    }

    /// `Err(Limit)` once the deadline has passed. Cheap; call it every few thousand items.
    pub fn check_time(&self) -> Result<(), TransformError> {
        match self.deadline {
            Some(d) if Instant::now() > d => Err(TransformError::Limit(format!(
                "transform took longer than {:?}",
                self.max_transform_time
            ))),
            _ => Ok(()),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_image_pixels: 100_000_000,
            max_alloc_bytes: 512 * 1024 * 1024,
            max_inflated_bytes: 256 * 1024 * 1024,
            max_zip_entries: 10_000,
            max_xml_depth: 256,
            max_json_depth: 128,
            max_text_scan_bytes: 64 * 1024 * 1024,
            max_transform_time: Duration::from_secs(60),
            deadline: None,
        }
    }
}

/// What a transform wrote to its output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    /// MIME type of the bytes written (for `Chunked`, of the decoded bytes).
    pub format: String,
    pub encoding: Encoding,
    /// One human line for the object's history, e.g. "jpeg q45/35 1024x768".
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The file at `out` is what readers see.
    Plain,
    /// The file at `out` is a `binary` chunked container; readers see its decoded bytes.
    Chunked,
}

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot decode {format}: {reason}")]
    Decode { format: String, reason: String },
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("no transform for {kind} at stage {stage}")]
    NoTransform { kind: &'static str, stage: u8 },
    /// The transform ran, but its output saves too little to be worth keeping: the stage
    /// advances with the current bytes, and the reason goes into the history.
    #[error("{0}")]
    NotWorthIt(String),
}

impl TransformError {
    pub(crate) fn decode(format: &str, reason: impl std::fmt::Display) -> Self {
        TransformError::Decode {
            format: format.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// The input to a stage transform: `path` holds the plain bytes readers currently see (the
/// engine decodes a Chunked artifact first), `name` is the file name (for extension hints),
/// `format` the MIME type recorded for those bytes, `stage` the stage those bytes are at
/// (0 = original).
pub struct Input<'a> {
    pub path: &'a Path,
    pub name: &'a str,
    pub kind: Kind,
    pub format: &'a str,
    pub stage: u8,
}

/// Run the transform that produces `target` (1 or 2) from `input`, writing to `out`.
///
/// Stage 3 is `stub::render`; stage 4 is deletion (engine). `target` may skip stages
/// (0 -> 2 runs the stage-2 transform on the original, which is better than chaining).
/// Never panics; hostile input gives Err.
pub fn apply(
    target: u8,
    input: &Input<'_>,
    out: &Path,
    limits: &Limits,
) -> Result<Produced, TransformError> {
    let no_transform = TransformError::NoTransform {
        kind: input.kind.as_str(),
        stage: target,
    };
    if !(1..=2).contains(&target) || input.stage >= target {
        return Err(no_transform);
    }
    let limits = &limits.started_now();
    let run = || match input.kind {
        Kind::Image => image::apply(target, input, out, limits),
        Kind::Text => text::apply(target, input, out, limits),
        Kind::Spreadsheet => sheet::apply(target, input, out, limits),
        Kind::Document => document::apply(target, input, out, limits),
        Kind::Binary => binary::apply(target, input, out),
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(_) => Err(TransformError::decode(input.format, "decoder panicked")),
    }
}
