//! Chunked lossless container with random access.
//!
//! Layout (all integers little-endian):
//! ```text
//! header  : MAGIC[8] version:u32 chunk_size:u32 original_len:u64          (24 bytes)
//! frames  : one independent zstd frame per chunk, in order
//! index   : per chunk  frame_offset:u64 frame_len:u32                     (12 bytes each)
//! footer  : index_offset:u64 chunk_count:u64 original_len:u64 MAGIC[8]   (32 bytes)
//! ```
//! Every chunk but the last decodes to exactly `chunk_size` bytes, the last to the remainder.
//! `open` validates the whole index against the file length before any read, so a truncated or
//! corrupt container is an error, never a panic or an unbounded allocation.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{Encoding, Input, Produced, TransformError};

pub const DEFAULT_CHUNK: usize = 256 * 1024;
/// zstd level for stage 1, chosen by measurement (docs/BENCHMARKS.md): in 256 KiB chunks it
/// keeps fewer bytes than gzip -9 over whole files, and compresses faster.
pub const DEFAULT_LEVEL: i32 = 9;
/// Compression that saves less than this share of the bytes is not kept.
pub const MIN_SAVING: f64 = 0.05;
pub(crate) const MAGIC: &[u8; 8] = b"RZDBCHK1";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 24;
const FOOTER_LEN: u64 = 32;
const INDEX_ENTRY: u64 = 12;
/// Largest chunk size a container may declare; bounds the memory one read can allocate.
const MAX_CHUNK: usize = 64 * 1024 * 1024;
const FORMAT: &str = "application/x-rustdb-chunked";

fn corrupt(reason: impl std::fmt::Display) -> TransformError {
    TransformError::decode(FORMAT, reason)
}

