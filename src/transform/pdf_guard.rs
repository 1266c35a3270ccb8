//! What lopdf may do with a file, bounded before it sees the file. lopdf inflates streams
//! (object and cross-reference streams while loading, content and font streams while
//! extracting) with no size limit, sizes predictor row buffers from /DecodeParms, and its
//! parser recurses once per nesting level of arrays and dictionaries and once per stream
//! whose /Length refers to another stream. The checks work on the raw bytes, so they cover
//! whatever lopdf later finds at any offset:
//! - every possible stream body (the bytes after each `stream` keyword) is inflated with
//!   every chain of the filters lopdf implements (Flate, LZW, ASCII85) that the bytes admit,
//!   into counting sinks, against `max_inflated_bytes` per stream and four times that in all;
//! - /Columns, /Colors and /BitsPerComponent anywhere bound the predictor row size;
//! - bracket nesting, counted without resetting on anything, is bounded in the raw file and
//!   in every inflated stream (a suffix never nests deeper than the whole, so parsing from
//!   any offset is covered);
//! - chains of streams whose /Length refers to another object are bounded in length.
//!
//! Encrypted files are reported and not given to lopdf at all.

use std::collections::HashMap;
use std::io::Read;

use super::{Limits, TransformError};

pub struct Scan {
    pub encrypted: bool,
}

/// Deepest bracket nesting accepted; fits the stack the PDF thread gets (`document::PDF_STACK`). The count is a walk over
/// all bytes, so binary data moves it too: over 256 MiB of random bytes it stays near
/// 1500, far below this.
pub const MAX_NESTING: u64 = 16384;
/// Largest predictor row (columns x colours x bytes per sample) accepted.
const MAX_PREDICTOR_ROW: u128 = 16 * 1024 * 1024;
/// Longest chain of streams whose /Length is another stream.
const MAX_LENGTH_CHAIN: usize = 64;
/// Filters chained on one stream, at most.
const MAX_CHAIN: usize = 6;

fn limit(why: String) -> TransformError {
    TransformError::Limit(why)
}

/// Deepest nesting of `[`/`<<` in `data`, counted as a walk that never goes below zero.
pub fn nesting(data: &[u8]) -> u64 {
    let mut d = Nesting::default();
    d.feed(data);
    d.max
}

#[derive(Default, Clone, Copy)]
struct Nesting {
    depth: u64,
    max: u64,
    /// The previous byte was '<' or '>' (a "<<" or ">>" spans two bytes).
    prev: u8,
}

impl Nesting {
    fn feed(&mut self, data: &[u8]) {
        for &b in data {
            match (self.prev, b) {
                (_, b'[') => self.depth += 1,
                (_, b']') => self.depth = self.depth.saturating_sub(1),
                (b'<', b'<') => {
                    self.depth += 1;
                    self.prev = 0;
                    self.max = self.max.max(self.depth);
                    continue;
                }
                (b'>', b'>') => {
                    self.depth = self.depth.saturating_sub(1);
                    self.prev = 0;
                    continue;
                }
                _ => {}
            }
            self.max = self.max.max(self.depth);
            self.prev = b;
        }
    }
}

fn is_white(b: u8) -> bool {
    b" \t\n\r\x00\x0C".contains(&b)
}

