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
    /// For the deadline.
    limits: Limits,
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
        limits: limits.clone(),
    })
}

/// Counts the compressed bytes an inflater has consumed.
struct Consumed<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Consumed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

impl LimitedZip {
    pub fn names(&self) -> Vec<String> {
        self.archive.file_names().map(str::to_string).collect()
    }

    /// Inflates entry `i` chunk by chunk into `sink`, against the remaining budget, the
    /// ratio limit (inflated so far over compressed bytes consumed so far, so a bomb is
    /// caught early whatever its headers say) and the deadline. Inflates the raw entry itself
    /// rather than trusting the zip reader's sizes.
    fn inflate(&mut self, i: usize, mut sink: impl FnMut(&[u8])) -> Result<(), TransformError> {
        let zerr = |e: &dyn std::fmt::Display| {
            TransformError::decode("application/zip", format!("entry {i}: {e}"))
        };
        let entry = self.archive.by_index_raw(i).map_err(|e| zerr(&e))?;
        let name = entry.name().to_string();
        let method = entry.compression();
        let mut raw = Consumed { inner: entry, n: 0 };
        let mut buf = vec![0u8; 64 * 1024];
        let mut n: u64 = 0;
        let limits = &self.limits;
        let mut step = |k: usize, consumed: u64, left: u64| -> Result<(), TransformError> {
            n += k as u64;
            if n > left {
                return Err(TransformError::Limit(format!(
                    "zip inflates past the limit at {name}"
                )));
            }
            if ratio_exceeded(n, consumed) {
                return Err(TransformError::Limit(format!(
                    "zip entry {name} inflates more than {MAX_RATIO} times"
                )));
            }
            limits.check_time()
        };
        match method {
            zip::CompressionMethod::Stored => loop {
                let k = raw.read(&mut buf).map_err(|e| zerr(&e))?;
                if k == 0 {
                    break;
                }
                step(k, raw.n, self.left)?;
                sink(&buf[..k]);
            },
            zip::CompressionMethod::Deflated => {
                let mut inf = flate2::read::DeflateDecoder::new(raw);
                loop {
                    let k = inf.read(&mut buf).map_err(|e| zerr(&e))?;
                    if k == 0 {
                        break;
                    }
                    step(k, inf.get_ref().n, self.left)?;
                    sink(&buf[..k]);
                }
            }
            other => return Err(zerr(&format!("unsupported compression {other}"))),
        }
        self.left -= n;
        Ok(())
    }

    /// Inflates one entry, counting it against the budget; None when the entry is absent.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, TransformError> {
        let Some(i) = self.archive.index_for_name(name) else {
            return Ok(None);
        };
        let mut data = Vec::new();
        self.inflate(i, |chunk| data.extend_from_slice(chunk))?;
        Ok(Some(data))
    }

    /// Inflates every entry into a counting sink against the budget, the ratio limit and the
    /// deadline. For readers (calamine) that inflate on their own: declared sizes can lie,
    /// this cannot.
    pub fn verify_inflation(&mut self) -> Result<(), TransformError> {
        for i in 0..self.archive.len() {
            self.limits.check_time()?;
            self.inflate(i, |_| {})?;
        }
        Ok(())
    }
}