/// True when `head` starts with the container magic.
pub fn is_container(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Compress `src` into `dst` in independent zstd chunks with an index. Streams: never holds
/// more than a chunk and its frame in memory. fsync is the caller's job. Returns the container
/// length.
pub fn compress_file(
    src: &Path,
    dst: &Path,
    chunk: usize,
    level: i32,
) -> Result<u64, TransformError> {
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(TransformError::Limit(format!(
            "chunk size {chunk} outside 1..={MAX_CHUNK}"
        )));
    }
    let mut input = File::open(src)?;
    let mut out = BufWriter::new(File::create(dst)?);
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&(chunk as u32).to_le_bytes())?;
    out.write_all(&0u64.to_le_bytes())?; // original length, patched below
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    // A per-frame checksum turns silent corruption into a read error.
    compressor.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))?;
    let mut buf = vec![0u8; chunk];
    let mut index: Vec<(u64, u32)> = Vec::new();
    let mut pos = HEADER_LEN;
    let mut original: u64 = 0;
    loop {
        let n = read_full(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        let frame = compressor.compress(&buf[..n])?;
        out.write_all(&frame)?;
        index.push((pos, frame.len() as u32));
        pos += frame.len() as u64;
        original += n as u64;
        if n < chunk {
            break;
        }
    }
    let index_offset = pos;
    for (off, len) in &index {
        out.write_all(&off.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
    }
    out.write_all(&index_offset.to_le_bytes())?;
    out.write_all(&(index.len() as u64).to_le_bytes())?;
    out.write_all(&original.to_le_bytes())?;
    out.write_all(MAGIC)?;
    let mut file = out.into_inner().map_err(|e| e.into_error())?;
    file.seek(SeekFrom::Start(16))?;
    file.write_all(&original.to_le_bytes())?;
    Ok(index_offset + index.len() as u64 * INDEX_ENTRY + FOOTER_LEN)
}

/// Decode a whole container to `dst` (streaming). Returns the decoded length.
pub fn decompress_file(src: &Path, dst: &Path) -> Result<u64, TransformError> {
    let reader = ChunkedReader::open(File::open(src)?)?;
    let mut out = BufWriter::new(File::create(dst)?);
    for i in 0..reader.index.len() {
        let data = reader.chunk(i)?;
        out.write_all(&data)?;
    }
    out.flush()?;
    Ok(reader.len)
}

/// Random-access reader over a container: reads the footer and index at open; `read_at`
/// decompresses only the chunk(s) covering the range, with a one-chunk cache.
pub struct ChunkedReader {
    file: File,
    chunk: usize,
    len: u64,
    index: Vec<(u64, u32)>,
    cache: Mutex<Option<(usize, Arc<Vec<u8>>)>>,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

impl ChunkedReader {
    pub fn open(file: File) -> Result<Self, TransformError> {
        let file_len = file.metadata()?.len();
        if file_len < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt("container shorter than header and footer"));
        }
        let mut header = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut header, 0)?;
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.read_exact_at(&mut footer, file_len - FOOTER_LEN)?;
        if !is_container(&header) || &footer[24..32] != MAGIC {
            return Err(corrupt("bad magic (truncated or not a container)"));
        }
        if u32_at(&header, 8) != VERSION {
            return Err(corrupt(format!("unknown version {}", u32_at(&header, 8))));
        }
        let chunk = u32_at(&header, 12) as usize;
        let len = u64_at(&header, 16);
        let index_offset = u64_at(&footer, 0);
        let count = u64_at(&footer, 8);
        if chunk == 0 || chunk > MAX_CHUNK {
            return Err(corrupt(format!("bad chunk size {chunk}")));
        }
        if u64_at(&footer, 16) != len {
            return Err(corrupt("header and footer disagree on length"));
        }
        if count != len.div_ceil(chunk as u64) {
            return Err(corrupt("chunk count does not match length"));
        }
        let index_len = count
            .checked_mul(INDEX_ENTRY)
            .and_then(|n| n.checked_add(index_offset))
            .and_then(|n| n.checked_add(FOOTER_LEN));
        if index_offset < HEADER_LEN || index_len != Some(file_len) {
            return Err(corrupt("index does not fit the file"));
        }
        let mut raw = vec![0u8; (count * INDEX_ENTRY) as usize];
        file.read_exact_at(&mut raw, index_offset)?;
        let mut index = Vec::with_capacity(count as usize);
        let mut expect = HEADER_LEN;
        for e in raw.chunks_exact(INDEX_ENTRY as usize) {
            let (off, flen) = (u64_at(e, 0), u32_at(e, 8));
            if off != expect || off + flen as u64 > index_offset {
                return Err(corrupt("frame offsets are not contiguous"));
            }
            expect = off + flen as u64;
            index.push((off, flen));
        }
        if expect != index_offset {
            return Err(corrupt("frames do not end at the index"));
        }
        Ok(ChunkedReader {
            file,
            chunk,
            len,
            index,
            cache: Mutex::new(None),
        })
    }

    /// Original (decoded) length.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn chunk_len(&self, i: usize) -> usize {
        let start = i as u64 * self.chunk as u64;
        (self.len - start).min(self.chunk as u64) as usize
    }

    fn chunk(&self, i: usize) -> Result<Arc<Vec<u8>>, TransformError> {
        if let Ok(guard) = self.cache.lock() {
            if let Some((ci, data)) = guard.as_ref() {
                if *ci == i {
                    return Ok(Arc::clone(data));
                }
            }
        }
        let (off, flen) = self.index[i];
        let mut frame = vec![0u8; flen as usize];
        self.file.read_exact_at(&mut frame, off)?;
        let want = self.chunk_len(i);
        let data =
            zstd::bulk::decompress(&frame, want).map_err(|e| corrupt(format!("chunk {i}: {e}")))?;
        if data.len() != want {
            return Err(corrupt(format!(
                "chunk {i} decodes to {} bytes, want {want}",
                data.len()
            )));
        }
        let data = Arc::new(data);
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((i, Arc::clone(&data)));
        }
        Ok(data)
    }

    /// Fills `buf` from `offset` of the decoded bytes; short only at the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            if pos >= self.len {
                break;
            }
            let i = (pos / self.chunk as u64) as usize;
            let data = self.chunk(i).map_err(|e| match e {
                TransformError::Io(io) => io,
                other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
            })?;
            let within = (pos - i as u64 * self.chunk as u64) as usize;
            let n = (data.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&data[within..within + n]);
            done += n;
        }
        Ok(done)
    }
}