fn is_delim(b: u8) -> bool {
    b"()<>[]{}/%".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The name starting at `data[i] == b'/'`, decoded as lopdf does (#xx escapes), and the
/// index just past it.
fn name_at(data: &[u8], i: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < data.len() {
        let b = data[j];
        if b == b'#' {
            match (
                data.get(j + 1).and_then(|&x| hex(x)),
                data.get(j + 2).and_then(|&x| hex(x)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    j += 3;
                    continue;
                }
                _ => break,
            }
        }
        if is_white(b) || is_delim(b) || out.len() > 64 {
            break;
        }
        out.push(b);
        j += 1;
    }
    (out, j)
}

/// Skips whitespace and comments from `i`.
fn skip_space(data: &[u8], mut i: usize) -> usize {
    while i < data.len() {
        if is_white(data[i]) {
            i += 1;
        } else if data[i] == b'%' {
            while i < data.len() && !b"\r\n".contains(&data[i]) {
                i += 1;
            }
        } else {
            break;
        }
    }
    i
}

/// An optionally signed integer at `i` (saturating), and the index past it.
fn int_at(data: &[u8], i: usize) -> Option<(i128, usize)> {
    let mut j = i;
    let neg = matches!(data.get(j), Some(b'-'));
    if matches!(data.get(j), Some(b'-' | b'+')) {
        j += 1;
    }
    let start = j;
    let mut v: i128 = 0;
    while let Some(d) = data.get(j).filter(|b| b.is_ascii_digit()) {
        v = (v * 10 + i128::from(d - b'0')).min(i128::from(u64::MAX));
        j += 1;
    }
    (j > start).then_some((if neg { -v } else { v }, j))
}

pub fn check(data: &[u8], limits: &Limits) -> Result<Scan, TransformError> {
    limits.check_time()?;
    let depth = nesting(data);
    if depth > MAX_NESTING {
        return Err(limit(format!("pdf nests deeper than {MAX_NESTING}")));
    }
    let mut encrypted = false;
    let (mut columns, mut colors, mut bpc) = (1i128, 1i128, 8i128);
    // Object number -> the object its /Length refers to (only for objects that have one).
    let mut length_ref: HashMap<u64, u64> = HashMap::new();
    let mut current_obj: Option<u64> = None;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'/' => {
                let (name, j) = name_at(data, i);
                let value = int_at(data, skip_space(data, j));
                match name.as_slice() {
                    b"Encrypt" => encrypted = true,
                    b"Columns" => columns = columns.max(value.map_or(1, |v| v.0)),
                    b"Colors" => colors = colors.max(value.map_or(1, |v| v.0)),
                    b"BitsPerComponent" => bpc = bpc.max(value.map_or(8, |v| v.0)),
                    b"Length" => {
                        // "/Length N G R"
                        let target = value.and_then(|(n, k)| {
                            let (_, k) = int_at(data, skip_space(data, k))?;
                            let k = skip_space(data, k);
                            (data.get(k) == Some(&b'R')).then_some(n)
                        });
                        if let (Some(obj), Some(t)) = (current_obj, target) {
                            length_ref.insert(obj, t.clamp(0, i128::from(u64::MAX)) as u64);
                        }
                    }
                    _ => {}
                }
                i = j.max(i + 1);
            }
            b'o' if data[i..].starts_with(b"obj") => {
                current_obj = object_number_before(data, i);
                i += 3;
            }
            _ => i += 1,
        }
    }
    let row = columns.max(1) as u128 * colors.max(1) as u128 * (bpc.max(8) as u128) / 8;
    if row > MAX_PREDICTOR_ROW {
        return Err(limit(format!("pdf predictor rows of {row} bytes")));
    }
    if longest_chain(&length_ref) > MAX_LENGTH_CHAIN {
        return Err(limit(format!(
            "pdf chains more than {MAX_LENGTH_CHAIN} indirect stream lengths"
        )));
    }
    if !encrypted {
        streams(data, limits)?;
    }
    Ok(Scan { encrypted })
}

/// "N G obj": the object number N before the `obj` keyword at `i`, if the bytes fit.
fn object_number_before(data: &[u8], i: usize) -> Option<u64> {
    let mut j = i;
    let back_ws = |j: &mut usize| {
        while *j > 0 && is_white(data[*j - 1]) {
            *j -= 1;
        }
    };
    let back_digits = |j: &mut usize| -> Option<usize> {
        let end = *j;
        while *j > 0 && data[*j - 1].is_ascii_digit() {
            *j -= 1;
        }
        (*j < end).then_some(end)
    };
    back_ws(&mut j);
    back_digits(&mut j)?;
    back_ws(&mut j);
    let end = back_digits(&mut j)?;
    std::str::from_utf8(&data[j..end]).ok()?.parse().ok()
}

