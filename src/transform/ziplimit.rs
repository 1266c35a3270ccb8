//! Zip containers opened under [`Limits`]: entry count, declared sizes and declared inflation
//! ratios are checked before anything is inflated, and the bytes actually inflated are counted
//! too (declared sizes lie), against the same total and ratio.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use zip::ZipArchive;

use super::{Limits, TransformError};

/// Largest inflated/compressed ratio accepted for an entry that inflates past
/// [`RATIO_FLOOR`]. Deflate tops out near 1032:1; real office XML stays well under 100:1.
const MAX_RATIO: u64 = 200;
/// Entries smaller than this may have any ratio (tiny repetitive parts compress very well).
const RATIO_FLOOR: u64 = 8 * 1024 * 1024;

fn ratio_exceeded(inflated: u64, compressed: u64) -> bool {
    inflated > RATIO_FLOOR && inflated / compressed.max(1) > MAX_RATIO
}

pub(crate) struct LimitedZip {
    archive: ZipArchive<BufReader<File>>,
    /// Bytes that may still be inflated.
    left: u64,
}

pub(crate) fn open(
    path: &Path,
    format: &str,
    limits: &Limits,
) -> Result<LimitedZip, TransformError> {
    let archive = ZipArchive::new(BufReader::new(File::open(path)?))
        .map_err(|e| TransformError::decode(format, format!("zip: {e}")))?;
    check(archive, format, limits)
}

fn check(
    mut archive: ZipArchive<BufReader<File>>,
    format: &str,
    limits: &Limits,
) -> Result<LimitedZip, TransformError> {
    if archive.len() > limits.max_zip_entries {
        return Err(TransformError::Limit(format!(
            "zip has {} entries, limit {}",
            archive.len(),
            limits.max_zip_entries
        )));
    }
    let mut declared: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| TransformError::decode(format, format!("zip entry {i}: {e}")))?;
        if ratio_exceeded(entry.size(), entry.compressed_size()) {
            return Err(TransformError::Limit(format!(
                "zip entry {} declares an inflation ratio over {MAX_RATIO}",
                entry.name()
            )));
        }
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.max_inflated_bytes {
        return Err(TransformError::Limit(format!(
            "zip declares {declared} inflated bytes, limit {}",
            limits.max_inflated_bytes
        )));
    }
    Ok(LimitedZip {
        archive,
        left: limits.max_inflated_bytes,
    })
}

impl LimitedZip {
    pub fn names(&self) -> Vec<String> {
        self.archive.file_names().map(str::to_string).collect()
    }

    /// Inflates one entry, counting it against the budget; None when the entry is absent.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, TransformError> {
        let mut entry = match self.archive.by_name(name) {
            Ok(e) => e,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => {
                return Err(TransformError::decode(
                    "application/zip",
                    format!("{name}: {e}"),
                ))
            }
        };
        let compressed = entry.compressed_size();
        let mut data = Vec::new();
        (&mut entry)
            .take(self.left.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| TransformError::decode("application/zip", format!("{name}: {e}")))?;
        let n = data.len() as u64;
        if n > self.left {
            return Err(TransformError::Limit(format!(
                "zip inflates past the limit at {name}"
            )));
        }
        if ratio_exceeded(n, compressed) {
            return Err(TransformError::Limit(format!(
                "zip entry {name} inflates more than {MAX_RATIO} times"
            )));
        }
        self.left -= n;
        Ok(Some(data))
    }

    /// Inflates every entry into a counting sink against the budget, the ratio limit and the
    /// deadline. For readers (calamine) that inflate on their own: declared sizes can lie,
    /// this cannot.
    pub fn verify_inflation(&mut self, limits: &Limits) -> Result<(), TransformError> {
        let mut buf = vec![0u8; 64 * 1024];
        for i in 0..self.archive.len() {
            limits.check_time()?;
            let mut entry = self.archive.by_index(i).map_err(|e| {
                TransformError::decode("application/zip", format!("entry {i}: {e}"))
            })?;
            let compressed = entry.compressed_size();
            let mut n: u64 = 0;
            loop {
                let k = entry.read(&mut buf).map_err(|e| {
                    TransformError::decode("application/zip", format!("entry {i}: {e}"))
                })?;
                if k == 0 {
                    break;
                }
                n += k as u64;
                if n > self.left {
                    return Err(TransformError::Limit(format!(
                        "zip inflates past the limit at entry {i}"
                    )));
                }
                if ratio_exceeded(n, compressed) {
                    return Err(TransformError::Limit(format!(
                        "zip entry {i} inflates more than {MAX_RATIO} times"
                    )));
                }
                limits.check_time()?;
            }
            self.left -= n;
        }
        Ok(())
    }
}