pub(crate) fn apply(target: u8, input: &Input<'_>, out: &Path) -> Result<Produced, TransformError> {
    if target != 1 {
        return Err(TransformError::NoTransform {
            kind: input.kind.as_str(),
            stage: target,
        });
    }
    let before = super::util::file_len(input.path)?;
    let after = compress_file(input.path, out, DEFAULT_CHUNK, DEFAULT_LEVEL)?;
    let saving = 1.0 - after as f64 / before.max(1) as f64;
    if saving < MIN_SAVING {
        return Err(TransformError::NotWorthIt(format!(
            "compression skipped: zstd-{DEFAULT_LEVEL} would save {:.1}% ({before} -> {after} bytes), under {:.0}%",
            saving * 100.0,
            MIN_SAVING * 100.0
        )));
    }
    Ok(Produced {
        format: input.format.to_string(),
        encoding: Encoding::Chunked,
        note: format!(
            "zstd-{DEFAULT_LEVEL} chunked {before} -> {after} bytes ({:.1}% saved)",
            saving * 100.0
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    fn round_trip(data: &[u8], chunk: usize) {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst, back) = (
            dir.path().join("s"),
            dir.path().join("c"),
            dir.path().join("b"),
        );
        std::fs::write(&src, data).unwrap();
        let clen = compress_file(&src, &dst, chunk, 3).unwrap();
        assert_eq!(clen, std::fs::metadata(&dst).unwrap().len());
        assert_eq!(decompress_file(&dst, &back).unwrap(), data.len() as u64);
        assert_eq!(std::fs::read(&back).unwrap(), data);
        let r = ChunkedReader::open(File::open(&dst).unwrap()).unwrap();
        assert_eq!(r.len(), data.len() as u64);
        let mut seed = 0x2545F4914F6CDD1D_u64;
        for _ in 0..200 {
            let off = if data.is_empty() {
                0
            } else {
                xorshift(&mut seed) % (data.len() as u64 + 10)
            };
            let want = (xorshift(&mut seed) % (3 * chunk as u64)) as usize;
            let mut buf = vec![0u8; want];
            let n = r.read_at(off, &mut buf).unwrap();
            let start = (off as usize).min(data.len());
            let end = (start + want).min(data.len());
            assert_eq!(n, end - start);
            assert_eq!(&buf[..n], &data[start..end]);
        }
    }

    #[test]
    fn round_trips() {
        let mut seed = 7u64;
        let random: Vec<u8> = (0..300_000).map(|_| xorshift(&mut seed) as u8).collect();
        let repetitive: Vec<u8> = b"abcabcabd"
            .iter()
            .cycle()
            .take(1_000_003)
            .copied()
            .collect();
        round_trip(&[], 1024);
        round_trip(b"x", 1024);
        round_trip(&random, 4096);
        round_trip(&random, DEFAULT_CHUNK);
        round_trip(&repetitive, 65536);
        round_trip(&repetitive[..65536 * 2], 65536);
        for f in ["eeg.dat", "ledger.sqlite"] {
            let data = std::fs::read(format!(
                "{}/../shared/corpus/binary/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            round_trip(&data, DEFAULT_CHUNK);
            round_trip(&data, 10_000);
        }
    }

    #[test]
    fn truncated_or_corrupt_is_err() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("s"), dir.path().join("c"));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        compress_file(&src, &dst, 16384, 3).unwrap();
        let full = std::fs::read(&dst).unwrap();
        for cut in [0, 5, 24, 40, full.len() / 2, full.len() - 1] {
            std::fs::write(&dst, &full[..cut]).unwrap();
            assert!(
                ChunkedReader::open(File::open(&dst).unwrap()).is_err(),
                "cut {cut}"
            );
            assert!(decompress_file(&dst, &dir.path().join("o")).is_err());
        }
        // Corrupt a frame body: open succeeds (index is fine), reads fail cleanly.
        let mut bad = full.clone();
        for b in &mut bad[30..60] {
            *b ^= 0x5A;
        }
        std::fs::write(&dst, &bad).unwrap();
        if let Ok(r) = ChunkedReader::open(File::open(&dst).unwrap()) {
            let mut buf = vec![0u8; 100];
            assert!(r.read_at(0, &mut buf).is_err());
        }
    }

    #[test]
    fn reader_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<ChunkedReader>();
    }
}