/// Length of the longest /Length reference chain, walked without recursion.
fn longest_chain(refs: &HashMap<u64, u64>) -> usize {
    let mut longest = 0;
    let mut known: HashMap<u64, usize> = HashMap::new();
    for &start in refs.keys() {
        let mut path = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut cur = start;
        let mut tail = 0;
        while let Some(&next) = refs.get(&cur) {
            if let Some(&k) = known.get(&cur) {
                tail = k;
                break;
            }
            if !seen.insert(cur) {
                break; // lopdf stops at a cycle
            }
            path.push(cur);
            cur = next;
        }
        for (k, obj) in path.iter().rev().enumerate() {
            known.insert(*obj, tail + k + 1);
        }
        longest = longest.max(known.get(&start).copied().unwrap_or(0));
    }
    longest
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Filter {
    Flate,
    /// LZW with and without early code-size change (lopdf's EarlyChange 1 and 0).
    LzwEarly,
    LzwLate,
    Ascii85,
}

const FILTERS: [Filter; 4] = [
    Filter::Flate,
    Filter::LzwEarly,
    Filter::LzwLate,
    Filter::Ascii85,
];

/// Whether output starting with `head` could be decoded further by `f` (a cheap sniff so
/// only plausible chains are tried; a wrong guess only costs time, never misses output,
/// since every decoder is tried on every raw stream body).
fn admits(f: Filter, head: &[u8]) -> bool {
    match f {
        Filter::Flate => {
            head.len() >= 2
                && head[0] & 0x0F == 8
                && (u16::from(head[0]) * 256 + u16::from(head[1])) % 31 == 0
        }
        Filter::LzwEarly | Filter::LzwLate => {
            head.len() >= 2 && ((u16::from(head[0]) << 1) | u16::from(head[1] >> 7)) <= 256
        }
        Filter::Ascii85 => head
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_none_or(|&b| (b'!'..=b'u').contains(&b) || b == b'z'),
    }
}

/// Counts the bytes that pass through it.
struct Counted<R> {
    inner: R,
    n: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.set(self.n.get() + k as u64);
        Ok(k)
    }
}

/// Streaming LZW over an inner reader (weezl decodes from slices into slices).
struct Lzw<R> {
    inner: R,
    dec: weezl::decode::Decoder,
    input: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> Read for Lzw<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            if self.pos == self.input.len() {
                self.input.resize(16 * 1024, 0);
                let k = self.inner.read(&mut self.input)?;
                self.input.truncate(k);
                self.pos = 0;
                if k == 0 {
                    self.done = true;
                    return Ok(0);
                }
            }
            let r = self.dec.decode_bytes(&self.input[self.pos..], buf);
            self.pos += r.consumed_in;
            match r.status {
                Ok(weezl::LzwStatus::Ok) | Ok(weezl::LzwStatus::NoProgress) => {}
                _ => self.done = true,
            }
            if r.consumed_out > 0 {
                return Ok(r.consumed_out);
            }
            if r.consumed_in == 0 && self.pos < self.input.len() {
                self.done = true;
            }
        }
    }
}

/// Streaming ASCII85 (lopdf's reading: whitespace skipped, `z` is four zeros, decoding
/// stops at the first other character outside `!`..=`u`).
struct A85<R> {
    inner: R,
    group: [u8; 5],
    n: usize,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> Read for A85<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut chunk = [0u8; 4096];
        while self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
            if self.done {
                return Ok(0);
            }
            let k = self.inner.read(&mut chunk)?;
            if k == 0 {
                self.done = true;
            }
            for &c in &chunk[..k] {
                if c.is_ascii_whitespace() {
                    continue;
                }
                if c == b'z' && self.n == 0 {
                    self.out.extend_from_slice(&[0; 4]);
                    continue;
                }
                if !(b'!'..=b'u').contains(&c) {
                    self.done = true;
                    break;
                }
                self.group[self.n] = c - b'!';
                self.n += 1;
                if self.n == 5 {
                    let v = self.group.iter().fold(0u64, |a, &d| a * 85 + u64::from(d));
                    self.out.extend_from_slice(&(v as u32).to_be_bytes());
                    self.n = 0;
                }
            }
            if self.done && self.n > 0 {
                self.out.extend(std::iter::repeat_n(0, self.n - 1));
                self.n = 0;
            }
        }
        let k = buf.len().min(self.out.len() - self.pos);
        buf[..k].copy_from_slice(&self.out[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

fn decoder<'a>(f: Filter, inner: Box<dyn Read + 'a>) -> Box<dyn Read + 'a> {
    use weezl::{decode::Decoder, BitOrder};
    let lzw = |inner, dec| {
        Box::new(Lzw {
            inner,
            dec,
            input: Vec::new(),
            pos: 0,
            done: false,
        }) as Box<dyn Read + 'a>
    };
    match f {
        Filter::Flate => Box::new(flate2::read::ZlibDecoder::new(inner)),
        Filter::LzwEarly => lzw(inner, Decoder::with_tiff_size_switch(BitOrder::Msb, 8)),
        Filter::LzwLate => lzw(inner, Decoder::new(BitOrder::Msb, 8)),
        Filter::Ascii85 => Box::new(A85 {
            inner,
            group: [0; 5],
            n: 0,
            out: Vec::new(),
            pos: 0,
            done: false,
        }),
    }
}

