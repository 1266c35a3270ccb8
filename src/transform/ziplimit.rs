//! Zip containers opened under [`Limits`]: entry count and declared sizes are checked before
//! anything is inflated, and the bytes actually inflated are counted too (declared sizes lie).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use zip::ZipArchive;

use super::{Limits, TransformError};

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
        let mut data = Vec::new();
        (&mut entry)
            .take(self.left.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| TransformError::decode("application/zip", format!("{name}: {e}")))?;
        if data.len() as u64 > self.left {
            return Err(TransformError::Limit(format!(
                "zip inflates past the limit at {name}"
            )));
        }
        self.left -= data.len() as u64;
        Ok(Some(data))
    }

    /// Inflates every entry into a counting sink against the budget. For readers (calamine)
    /// that inflate on their own: declared sizes can lie, this cannot.
    pub fn verify_inflation(&mut self) -> Result<(), TransformError> {
        for i in 0..self.archive.len() {
            let mut entry = self.archive.by_index(i).map_err(|e| {
                TransformError::decode("application/zip", format!("entry {i}: {e}"))
            })?;
            let n = std::io::copy(
                &mut (&mut entry).take(self.left.saturating_add(1)),
                &mut std::io::sink(),
            )
            .map_err(|e| TransformError::decode("application/zip", format!("entry {i}: {e}")))?;
            if n > self.left {
                return Err(TransformError::Limit(format!(
                    "zip inflates past the limit at entry {i}"
                )));
            }
            self.left -= n;
        }
        Ok(())
    }
}
