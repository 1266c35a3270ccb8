//! Text summaries that stay valid for their type: JSON shape (valid JSON), log digest (log
//! lines), Markdown outline, plain-text extract. Input is streamed and read lossily; at most
//! `max_text_scan_bytes` of it is looked at.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};

use super::detect::MIME_LOG;
use super::util::{
    clip, clip_ellipsis, ext, file_len, fit_lines, read_summary, squash_ws, write_out, LineReader,
    LossyUtf8, NumStats, Ticker, SUMMARY_READ_CAP,
};
use super::{Encoding, Input, Limits, Produced, TransformError};

/// Stage-1 budget for plain-text summaries.
pub const STAGE1_BUDGET: usize = 4096;
/// Stage-1 budget for JSON shapes, log digests and Markdown outlines, which carry structure.
pub const STAGE1_STRUCT_BUDGET: usize = 16 * 1024;
/// Every stage-2 text is at most this long.
pub const STAGE2_BUDGET: usize = 2048;
const LOG_HEADER: &str = "# log summary";
const PLAIN_HEADER: &str = "[summary of ";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sub {
    Json,
    Log,
    Markdown,
    Plain,
}

fn sub_type(input: &Input<'_>) -> Sub {
    let e = ext(input.name);
    match input.format {
        "application/json" => return Sub::Json,
        "text/markdown" => return Sub::Markdown,
        MIME_LOG => return Sub::Log,
        _ => {}
    }
    match e.as_str() {
        "json" if input.stage == 0 => Sub::Json,
        "md" | "markdown" => Sub::Markdown,
        "log" => Sub::Log,
        _ => Sub::Plain,
    }
}

fn starts_with(path: &Path, prefix: &str) -> bool {
    let mut head = vec![0u8; prefix.len()];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|_| head == prefix.as_bytes())
        .unwrap_or(false)
}

pub(crate) fn apply(
    target: u8,
    input: &Input<'_>,
    out: &Path,
    limits: &Limits,
) -> Result<Produced, TransformError> {
    let input_len = file_len(input.path)?;
    let mut sub = sub_type(input);
    if input.stage >= 1 && sub == Sub::Plain && starts_with(input.path, LOG_HEADER) {
        sub = Sub::Log;
    }
    // Keep summaries strictly smaller than inputs that are more than a few hundred bytes.
    let cap = |budget: usize| -> usize {
        if input_len > 256 {
            budget.min((input_len as usize).saturating_mul(3) / 4)
        } else {
            budget
        }
    };
    let stage1_budget = match sub {
        // Markdown keeps every heading, so it gets the larger budget too.
        Sub::Json | Sub::Log | Sub::Markdown => STAGE1_STRUCT_BUDGET,
        _ => STAGE1_BUDGET,
    };
    let budget = cap(if target >= 2 {
        STAGE2_BUDGET
    } else {
        stage1_budget
    });
    let (bytes, format, note) = match sub {
        Sub::Json => {
            let v = if input.stage >= 1 {
                read_summary_json(input.path)?
            } else {
                json_shape(input, limits)?
            };
            let (s, pruned) = prune_to_fit(&v, budget, target == 1);
            let note = format!("json shape{}", if pruned { " (pruned)" } else { "" });
            (s.into_bytes(), "application/json", note)
        }
        Sub::Log => {
            let s = if input.stage >= 1 {
                read_summary(input.path)?
            } else {
                log_summary(input, limits, cap(STAGE1_STRUCT_BUDGET))?
            };
            let s = if target >= 2 {
                compact_log(&s, budget)
            } else {
                fit_lines(&s, budget)
            };
            (s.into_bytes(), "text/plain", "log digest".to_string())
        }
        Sub::Markdown => {
            let s = markdown_summary(input.path, limits, budget)?;
            (
                s.into_bytes(),
                "text/markdown",
                "markdown outline".to_string(),
            )
        }
        Sub::Plain => {
            let s = if input.stage >= 1 && starts_with(input.path, PLAIN_HEADER) {
                compact_plain(&read_summary(input.path)?, budget)
            } else {
                plain_summary(input.path, input.name, limits, budget)?
            };
            (s.into_bytes(), "text/plain", "text extract".to_string())
        }
    };
    write_out(out, &bytes)?;
    Ok(Produced {
        format: format.to_string(),
        encoding: Encoding::Plain,
        note: format!("{note}, {} -> {} bytes", input_len, bytes.len()),
    })
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Everything seen at one position of the document (all array elements share one node).
#[derive(Default)]
struct Node {
    count: u64,
    nulls: u64,
    trues: u64,
    falses: u64,
    nums: NumStats,
    strings: u64,
    samples: Vec<String>,
    max_len: usize,
    arrays: u64,
    len_min: u64,
    len_max: u64,
    elem: Option<Box<Node>>,
    objects: u64,
    keys: Vec<(String, Node)>,
    other_keys: u64,
}

const MAX_KEYS: usize = 64;
const MAX_NODES: usize = 4096;
const SAMPLES: usize = 3;
const DEPTH_MSG: &str = "json nesting deeper than";

struct Ctx<'a> {
    nodes: usize,
    max_depth: usize,
    ticker: Ticker<'a>,
    /// Why the walk stopped early (depth or time); the serde error only carries a message.
    stop: Option<TransformError>,
}

impl Ctx<'_> {
    /// Counts one value; Err once the deadline passed.
    fn tick<E: serde::de::Error>(&mut self) -> Result<(), E> {
        match self.ticker.tick() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stop = Some(e);
                Err(E::custom("stopped"))
            }
        }
    }

    fn deeper<E: serde::de::Error>(&mut self, depth: usize) -> Result<(), E> {
        if depth < self.max_depth {
            return Ok(());
        }
        self.stop = Some(TransformError::Limit(format!(
            "{DEPTH_MSG} {}",
            self.max_depth
        )));
        Err(E::custom("stopped"))
    }
}