/// Decodes `body` through `chain`, counting what every level produces (lopdf keeps each
/// level whole), failing past `cap`. Returns (total produced, head of the last level).
fn run_chain(
    body: &[u8],
    chain: &[Filter],
    cap: u64,
    limits: &Limits,
) -> Result<(u64, Vec<u8>), TransformError> {
    let mut counters = Vec::new();
    let mut r: Box<dyn Read + '_> = Box::new(body);
    for &f in chain {
        let n = std::rc::Rc::new(std::cell::Cell::new(0u64));
        counters.push(n.clone());
        r = Box::new(Counted {
            inner: decoder(f, r),
            n,
        });
    }
    let total = |c: &[std::rc::Rc<std::cell::Cell<u64>>]| c.iter().map(|n| n.get()).sum::<u64>();
    let mut head = Vec::new();
    let mut nest = Nesting::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Decoder errors end the stream here as they end lopdf's decoding.
        let k = r.read(&mut buf).unwrap_or(0);
        if k == 0 {
            break;
        }
        if head.len() < 16 {
            head.extend_from_slice(&buf[..k.min(16 - head.len())]);
        }
        nest.feed(&buf[..k]);
        if nest.max > MAX_NESTING {
            return Err(limit(format!("pdf stream nests deeper than {MAX_NESTING}")));
        }
        if total(&counters) > cap {
            return Err(limit(format!("pdf stream inflates past {cap} bytes")));
        }
        limits.check_time()?;
    }
    Ok((total(&counters), head))
}

/// Every possible stream body, through every admissible filter chain.
fn streams(data: &[u8], limits: &Limits) -> Result<(), TransformError> {
    let cap = limits.max_inflated_bytes;
    let mut left = cap.saturating_mul(4);
    let mut from = 0;
    while let Some(k) = find(&data[from..], b"stream") {
        let kw = from + k;
        from = kw + 6;
        // lopdf: "stream", spaces or tabs, then an end of line.
        let mut p = from;
        while matches!(data.get(p), Some(b' ' | b'\t')) {
            p += 1;
        }
        p += match (data.get(p), data.get(p + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\r' | b'\n'), _) => 1,
            _ => continue,
        };
        let body = &data[p..];
        let mut worst = 0u64;
        let mut todo: Vec<Vec<Filter>> = FILTERS.iter().map(|&f| vec![f]).collect();
        while let Some(chain) = todo.pop() {
            let (n, head) = run_chain(body, &chain, cap.min(left), limits)?;
            worst = worst.max(n);
            if chain.len() < MAX_CHAIN && n > 0 {
                for f in FILTERS.into_iter().filter(|&f| admits(f, &head)) {
                    let mut next = chain.clone();
                    next.push(f);
                    todo.push(next);
                }
            }
        }
        left = left.checked_sub(worst).ok_or_else(|| {
            limit(format!(
                "pdf streams inflate past {} bytes",
                cap.saturating_mul(4)
            ))
        })?;
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
