//! Small helpers shared by the transforms.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{Limits, TransformError};

/// Longest line kept by [`LineReader`]; the rest of an overlong line is skipped, not buffered.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Most of a stage-1 summary read back for compaction; our summaries are far smaller, so a
/// longer input is not one of ours and is only looked at up to here.
pub(crate) const SUMMARY_READ_CAP: u64 = 1024 * 1024;

/// Items (lines, rows, records, XML events, pages) between two deadline checks.
const TICK_EVERY: u32 = 4096;

/// Checks the transform deadline once every [`TICK_EVERY`] calls of [`Ticker::tick`].
pub(crate) struct Ticker<'a> {
    limits: &'a Limits,
    n: u32,
}

impl<'a> Ticker<'a> {
    pub fn new(limits: &'a Limits) -> Self {
        Ticker { limits, n: 0 }
    }

    pub fn tick(&mut self) -> Result<(), TransformError> {
        self.n = self.n.wrapping_add(1);
        if self.n.is_multiple_of(TICK_EVERY) {
            self.limits.check_time()
        } else {
            Ok(())
        }
    }
}

/// A stage-1 summary read back whole, lossily, at most [`SUMMARY_READ_CAP`] bytes of it.
pub(crate) fn read_summary(path: &Path) -> std::io::Result<String> {
    let (data, _) = read_bounded(path, SUMMARY_READ_CAP)?;
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// A reader that passes valid UTF-8 through and replaces each invalid sequence with U+FFFD,
/// so parsers that insist on UTF-8 (serde_json) see a lossy but complete stream.
pub(crate) struct LossyUtf8<R> {
    inner: R,
    /// Decoded bytes not yet handed out.
    out: Vec<u8>,
    pos: usize,
    /// An incomplete sequence at the end of the last chunk, completed by the next one.
    carry: Vec<u8>,
    eof: bool,
}

impl<R: Read> LossyUtf8<R> {
    pub fn new(inner: R) -> Self {
        LossyUtf8 {
            inner,
            out: Vec::new(),
            pos: 0,
            carry: Vec::new(),
            eof: false,
        }
    }

    fn refill(&mut self) -> std::io::Result<()> {
        self.out.clear();
        self.pos = 0;
        let mut chunk = std::mem::take(&mut self.carry);
        let start = chunk.len();
        chunk.resize(start + 16 * 1024, 0);
        let n = self.inner.read(&mut chunk[start..])?;
        chunk.truncate(start + n);
        if n == 0 {
            self.eof = true;
        }
        let mut rest = chunk.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.out.extend_from_slice(s.as_bytes());
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    self.out.extend_from_slice(good);
                    match e.error_len() {
                        Some(len) => {
                            self.out.extend_from_slice("\u{FFFD}".as_bytes());
                            rest = &bad[len..];
                        }
                        None if !self.eof => {
                            self.carry = bad.to_vec();
                            break;
                        }
                        None => {
                            self.out.extend_from_slice("\u{FFFD}".as_bytes());
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for LossyUtf8<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Lower-case extension of a file name, without the dot ("" when none).
pub(crate) fn ext(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, e)) if !stem.is_empty() || name.starts_with('.') => e.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Reads a file line by line, lossily decoding UTF-8, never more than `limit` bytes in total
/// and never more than [`MAX_LINE`] bytes of one line in memory.
pub(crate) struct LineReader {
    inner: BufReader<File>,
    limit: u64,
    consumed: u64,
    /// True when reading stopped at `limit` before the end of the file.
    pub truncated: bool,
    pub lines: u64,
    buf: Vec<u8>,
    /// Whether an overlong line goes on as further lines instead of being cut.
    split_long: bool,
}

impl LineReader {
    pub fn open(path: &Path, limit: u64) -> std::io::Result<Self> {
        Ok(LineReader {
            inner: BufReader::with_capacity(64 * 1024, File::open(path)?),
            limit,
            consumed: 0,
            truncated: false,
            lines: 0,
            buf: Vec::new(),
            split_long: false,
        })
    }

    /// Hands out an overlong line as several lines of at most [`MAX_LINE`] bytes (for prose,
    /// where a file may be one long line) instead of keeping its start only.
    pub fn split_long_lines(mut self) -> Self {
        self.split_long = true;
        self
    }

    pub fn bytes_read(&self) -> u64 {
        self.consumed
    }

    /// The next line without its line ending, or None at the end (or at the limit).
    pub fn next_line(&mut self) -> std::io::Result<Option<String>> {
        self.buf.clear();
        let mut any = false;
        loop {
            if self.consumed >= self.limit {
                if !any {
                    if !self.inner.fill_buf()?.is_empty() {
                        self.truncated = true;
                    }
                    return Ok(None);
                }
                break;
            }
            let avail = self.inner.fill_buf()?;
            if avail.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let room = (self.limit - self.consumed).min(avail.len() as u64) as usize;
            let avail = &avail[..room];
            let (take, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            let keep = take.min(MAX_LINE.saturating_sub(self.buf.len()));
            let (take, done) = if self.split_long && keep < take {
                (keep, true)
            } else {
                (take, done)
            };
            self.buf.extend_from_slice(&avail[..keep]);
            self.inner.consume(take);
            self.consumed += take as u64;
            if done {
                break;
            }
        }
        while matches!(self.buf.last(), Some(b'\n') | Some(b'\r')) {
            self.buf.pop();
        }
        self.lines += 1;
        Ok(Some(String::from_utf8_lossy(&self.buf).into_owned()))
    }
}

/// Reads at most `limit` bytes of a file; the flag says whether the file was longer.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut data = Vec::new();
    File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut data)?;
    let truncated = data.len() as u64 > limit;
    if truncated {
        data.truncate(limit as usize);
    }
    Ok((data, truncated))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` clipped to `max` bytes with an ellipsis when something was cut.
pub(crate) fn clip_ellipsis(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        let mut c = clip(s, max.saturating_sub(3)).to_string();
        c.push_str("...");
        c
    }
}

/// Whole lines of `text` while they fit in `budget` bytes (each line with its newline).
pub(crate) fn fit_lines(text: &str, budget: usize) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if out.len() + line.len() + 1 > budget {
            if out.is_empty() {
                out.push_str(clip(line, budget.saturating_sub(1)));
                out.push('\n');
            }
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Collapses runs of whitespace into one space and trims.
pub(crate) fn squash_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn write_out(out: &Path, bytes: &[u8]) -> Result<(), TransformError> {
    std::fs::write(out, bytes)?;
    Ok(())
}

pub(crate) fn file_len(path: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

/// Running statistics of the numbers seen in one column or at one document position.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NumStats {
    pub ints: u64,
    pub floats: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

impl NumStats {
    pub fn add(&mut self, x: f64, int: bool) {
        if self.count() == 0 {
            self.min = x;
            self.max = x;
        }
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.sum += x;
        if int {
            self.ints += 1;
        } else {
            self.floats += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.ints + self.floats
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.sum / self.count() as f64)
    }
}

/// Read-only OLE2 compound files (legacy xls, doc, ppt), read the way calamine reads them but
/// with every sector number, chain and count checked against the file first: a chain must
/// stay inside the file and be no longer than it (no cycles), header counts may not exceed
/// the file, and stream sizes may not either.
pub(crate) mod cfb {
    pub const OLE_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    /// Sector numbers at and above this are markers, not sectors (calamine's reading).
    const RESERVED: u32 = 0xFFFF_FFFA;
    const DIFSECT: u32 = 0xFFFF_FFFC;
    const ENDOFCHAIN: u32 = 0xFFFF_FFFE;
    /// Streams shorter than this live in the mini stream.
    const MINI_CUTOFF: u64 = 4096;

    pub fn u16_at(d: &[u8], i: usize) -> Option<u16> {
        Some(u16::from_le_bytes(d.get(i..i + 2)?.try_into().ok()?))
    }

    pub fn u32_at(d: &[u8], i: usize) -> Option<u32> {
        Some(u32::from_le_bytes(d.get(i..i + 4)?.try_into().ok()?))
    }

    fn u32s(d: &[u8]) -> impl Iterator<Item = u32> + '_ {
        d.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }

    pub struct Entry {
        pub name: String,
        pub start: u32,
        pub len: u64,
    }

    pub struct Cfb<'a> {
        data: &'a [u8],
        /// Sector size; sector 0 starts right after the header, which takes one sector.
        size: usize,
        sectors: u32,
        fat: Vec<u32>,
        mini: Vec<u8>,
        mini_fat: Vec<u32>,
        pub entries: Vec<Entry>,
    }

    impl<'a> Cfb<'a> {
        fn sector(&self, id: u32) -> &'a [u8] {
            let start = self.size + id as usize * self.size;
            &self.data[start..(start + self.size).min(self.data.len())]
        }

        /// The sectors of a chain, followed as calamine does (until ENDOFCHAIN), each of
        /// which must exist, and no more of them than `count`.
        fn chain(start: u32, table: &[u32], count: u32) -> Result<Vec<u32>, String> {
            let mut ids = Vec::new();
            let mut id = start;
            while id != ENDOFCHAIN {
                if id >= count || id as usize >= table.len() {
                    return Err(format!("sector {id} out of range"));
                }
                if ids.len() as u32 >= count {
                    return Err("sector chain loops".into());
                }
                ids.push(id);
                id = table[id as usize];
            }
            Ok(ids)
        }

        fn bytes(&self, ids: &[u32]) -> Vec<u8> {
            ids.iter().flat_map(|&i| self.sector(i)).copied().collect()
        }

        pub fn parse(data: &'a [u8]) -> Result<Cfb<'a>, String> {
            if data.len() < 512 || data[..8] != OLE_MAGIC {
                return Err("not an OLE2 file".into());
            }
            let size = match u16_at(data, 30) {
                Some(9) => 512,
                Some(12) => 4096,
                _ => return Err("bad sector size".into()),
            };
            if u16_at(data, 32) != Some(6) || data.len() < size {
                return Err("bad header".into());
            }
            let field = |i| u32_at(data, i).unwrap_or(0);
            let sectors = (data.len() - size).div_ceil(size) as u32;
            let (dir_len, fat_len, dir_start) = (field(40), field(44), field(48));
            let (mini_fat_start, mini_fat_len, difat_start) = (field(60), field(64), field(68));
            // calamine reserves header counts up front; a count beyond the file is a lie.
            if dir_len > sectors || fat_len > sectors || mini_fat_len > sectors {
                return Err("header counts exceed the file".into());
            }
            // calamine sizes its DIFAT buffer from the bytes at 62..66 (half of two fields).
            if field(62) > 1 << 24 {
                return Err("bad DIFAT size".into());
            }
            let mut cfb = Cfb {
                data,
                size,
                sectors,
                fat: Vec::new(),
                mini: Vec::new(),
                mini_fat: Vec::new(),
                entries: Vec::new(),
            };
            // DIFAT: 109 entries in the header, then a chain of DIFAT sectors whose last
            // entry links to the next.
            let mut difat: Vec<u32> = u32s(&data[76..512]).collect();
            let mut id = difat_start;
            let mut hops = 0;
            while id < RESERVED {
                if id >= sectors || hops > sectors {
                    return Err("bad DIFAT chain".into());
                }
                hops += 1;
                difat.extend(u32s(cfb.sector(id)));
                id = difat.pop().unwrap_or(ENDOFCHAIN);
            }
            let fat_sectors: Vec<u32> = difat.into_iter().filter(|&i| i < DIFSECT).collect();
            if fat_sectors.len() as u64 > u64::from(sectors)
                || fat_sectors.iter().any(|&i| i >= sectors)
            {
                return Err("bad FAT sector list".into());
            }
            cfb.fat = fat_sectors
                .iter()
                .flat_map(|&i| u32s(cfb.sector(i)))
                .collect();
            let dir_ids =
                Self::chain(dir_start, &cfb.fat, sectors).map_err(|e| format!("directory: {e}"))?;
            let dir = cfb.bytes(&dir_ids);
            cfb.entries = dir
                .chunks_exact(128)
                .map(|e| {
                    let units: Vec<u16> = e[..64]
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .take_while(|&u| u != 0)
                        .collect();
                    let len = if size == 512 {
                        u64::from(u32_at(e, 120).unwrap_or(0))
                    } else {
                        u64::from_le_bytes(e[120..128].try_into().expect("8 bytes"))
                    };
                    Entry {
                        name: String::from_utf16_lossy(&units),
                        start: u32_at(e, 116).unwrap_or(0),
                        len,
                    }
                })
                .collect();
            let Some(root) = cfb.entries.first() else {
                return Err("no root directory".into());
            };
            // The mini stream lives in the root entry's chain; mini sectors are 64 bytes.
            if mini_fat_len > 0 {
                if root.len > data.len() as u64 {
                    return Err("mini stream larger than the file".into());
                }
                let ids = Self::chain(root.start, &cfb.fat, sectors)
                    .map_err(|e| format!("mini stream: {e}"))?;
                let mut mini = cfb.bytes(&ids);
                mini.truncate(root.len as usize);
                let ids = Self::chain(mini_fat_start, &cfb.fat, sectors)
                    .map_err(|e| format!("mini FAT: {e}"))?;
                cfb.mini_fat = ids.iter().flat_map(|&i| u32s(cfb.sector(i))).collect();
                cfb.mini = mini;
            }
            Ok(cfb)
        }

        pub fn entry(&self, name: &str) -> Option<&Entry> {
            self.entries.iter().find(|e| e.name == name)
        }

        /// The bytes of a stream, read the way calamine reads it.
        pub fn stream(&self, e: &Entry) -> Result<Vec<u8>, String> {
            if e.len > self.data.len() as u64 {
                return Err("stream larger than the file".into());
            }
            let mut out = if e.len < MINI_CUTOFF {
                let count = self.mini.len().div_ceil(64) as u32;
                let ids = Self::chain(e.start, &self.mini_fat, count)
                    .map_err(|err| format!("mini chain: {err}"))?;
                ids.iter()
                    .flat_map(|&i| {
                        let at = i as usize * 64;
                        &self.mini[at..(at + 64).min(self.mini.len())]
                    })
                    .copied()
                    .collect()
            } else {
                let ids = Self::chain(e.start, &self.fat, self.sectors)
                    .map_err(|err| format!("chain: {err}"))?;
                self.bytes(&ids)
            };
            out.truncate(e.len as usize);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod num_stats_tests {
    use super::NumStats;

    #[test]
    fn min_max_mean_and_kinds() {
        let mut n = NumStats::default();
        assert_eq!(n.mean(), None);
        n.add(-2.0, true);
        n.add(5.5, false);
        n.add(3.0, true);
        assert_eq!((n.ints, n.floats, n.min, n.max), (2, 1, -2.0, 5.5));
        assert_eq!(n.mean(), Some(6.5 / 3.0));
    }
}