struct Seed<'a, 'l> {
    node: &'a mut Node,
    ctx: &'a mut Ctx<'l>,
    depth: usize,
}

impl Node {
    fn number(&mut self, x: f64, int: bool) {
        self.nums.add(x, int);
    }

    /// The one scalar seen here, when this position held exactly one value.
    fn single_value(&self) -> Option<Value> {
        if self.count != 1 || self.objects + self.arrays > 0 {
            return None;
        }
        Some(if self.nulls == 1 {
            Value::Null
        } else if self.trues == 1 {
            json!(true)
        } else if self.falses == 1 {
            json!(false)
        } else if self.strings == 1 {
            json!(self.samples.first()?)
        } else {
            round(self.nums.min)
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.ctx.tick()?;
        self.node.count += 1;
        if v {
            self.node.trues += 1;
        } else {
            self.node.falses += 1;
        }
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.ctx.tick()?;
        self.node.count += 1;
        self.node.number(v as f64, true);
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.ctx.tick()?;
        self.node.count += 1;
        self.node.number(v as f64, true);
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.ctx.tick()?;
        self.node.count += 1;
        self.node.number(v, false);
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.ctx.tick()?;
        let n = &mut *self.node;
        n.count += 1;
        n.strings += 1;
        n.max_len = n.max_len.max(v.chars().count());
        if n.samples.len() < SAMPLES {
            let v = clip_ellipsis(v, 60);
            if !n.samples.contains(&v) {
                n.samples.push(v);
            }
        }
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.ctx.tick()?;
        self.node.count += 1;
        self.node.nulls += 1;
        Ok(())
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.ctx.tick()?;
        self.node.count += 1;
        self.node.nulls += 1;
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.ctx.tick()?;
        self.ctx.deeper(self.depth)?;
        let ctx = self.ctx;
        let node = self.node;
        if node.elem.is_none() && ctx.nodes < MAX_NODES {
            ctx.nodes += 1;
            node.elem = Some(Box::default());
        }
        let mut len = 0u64;
        loop {
            let more = match node.elem.as_deref_mut() {
                Some(elem) => seq
                    .next_element_seed(Seed {
                        node: elem,
                        ctx: &mut *ctx,
                        depth: self.depth + 1,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                break;
            }
            len += 1;
        }
        if node.arrays == 0 {
            node.len_min = len;
            node.len_max = len;
        }
        node.len_min = node.len_min.min(len);
        node.len_max = node.len_max.max(len);
        node.arrays += 1;
        node.count += 1;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.ctx.tick()?;
        self.ctx.deeper(self.depth)?;
        let ctx = self.ctx;
        let node = self.node;
        while let Some(key) = map.next_key::<String>()? {
            let pos = node.keys.iter().position(|(k, _)| *k == key);
            let pos = match pos {
                Some(p) => Some(p),
                None if node.keys.len() < MAX_KEYS && ctx.nodes < MAX_NODES => {
                    ctx.nodes += 1;
                    node.keys.push((key, Node::default()));
                    Some(node.keys.len() - 1)
                }
                None => None,
            };
            match pos {
                Some(p) => map.next_value_seed(Seed {
                    node: &mut node.keys[p].1,
                    ctx: &mut *ctx,
                    depth: self.depth + 1,
                })?,
                None => {
                    node.other_keys += 1;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        node.objects += 1;
        node.count += 1;
        Ok(())
    }
}

fn round(x: f64) -> Value {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        let r = (x * 1000.0).round() / 1000.0;
        serde_json::Number::from_f64(r)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

fn node_value(n: &Node) -> Value {
    let mut types = Vec::new();
    let mut m = Map::new();
    if n.objects > 0 {
        types.push("object");
    }
    if n.arrays > 0 {
        types.push("array");
    }
    if n.strings > 0 {
        types.push("string");
    }
    if n.nums.ints > 0 && n.nums.floats == 0 {
        types.push("integer");
    } else if n.nums.count() > 0 {
        types.push("number");
    }
    if n.trues + n.falses > 0 {
        types.push("boolean");
    }
    if n.nulls > 0 {
        types.push("null");
    }
    m.insert(
        "type".into(),
        if types.len() == 1 {
            json!(types[0])
        } else {
            json!(types)
        },
    );
    if let Some(v) = n.single_value() {
        m.insert("value".into(), v);
        return Value::Object(m);
    }
    if n.count > 1 {
        m.insert("count".into(), json!(n.count));
    }
    if n.nulls > 0 && types.len() > 1 {
        m.insert("nulls".into(), json!(n.nulls));
    }
    if n.nums.count() > 0 {
        m.insert("min".into(), round(n.nums.min));
        m.insert("max".into(), round(n.nums.max));
        if let Some(mean) = n.nums.mean().filter(|_| n.nums.count() > 1) {
            m.insert("mean".into(), round(mean));
        }
    }
    if n.trues + n.falses > 0 && n.count > 1 {
        m.insert("true".into(), json!(n.trues));
        m.insert("false".into(), json!(n.falses));
    }
    if n.strings > 0 {
        m.insert("samples".into(), json!(n.samples));
        m.insert("max_length".into(), json!(n.max_len));
    }
    if n.arrays > 0 {
        if n.len_min == n.len_max {
            m.insert("length".into(), json!(n.len_min));
        } else {
            m.insert("length".into(), json!({"min": n.len_min, "max": n.len_max}));
        }
        if let Some(e) = n.elem.as_deref().filter(|e| e.count > 0) {
            m.insert("items".into(), node_value(e));
        }
    }
    if n.objects > 0 {
        let keys: Map<String, Value> = n
            .keys
            .iter()
            .map(|(k, v)| (k.clone(), node_value(v)))
            .collect();
        m.insert("keys".into(), Value::Object(keys));
        if n.other_keys > 0 {
            m.insert("other_keys".into(), json!(n.other_keys));
        }
    }
    Value::Object(m)
}

fn json_io_err(e: serde_json::Error) -> TransformError {
    TransformError::Io(std::io::Error::other(e.to_string()))
}

/// The shape document of a JSON file; invalid or over-long JSON gives a JSON fallback that
/// says why and shows the opening; nesting past the depth limit or running past the deadline
/// is a `Limit` error. Streams the file through the visitor; invalid UTF-8 is read lossily.
fn json_shape(input: &Input<'_>, limits: &Limits) -> Result<Value, TransformError> {
    let size = file_len(input.path)?;
    let reader = BufReader::new(LossyUtf8::new(
        File::open(input.path)?.take(limits.max_text_scan_bytes),
    ));
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut root = Node::default();
    let mut ctx = Ctx {
        nodes: 1,
        max_depth: limits.max_json_depth,
        ticker: Ticker::new(limits),
        stop: None,
    };
    let parsed = Seed {
        node: &mut root,
        ctx: &mut ctx,
        depth: 0,
    }
    .deserialize(&mut de);
    let parsed = parsed.and_then(|_| de.end());
    if let Some(stop) = ctx.stop {
        return Err(stop);
    }
    match parsed {
        Ok(()) => Ok(json!({
            "summary": "json shape",
            "source": input.name,
            "bytes": size,
            "shape": node_value(&root),
        })),
        Err(e) if e.is_io() => Err(json_io_err(e)),
        // serde_json's own recursion limit (128) guards values skipped with IgnoredAny.
        Err(e) if e.to_string().contains("recursion limit exceeded") => {
            Err(TransformError::Limit(format!(
                "json nesting deeper than {}",
                limits.max_json_depth.min(128)
            )))
        }
        Err(e) => {
            let (head, _) = super::util::read_bounded(input.path, 1024)?;
            let reason = if size > limits.max_text_scan_bytes {
                format!(
                    "larger than the scan limit of {} bytes",
                    limits.max_text_scan_bytes
                )
            } else {
                format!("invalid json: {e}")
            };
            Ok(json!({
                "summary": "json shape unavailable",
                "source": input.name,
                "bytes": size,
                "reason": reason,
                "opening": String::from_utf8_lossy(&head),
            }))
        }
    }
}

/// A stage-1 JSON summary read back for compaction (at most [`SUMMARY_READ_CAP`] bytes;
/// serde_json's recursion limit bounds its nesting).
fn read_summary_json(path: &Path) -> Result<Value, TransformError> {
    let (data, truncated) = super::util::read_bounded(path, SUMMARY_READ_CAP)?;
    match serde_json::from_slice::<Value>(&data) {
        Ok(v) if !truncated => Ok(v),
        _ => summary_unreadable(&data),
    }
}

/// The fallback for a stage-1 input that is not a readable summary of ours.
fn summary_unreadable(data: &[u8]) -> Result<Value, TransformError> {
    Ok(json!({
        "summary": "json summary unreadable",
        "opening": String::from_utf8_lossy(clip_bytes(data, 512)),
    }))
}

fn clip_bytes(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

struct Prune {
    depth: usize,
    keys: usize,
    items: usize,
    chars: usize,
}

fn prune(v: &Value, p: &Prune, depth: usize) -> Value {
    match v {
        Value::Object(m) => {
            if depth >= p.depth {
                return json!(format!("{{{} keys}}", m.len()));
            }
            let mut out: Map<String, Value> = m
                .iter()
                .take(p.keys)
                .map(|(k, v)| (clip(k, p.chars).to_string(), prune(v, p, depth + 1)))
                .collect();
            if m.len() > p.keys {
                out.insert(
                    "...".into(),
                    json!(format!("{} more keys", m.len() - p.keys)),
                );
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            if depth >= p.depth {
                return json!(format!("[{} items]", a.len()));
            }
            let mut out: Vec<Value> = a
                .iter()
                .take(p.items)
                .map(|v| prune(v, p, depth + 1))
                .collect();
            if a.len() > p.items {
                out.push(json!(format!("... {} more", a.len() - p.items)));
            }
            Value::Array(out)
        }
        Value::String(s) => json!(clip_ellipsis(s, p.chars)),
        other => other.clone(),
    }
}

/// Serializes `v`, pruning harder until it fits `budget`. The flag says whether anything was cut.
fn prune_to_fit(v: &Value, budget: usize, pretty: bool) -> (String, bool) {
    let ser = |v: &Value| {
        if pretty {
            serde_json::to_string_pretty(v).unwrap_or_default()
        } else {
            serde_json::to_string(v).unwrap_or_default()
        }
    };
    let full = ser(v);
    if full.len() <= budget {
        return (full, false);
    }
    let steps = [
        (16, 64, 32, 120),
        (12, 32, 8, 80),
        (10, 16, 4, 60),
        (8, 12, 3, 40),
        (6, 8, 2, 30),
        (5, 6, 1, 24),
        (4, 4, 1, 16),
        (3, 3, 1, 12),
        (2, 3, 0, 12),
        (1, 2, 0, 8),
    ];
    for (depth, keys, items, chars) in steps {
        let p = Prune {
            depth,
            keys,
            items,
            chars,
        };
        let s = serde_json::to_string(&prune(v, &p, 0)).unwrap_or_default();
        if s.len() <= budget {
            return (s, true);
        }
    }
    (
        r#"{"summary":"json shape","pruned":true}"#.to_string(),
        true,
    )
}

// ---------------------------------------------------------------------------------------------
// Logs

/// The timestamp a log line starts with ("2026-03-01T00:00:00.034000", "[2026-03-01 10:00:00]"),
/// if any.
pub(crate) fn log_timestamp(line: &str) -> Option<&str> {
    let s = line.trim_start_matches('[');
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(|c| c.is_ascii_digit());
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let date = (0..4).all(digit)
        && at(4, b'-')
        && digit(5)
        && digit(6)
        && at(7, b'-')
        && digit(8)
        && digit(9);
    if !date {
        return None;
    }
    let time = (at(10, b'T') || at(10, b' '))
        && digit(11)
        && digit(12)
        && at(13, b':')
        && digit(14)
        && digit(15);
    let mut end = if time { 16 } else { 10 };
    while end < b.len()
        && (b[end].is_ascii_digit() || matches!(b[end], b':' | b'.' | b',' | b'Z' | b'+' | b'-'))
    {
        end += 1;
    }
    Some(&s[..end])
}

const LEVELS: [&str; 7] = [
    "FATAL", "CRITICAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE",
];

/// The level word of a log line, looked for among its first tokens.
pub(crate) fn log_level(line: &str) -> Option<&'static str> {
    log_level_at(line).map(|(l, _)| l)
}

/// The level and the byte offset just past its token.
fn log_level_at(line: &str) -> Option<(&'static str, usize)> {
    let mut pos = 0;
    for (n, tok) in line.split(' ').enumerate() {
        if n > 6 {
            break;
        }
        let word = tok.trim_matches(|c: char| matches!(c, '[' | ']' | ':' | '<' | '>' | '(' | ')'));
        let upper = word.to_ascii_uppercase();
        let level = match upper.as_str() {
            "WARNING" => Some("WARN"),
            "ERR" => Some("ERROR"),
            u => LEVELS.iter().find(|l| **l == u).copied(),
        };
        if let Some(l) = level {
            return Some((l, pos + tok.len()));
        }
        pos += tok.len() + 1;
    }
    None
}

/// Masks numbers and hex ids: "worker-8 took 664ms id=0x1f3a" -> "worker-# took #ms id=#".
pub(crate) fn mask_ids(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_alphanumeric() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let run: String = chars[start..i].iter().collect();
        let has_digit = run.bytes().any(|b| b.is_ascii_digit());
        let hex_id = has_digit
            && (run.starts_with("0x")
                || (run.len() >= 8 && run.bytes().all(|b| b.is_ascii_hexdigit())));
        if hex_id {
            out.push('#');
            continue;
        }
        let mut in_digits = false;
        for c in run.chars() {
            if c.is_ascii_digit() {
                if !in_digits {
                    out.push('#');
                }
                in_digits = true;
            } else {
                out.push(c);
                in_digits = false;
            }
        }
    }
    out
}

/// The masked message of an ERROR/WARN line: everything after the level token.
pub fn log_message(line: &str) -> Option<(&'static str, String)> {
    let (level, end) = log_level_at(line)?;
    if !matches!(level, "ERROR" | "WARN" | "FATAL" | "CRITICAL") {
        return None;
    }
    let msg = clip(line[end..].trim(), 400);
    Some((level, mask_ids(msg)))
}

const MAX_DISTINCT: usize = 10_000;

fn log_summary(
    input: &Input<'_>,
    limits: &Limits,
    budget: usize,
) -> Result<String, TransformError> {
    let mut r = LineReader::open(input.path, limits.max_text_scan_bytes)?;
    let mut first: Vec<String> = Vec::new();
    let mut last: VecDeque<String> = VecDeque::new();
    let mut levels: HashMap<&'static str, u64> = HashMap::new();
    let mut distinct: HashMap<(&'static str, String), (u64, u64)> = HashMap::new();
    let mut dropped_distinct = 0u64;
    let (mut t_first, mut t_last): (Option<String>, Option<String>) = (None, None);
    let mut ticker = Ticker::new(limits);
    while let Some(line) = r.next_line()? {
        ticker.tick()?;
        let n = r.lines;
        if let Some(ts) = log_timestamp(&line) {
            if t_first.is_none() {
                t_first = Some(ts.to_string());
            }
            t_last = Some(ts.to_string());
        }
        if let Some(l) = log_level(&line) {
            *levels.entry(l).or_default() += 1;
        }
        if let Some((level, msg)) = log_message(&line) {
            let full = distinct.len() >= MAX_DISTINCT;
            match distinct.get_mut(&(level, msg.clone())) {
                Some(e) => e.0 += 1,
                None if !full => {
                    distinct.insert((level, msg), (1, n));
                }
                None => dropped_distinct += 1,
            }
        }
        let kept = clip_ellipsis(&line, 300);
        if first.len() < 5 {
            first.push(kept);
        } else {
            last.push_back(kept);
            if last.len() > 5 {
                last.pop_front();
            }
        }
    }
    let mut s = String::new();
    let _ = write!(
        s,
        "{LEHDR}: {}: {} lines",
        input.name,
        r.lines,
        LEHDR = LOG_HEADER
    );
    if let (Some(a), Some(b)) = (&t_first, &t_last) {
        let _ = write!(s, ", from {a} to {b}");
    }
    if r.truncated {
        let _ = write!(s, " (first {} bytes scanned)", r.bytes_read());
    }
    s.push('\n');
    let mut lv: Vec<_> = levels.into_iter().collect();
    lv.sort_by_key(|(l, _)| LEVELS.iter().position(|x| x == l));
    let lv: Vec<String> = lv.iter().map(|(l, c)| format!("{l}={c}")).collect();
    let _ = writeln!(
        s,
        "# levels: {}",
        if lv.is_empty() {
            "none found".into()
        } else {
            lv.join(" ")
        }
    );
    let mut d: Vec<_> = distinct.into_iter().collect();
    d.sort_by(|a, b| {
        let rank = |l: &str| LEVELS.iter().position(|x| *x == l);
        rank(a.0 .0)
            .cmp(&rank(b.0 .0))
            .then(b.1 .0.cmp(&a.1 .0))
            .then(a.1 .1.cmp(&b.1 .1))
    });
    // First and last lines are kept whole; the distinct messages get the rest of the budget,
    // most important first, so a prefix of this text is also the best shorter digest.
    let mut context = String::new();
    let _ = writeln!(context, "# first {} lines", first.len());
    for l in &first {
        let _ = writeln!(context, "{l}");
    }
    if !last.is_empty() {
        let _ = writeln!(context, "# last {} lines", last.len());
        for l in &last {
            let _ = writeln!(context, "{l}");
        }
    }
    if !d.is_empty() {
        let _ = writeln!(
            s,
            "# {} distinct error/warning messages (ids masked as #), most frequent first",
            d.len()
        );
        let room = budget.saturating_sub(s.len() + context.len() + 80);
        let mut shown = 0usize;
        let mut used = 0usize;
        for ((level, msg), (count, _)) in &d {
            let line = format!("{level:<5} (x{count}) {msg}\n");
            if used + line.len() > room {
                break;
            }
            used += line.len();
            s.push_str(&line);
            shown += 1;
        }
        if shown < d.len() {
            let _ = writeln!(
                s,
                "# {} less frequent distinct messages omitted",
                d.len() - shown
            );
        }
        if dropped_distinct > 0 {
            let _ = writeln!(
                s,
                "# {dropped_distinct} more lines with further distinct messages"
            );
        }
    }
    s.push_str(&context);
    Ok(s)
}

/// Stage 2 from a log digest: its header and level counts, the first and last line, then the
/// distinct messages, most important first, as many as fit.
fn compact_log(stage1: &str, budget: usize) -> String {
    let (mut head, mut messages) = (String::new(), String::new());
    let (mut first, mut last): (Option<&str>, Option<&str>) = (None, None);
    #[derive(PartialEq)]
    enum Part {
        Head,
        Messages,
        First,
        Last,
    }
    let mut part = Part::Head;
    for l in stage1.lines() {
        if l.starts_with("# first ") {
            part = Part::First;
        } else if l.starts_with("# last ") {
            part = Part::Last;
        } else if part == Part::Head && l.starts_with("# ") && l.contains(" distinct ") {
            part = Part::Messages;
            let _ = writeln!(messages, "{l}");
        } else {
            match part {
                Part::Head => {
                    let _ = writeln!(head, "{l}");
                }
                Part::Messages => {
                    let _ = writeln!(messages, "{l}");
                }
                Part::First => first = first.or(Some(l)),
                Part::Last => last = Some(l),
            }
        }
    }
    for (label, line) in [("first", first), ("last", last)] {
        if let Some(l) = line {
            let _ = writeln!(head, "# {label} line\n{}", clip_ellipsis(l, 300));
        }
    }
    fit_lines(&(head + &messages), budget)
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// Leading spaces of a line, when there are at most three (more makes an indented code block).
fn block_indent(line: &str) -> Option<&str> {
    let t = line.trim_start_matches(' ');
    (line.len() - t.len() <= 3).then_some(t)
}

/// The level of an ATX heading line ("## Title").
fn heading_level(line: &str) -> Option<usize> {
    let t = block_indent(line)?;
    let hashes = t.bytes().take_while(|&b| b == b'#').count();
    let after = t.as_bytes().get(hashes);
    ((1..=6).contains(&hashes) && matches!(after, None | Some(b' ') | Some(b'\t')))
        .then_some(hashes)
}

/// The level of a setext underline ("===" is 1, "---" is 2); it only makes a heading when it
/// directly follows paragraph text.
fn setext_level(line: &str) -> Option<usize> {
    let t = block_indent(line)?.trim_end();
    let c = *t.as_bytes().first()?;
    let level = match c {
        b'=' => 1,
        b'-' => 2,
        _ => return None,
    };
    t.bytes().all(|b| b == c).then_some(level)
}

/// An opening code fence: its character and length (three or more backticks or tildes).
fn fence_open(line: &str) -> Option<(u8, usize)> {
    let t = block_indent(line)?;
    let c = *t.as_bytes().first()?;
    if c != b'`' && c != b'~' {
        return None;
    }
    let n = t.bytes().take_while(|&b| b == c).count();
    // A backtick fence's info string may not contain backticks.
    let info_ok = c == b'~' || !t[n..].contains('`');
    (n >= 3 && info_ok).then_some((c, n))
}

/// Whether `line` closes a fence opened with (`c`, `n`): the same character, at least as long,
/// nothing but spaces after it.
fn fence_closes(line: &str, (c, n): (u8, usize)) -> bool {
    let Some(t) = block_indent(line) else {
        return false;
    };
    let run = t.bytes().take_while(|&b| b == c).count();
    run >= n && t[run..].trim().is_empty()
}

const MAX_SECTIONS: usize = 2000;
/// Characters of a paragraph kept while reading (a summary shows at most 400).
const PARA_KEEP: usize = 600;

/// Outline and first paragraphs, as sections of (heading line, first paragraph).
struct Outline {
    sections: Vec<(Option<String>, String)>,
    /// The paragraph being read: its text so far and whether it has any line.
    para: String,
    in_para: bool,
    extra_headings: u64,
}

impl Outline {
    fn end_para(&mut self) {
        if self.in_para {
            let cur = &mut self.sections.last_mut().expect("sections is never empty").1;
            if cur.is_empty() {
                *cur = std::mem::take(&mut self.para);
            }
        }
        self.para.clear();
        self.in_para = false;
    }

    fn heading(&mut self, line: String) {
        if self.sections.len() >= MAX_SECTIONS {
            self.extra_headings += 1;
        } else {
            self.sections
                .push((Some(clip_ellipsis(&line, 200)), String::new()));
        }
    }

    fn text(&mut self, line: &str) {
        let line = squash_ws(line);
        if self.para.len() < PARA_KEEP {
            if !self.para.is_empty() {
                self.para.push(' ');
            }
            let room = PARA_KEEP - self.para.len().min(PARA_KEEP);
            self.para.push_str(clip(&line, room));
        }
        self.in_para = true;
    }
}

fn markdown_summary(path: &Path, limits: &Limits, budget: usize) -> Result<String, TransformError> {
    let mut r = LineReader::open(path, limits.max_text_scan_bytes)?;
    let mut o = Outline {
        sections: vec![(None, String::new())],
        para: String::new(),
        in_para: false,
        extra_headings: 0,
    };
    let mut fence: Option<(u8, usize)> = None;
    let mut ticker = Ticker::new(limits);
    while let Some(line) = r.next_line()? {
        ticker.tick()?;
        if let Some(f) = fence {
            if fence_closes(&line, f) {
                fence = None;
            }
            continue;
        }
        if let Some(f) = fence_open(&line) {
            o.end_para();
            fence = Some(f);
            continue;
        }
        if let Some(level) = setext_level(&line).filter(|_| o.in_para) {
            let title = std::mem::take(&mut o.para);
            o.in_para = false;
            o.heading(format!("{} {title}", "#".repeat(level)));
            continue;
        }
        if heading_level(&line).is_some() {
            o.end_para();
            o.heading(line.trim().to_string());
            continue;
        }
        if line.trim().is_empty() || setext_level(&line).is_some() {
            // A blank line, or a "---" thematic break with no paragraph above it.
            o.end_para();
            continue;
        }
        o.text(&line);
    }
    o.end_para();
    let (sections, extra_headings) = (o.sections, o.extra_headings);
    let tail = if extra_headings > 0 {
        format!("\n<!-- {extra_headings} more headings -->\n")
    } else {
        String::new()
    };
    // Every heading first; then each section's paragraph, shorter and shorter, while it fits.
    let outline: usize = sections
        .iter()
        .flat_map(|(h, _)| h)
        .map(|h| h.len() + 1)
        .sum();
    for para_chars in [400usize, 200, 100] {
        let mut room = budget.saturating_sub(outline + tail.len());
        let mut s = String::new();
        let mut all_in = true;
        for (h, p) in &sections {
            if let Some(h) = h {
                let _ = writeln!(s, "{h}");
            }
            if !p.is_empty() {
                let para = format!("\n{}\n\n", clip_ellipsis(p, para_chars));
                if para.len() <= room {
                    room -= para.len();
                    s.push_str(&para);
                } else {
                    all_in = false;
                }
            }
        }
        s.push_str(&tail);
        if s.len() <= budget && (all_in || para_chars == 100) {
            return Ok(s);
        }
    }
    let outline_only: String = sections
        .iter()
        .flat_map(|(h, _)| h)
        .map(|h| format!("{h}\n"))
        .collect();
    Ok(fit_lines(&(outline_only + &tail), budget))
}

// ---------------------------------------------------------------------------------------------
// Plain text

const STOP: &[&str] = &[
    "the", "and", "for", "that", "this", "with", "are", "was", "not", "but", "have", "from", "you",
    "any", "all", "can", "will", "has", "its", "our", "their", "they", "been", "which", "such",
    "these", "those", "into", "than", "then", "there", "other", "shall", "may",
];

fn distinct_terms(s: &str) -> usize {
    let mut seen = HashSet::new();
    for w in s.split(|c: char| !c.is_alphanumeric()) {
        if w.chars().count() >= 3 {
            let w = w.to_lowercase();
            if !STOP.contains(&w.as_str()) {
                seen.insert(w);
            }
        }
    }
    seen.len()
}

struct Sentences {
    opening: Vec<String>,
    opening_len: usize,
    opening_budget: usize,
    closing: VecDeque<(u64, String)>,
    closing_len: usize,
    closing_budget: usize,
    top: BinaryHeap<Reverse<(usize, Reverse<u64>, String)>>,
    top_n: usize,
    count: u64,
}

impl Sentences {
    fn push(&mut self, raw: &str) {
        let s = clip_ellipsis(&squash_ws(raw), 400);
        if s.is_empty() {
            return;
        }
        self.count += 1;
        let idx = self.count;
        // The opening is the run of first sentences that fits; it closes at the first misfit.
        if self.closing.is_empty()
            && (self.opening_len + s.len() <= self.opening_budget || self.opening.is_empty())
        {
            self.opening_len += s.len() + 1;
            self.opening.push(s);
            return;
        }
        self.closing_len += s.len() + 1;
        self.closing.push_back((idx, s));
        while self.closing_len > self.closing_budget && self.closing.len() > 1 {
            let (i, old) = self.closing.pop_front().expect("closing has more than one");
            self.closing_len -= old.len() + 1;
            self.top
                .push(Reverse((distinct_terms(&old), Reverse(i), old)));
            if self.top.len() > self.top_n {
                self.top.pop();
            }
        }
    }
}

fn plain_summary(
    path: &Path,
    name: &str,
    limits: &Limits,
    budget: usize,
) -> Result<String, TransformError> {
    let mut r = LineReader::open(path, limits.max_text_scan_bytes)?.split_long_lines();
    let mut st = Sentences {
        opening: Vec::new(),
        opening_len: 0,
        opening_budget: budget / 5,
        closing: VecDeque::new(),
        closing_len: 0,
        closing_budget: budget / 8,
        top: BinaryHeap::new(),
        top_n: 64,
        count: 0,
    };
    let mut cur = String::new();
    let mut ticker = Ticker::new(limits);
    while let Some(line) = r.next_line()? {
        ticker.tick()?;
        if line.trim().is_empty() {
            st.push(&cur);
            cur.clear();
            continue;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&line);
        // Split complete sentences (ending in . ! or ? before a space, longer than 20 bytes)
        // off the buffer in one pass.
        let mut start = 0;
        for (i, c) in cur.char_indices() {
            if matches!(c, '.' | '!' | '?') && i - start > 20 && cur[i + 1..].starts_with(' ') {
                st.push(&cur[start..=i]);
                start = i + 1;
            }
        }
        cur.drain(..start);
        if cur.len() > 2000 {
            st.push(&cur);
            cur.clear();
        }
    }
    st.push(&cur);
    let header = format!(
        "{PLAIN_HEADER}{}: {} lines, {} sentences{}]",
        clip(name, 200),
        r.lines,
        st.count,
        if r.truncated {
            ", scan limit reached"
        } else {
            ""
        }
    );
    let mut key: Vec<(u64, String)> = st
        .top
        .into_iter()
        .map(|Reverse((_, Reverse(i), t))| (i, t))
        .collect();
    key.sort();
    let closing: Vec<String> = st.closing.into_iter().map(|(_, c)| c).collect();
    Ok(render_plain(
        &header,
        &st.opening,
        key.into_iter().map(|(_, t)| t).collect(),
        &closing,
        budget,
    ))
}

/// Header, opening, the key sentences that fit (most distinct terms first, shown in their
/// original order; `key` is in original order) and closing, within `budget` bytes. The opening
/// and closing get at most a fifth of the budget each.
fn render_plain(
    header: &str,
    opening: &[String],
    key: Vec<String>,
    closing: &[String],
    budget: usize,
) -> String {
    let part = budget / 5;
    let mut s = format!("{header}\n[opening]\n");
    let mut used = 0;
    for (i, o) in opening.iter().enumerate() {
        if i > 0 && used + o.len() + 1 > part {
            break;
        }
        let o = clip_ellipsis(o, part.saturating_sub(1).max(40));
        used += o.len() + 1;
        let _ = writeln!(s, "{o}");
    }
    let mut tail = String::new();
    let mut used = 0;
    let mut kept = Vec::new();
    for c in closing.iter().rev() {
        if used + c.len() + 1 > part {
            break;
        }
        used += c.len() + 1;
        kept.push(c);
    }
    if !kept.is_empty() {
        tail.push_str("[closing]\n");
        for c in kept.iter().rev() {
            let _ = writeln!(tail, "{c}");
        }
    }
    let room = budget.saturating_sub(s.len() + tail.len() + "[key sentences]\n".len());
    let mut ranked: Vec<(usize, usize)> = key
        .iter()
        .enumerate()
        .map(|(i, t)| (distinct_terms(t), i))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut chosen = Vec::new();
    let mut used = 0;
    for (_, i) in ranked {
        if used + key[i].len() < room {
            used += key[i].len() + 1;
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    if !chosen.is_empty() {
        s.push_str("[key sentences]\n");
        for i in chosen {
            let _ = writeln!(s, "{}", key[i]);
        }
    }
    s.push_str(&tail);
    fit_lines(&s, budget)
}

/// Stage 2 from a stage-1 plain summary: the same parts, re-chosen for the smaller budget.
fn compact_plain(stage1: &str, budget: usize) -> String {
    let mut lines = stage1.lines();
    let header = lines.next().unwrap_or_default();
    let (mut opening, mut key, mut closing) = (Vec::new(), Vec::new(), Vec::new());
    let mut part = &mut opening;
    for l in lines {
        match l {
            "[opening]" => part = &mut opening,
            "[key sentences]" => part = &mut key,
            "[closing]" => part = &mut closing,
            _ => part.push(l.to_string()),
        }
    }
    render_plain(header, &opening, key, &closing, budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::{apply as run, Kind};

    fn run_on(
        bytes: &[u8],
        name: &str,
        format: &str,
        target: u8,
    ) -> Result<(Produced, Vec<u8>), TransformError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = dir.path().join("out");
        let input = Input {
            path: &p,
            name,
            kind: Kind::Text,
            format,
            stage: 0,
        };
        let prod = run(target, &input, &out, &Limits::default())?;
        Ok((prod, std::fs::read(&out).unwrap()))
    }

    #[test]
    fn masks_ids() {
        assert_eq!(
            mask_ids("[worker-8] took 664ms id=0x1f3a v1"),
            "[worker-#] took #ms id=# v#"
        );
        assert_eq!(
            mask_ids("req deadbeef42 host=10.0.0.1"),
            "req # host=#.#.#.#"
        );
    }

    #[test]
    fn deep_json_is_limit_error_quickly() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let t = std::time::Instant::now();
        let r = run_on(deep.as_bytes(), "deep.json", "application/json", 1);
        assert!(
            matches!(r, Err(TransformError::Limit(_))),
            "{:?}",
            r.map(|x| x.0)
        );
        let deep = "{\"a\":".repeat(100_000);
        assert!(run_on(deep.as_bytes(), "deep.json", "application/json", 2).is_err());
        assert!(t.elapsed().as_secs() < 5);
    }

    #[test]
    fn invalid_json_and_utf8_fall_back() {
        let (p, out) = run_on(b"{\"a\": [1, 2,", "bad.json", "application/json", 1).unwrap();
        assert_eq!(p.format, "application/json");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v["reason"].as_str().unwrap().contains("invalid"));
        let mut junk = b"caf\xe9 au lait. ".repeat(500);
        junk.extend_from_slice(b"\xff\xfe end.");
        let (_, out) = run_on(&junk, "j.txt", "text/plain", 1).unwrap();
        assert!(out.len() < junk.len());
        assert!(String::from_utf8(out).is_ok());
    }

    #[test]
    fn empty_text_files() {
        for (name, f) in [
            ("e.json", "application/json"),
            ("e.log", MIME_LOG),
            ("e.md", "text/markdown"),
            ("e.txt", "text/plain"),
        ] {
            for t in [1, 2] {
                let r = run_on(b"", name, f, t);
                if let Ok((p, out)) = r {
                    if p.format == "application/json" {
                        serde_json::from_slice::<Value>(&out).unwrap();
                    }
                }
            }
        }
    }

    #[test]
    fn json_shape_counts_and_types() {
        let doc = br#"{"items":[{"id":1,"n":"a"},{"id":2,"n":"b","x":null}],"ok":true}"#;
        let (_, out) = run_on(doc, "s.json", "application/json", 1).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let items = &v["shape"]["keys"]["items"];
        assert_eq!(items["length"], 2);
        assert_eq!(items["items"]["keys"]["id"]["type"], "integer");
        assert_eq!(items["items"]["keys"]["id"]["max"], 2);
    }

    #[test]
    fn log_with_many_distinct_errors_keeps_context() {
        let mut log = String::new();
        let words = [
            "alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "zeta",
        ];
        for i in 0..3000usize {
            let (a, b, c) = (words[i % 8], words[i / 8 % 8], words[i / 64 % 8]);
            log.push_str(&format!(
                "2026-01-01 10:00:{:02} ERROR failed {a} {b} {c} step\n",
                i % 60
            ));
            log.push_str(&format!("2026-01-01 10:00:{:02} INFO ok {i}\n", i % 60));
        }
        let (_, out) = run_on(log.as_bytes(), "x.log", MIME_LOG, 1).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.len() <= STAGE1_STRUCT_BUDGET);
        assert!(out.contains("# levels: ERROR=3000 INFO=3000"), "{out}");
        assert!(out.contains("# first 5 lines") && out.contains("# last 5 lines"));
        assert!(out.contains("failed alpha alpha alpha step"));
        let (_, out2) = run_on(log.as_bytes(), "x.log", MIME_LOG, 2).unwrap();
        assert!(out2.len() <= STAGE2_BUDGET && out2.starts_with(b"# log summary"));
    }

    #[test]
    fn json_keys_keep_document_order_and_single_values() {
        let doc = br#"{"zeta":1,"alpha":{"y":"a","b":null},"mid":[true,false]}"#;
        let (_, out) = run_on(doc, "o.json", "application/json", 1).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let keys: Vec<&String> = v["shape"]["keys"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["zeta", "alpha", "mid"]);
        let inner: Vec<&String> = v["shape"]["keys"]["alpha"]["keys"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(inner, ["y", "b"]);
        assert_eq!(v["shape"]["keys"]["zeta"]["value"], 1);
        assert_eq!(v["shape"]["keys"]["alpha"]["keys"]["y"]["value"], "a");
        assert_eq!(v["shape"]["keys"]["mid"]["items"]["true"], 1);
    }

    #[test]
    fn json_with_invalid_utf8_is_summarised_lossily() {
        let doc = b"{\"name\": \"caf\xe9\", \"n\": [1, 2, 3]}";
        let (_, out) = run_on(doc, "l.json", "application/json", 1).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["summary"], "json shape", "{v}");
        assert_eq!(v["shape"]["keys"]["name"]["value"], "caf\u{FFFD}");
        assert_eq!(v["shape"]["keys"]["n"]["length"], 3);
    }

    #[test]
    fn lossy_reader_handles_sequences_split_across_reads() {
        // A reader that hands out one byte at a time splits every multi-byte sequence.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match self.0.split_first() {
                    Some((b, rest)) if !buf.is_empty() => {
                        buf[0] = *b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let input = "h\u{e9}llo \u{1F600}".as_bytes().to_vec();
        let mut bad = input.clone();
        bad.extend_from_slice(b"\xff!\xe2\x82");
        let mut out = String::new();
        LossyUtf8::new(OneByte(&bad))
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "h\u{e9}llo \u{1F600}\u{FFFD}!\u{FFFD}");
    }

    #[test]
    fn markdown_setext_headings_and_fences() {
        let md = "Title here\n==========\n\nIntro text.\n\nPart two\n--------\n\nBody two.\n\n\
                  ~~~~\n```\n# not a heading\n```\n~~~~\n\n---\n\n    # indented code\n\n\
                  ``` rust\n## also not\n`````\n\n### Real heading\nText under it.\n\n";
        let md = md.repeat(3);
        let (_, out) = run_on(md.as_bytes(), "s.md", "text/markdown", 1).unwrap();
        let out = String::from_utf8(out).unwrap();
        let headings: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            headings,
            ["# Title here", "## Part two", "### Real heading"].repeat(3),
            "{out}"
        );
        assert!(out.contains("Intro text.") && out.contains("Text under it."));
        assert!(!out.contains("not a heading") && !out.contains("also not"));
    }

    #[test]
    fn plain_stage2_from_stage1_keeps_the_parts() {
        let mut text = String::from("Opening words of the story begin here.\n\n");
        for i in 0..400 {
            text.push_str(&format!(
                "Sentence number {i} talks about topic{i} and subject{} in detail. ",
                i % 7
            ));
        }
        text.push_str("\n\nThe very last sentence closes it.\n");
        let (p1, s1) = run_on(text.as_bytes(), "t.txt", "text/plain", 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mid = dir.path().join("mid");
        std::fs::write(&mid, &s1).unwrap();
        let input = Input {
            path: &mid,
            name: "t.txt",
            kind: Kind::Text,
            format: &p1.format,
            stage: 1,
        };
        let out = dir.path().join("out");
        run(2, &input, &out, &Limits::default()).unwrap();
        let s2 = std::fs::read_to_string(&out).unwrap();
        assert!(s2.len() <= STAGE2_BUDGET, "{}", s2.len());
        assert!(s2.starts_with("[summary of t.txt: "), "{s2}");
        assert_eq!(s2.matches("[summary of").count(), 1, "{s2}");
        assert!(s2.contains("[opening]\nOpening words of the story begin here.\n"));
        assert!(
            s2.contains("[key sentences]\n") && s2.ends_with("The very last sentence closes it.\n"),
            "{s2}"
        );
    }

    #[test]
    fn markdown_outline_keeps_all_headings() {
        let mut md = String::from("Intro paragraph here.\n\n```\n# not a heading\n```\n");
        for i in 0..100 {
            md.push_str(&format!("## Section {i}\n\nBody of section {i} with some words.\nMore words.\n\nSecond para {i}.\n\n"));
        }
        let (p, out) = run_on(md.as_bytes(), "n.md", "text/markdown", 1).unwrap();
        assert_eq!(p.format, "text/markdown");
        let out = String::from_utf8(out).unwrap();
        for i in 0..100 {
            assert!(out.contains(&format!("## Section {i}\n")), "{i}");
        }
        assert!(out.contains("Body of section 7 with some words. More words."));
        assert!(!out.contains("Second para") && !out.contains("not a heading"));
    }
}
