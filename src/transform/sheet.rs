//! Spreadsheets: per-sheet snapshot (header, counts, column types and statistics, first rows) at
//! stage 1; the schema alone at stage 2. CSV/TSV stream through the `csv` crate (records
//! capped) and their summaries are valid CSV. Workbooks go through calamine and their summaries
//! are plain text: xlsx/xlsm cell by cell after a zip-bomb check; ods and xls, which calamine
//! expands into whole dense sheets, only after checks that bound that expansion. Dates come out
//! as ISO 8601 in the workbook's own date system (1900 or 1904).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use calamine::{Data, ExcelDateTime, Reader};

use super::detect::{MIME_ODS, MIME_TSV, MIME_XLS, MIME_XLSM, MIME_XLSX};
use super::util::{
    clip_ellipsis, ext, file_len, fit_lines, read_bounded, read_summary, write_out, NumStats,
    Ticker, SUMMARY_READ_CAP,
};
use super::xml::{walk, XmlEvent};
use super::{Encoding, Input, Limits, Produced, TransformError};

pub const SAMPLE_ROWS: usize = 20;
pub const STAGE2_BUDGET: usize = 2048;
/// Columns shown per sheet; wider sheets are cut with a note.
const MAX_COLUMNS: usize = 200;
const MAX_SHEETS: usize = 64;
/// Distinct text values tracked per column for the top-3 (later new values are not counted).
const MAX_TOP: usize = 512;
const CELL_CHARS: usize = 80;
/// Row labels of the schema part of a CSV summary; everything else is a sample row.
const SCHEMA_LABELS: [&str; 4] = ["column", "type", "rows", "empty"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
    Int,
    Float,
    Date,
    Text,
}

enum Val<'a> {
    Empty,
    Num(f64, bool),
    Date(String),
    Text(&'a str),
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

fn month_name(s: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let l = s.to_ascii_lowercase();
    if l.len() < 3 {
        return None;
    }
    let i = NAMES.iter().position(|n| l.starts_with(n))?;
    Some(i as u32 + 1)
}

/// The ISO form (YYYY-MM-DD, time kept when given) of a date in one of the common spellings:
/// ISO 8601 as is; 2024/03/01; 1-Mar-24 and 1 Mar 2024; 3/1/2024 (month first unless the first
/// number cannot be a month); 01.03.2024 (day first). Two-digit years: 69-99 are 19xx, the
/// rest 20xx (the POSIX pivot).
fn iso_date(s: &str) -> Option<String> {
    let valid =
        |y: i64, m: u32, d: u32| (1..=12).contains(&m) && (1..=days_in_month(y, m)).contains(&d);
    if super::text::log_timestamp(s).is_some_and(|t| t.len() == s.len() && !s.starts_with('[')) {
        let y = s[..4].parse().ok()?;
        return valid(y, s[5..7].parse().ok()?, s[8..10].parse().ok()?).then(|| s.to_string());
    }
    if s.len() > 20 {
        return None;
    }
    let sep = s.chars().find(|c| matches!(c, '/' | '-' | '.' | ' '))?;
    let parts: Vec<&str> = s.split(sep).collect();
    let [a, b, c] = parts[..] else {
        return None;
    };
    let num = |t: &str| -> Option<u32> {
        (!t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let year = |t: &str| -> Option<i64> {
        let y = i64::from(num(t)?);
        match t.len() {
            4 => Some(y),
            2 if y >= 69 => Some(1900 + y),
            2 => Some(2000 + y),
            _ => None,
        }
    };
    let (y, m, d) = match sep {
        '/' if a.len() == 4 => (year(a)?, num(b)?, num(c)?),
        '/' => {
            let (x, z) = (num(a)?, num(b)?);
            if x > 12 {
                (year(c)?, z, x)
            } else {
                (year(c)?, x, z)
            }
        }
        '-' | ' ' => (year(c)?, month_name(b)?, num(a)?),
        _ => (year(c)?, num(b)?, num(a)?),
    };
    valid(y, m, d).then(|| format!("{y:04}-{m:02}-{d:02}"))
}

fn classify(s: &str) -> Val<'_> {
    let t = s.trim();
    if t.is_empty() {
        return Val::Empty;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Val::Num(i as f64, true);
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() && t.bytes().any(|b| b.is_ascii_digit()) {
            return Val::Num(f, false);
        }
    }
    if let Some(d) = iso_date(t) {
        return Val::Date(d);
    }
    Val::Text(t)
}

/// An Excel date-time cell as ISO 8601, in the workbook's date system (calamine carries the
/// 1900/1904 flag in the value). Times of day alone (serial below 1) are HH:MM:SS; serials
/// outside years 1900..9999 stay numbers.
fn excel_datetime(dt: &ExcelDateTime) -> String {
    let v = dt.as_f64();
    if !(0.0..2_958_466.0).contains(&v) {
        return Column::num(v);
    }
    let (y, mo, d, h, mi, s, _) = dt.to_ymd_hms_milli();
    if v < 1.0 {
        format!("{h:02}:{mi:02}:{s:02}")
    } else if (h, mi, s) == (0, 0, 0) {
        format!("{y:04}-{mo:02}-{d:02}")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
    }
}

/// An Excel duration ([h]:mm:ss formats) as hours:minutes:seconds.
fn excel_duration(dt: &ExcelDateTime) -> String {
    let v = dt.as_f64();
    if !v.is_finite() || v.abs() > 1e9 {
        return Column::num(v);
    }
    let secs = (v * 86400.0).round() as i64;
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.abs();
    format!(
        "{sign}{}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[derive(Default)]
struct Column {
    name: String,
    /// False when the header cell was empty and the name is made up ("column7").
    named: bool,
    values: u64,
    empty: u64,
    nums: NumStats,
    dates: u64,
    texts: u64,
    date_min: Option<String>,
    date_max: Option<String>,
    top: HashMap<String, u64>,
}

impl Column {
    fn add(&mut self, v: Val<'_>) {
        match v {
            Val::Empty => {
                self.empty += 1;
                return;
            }
            Val::Num(x, int) => self.nums.add(x, int),
            Val::Date(d) => {
                self.dates += 1;
                if self.date_min.as_ref().is_none_or(|m| d < *m) {
                    self.date_min = Some(d.clone());
                }
                if self.date_max.as_ref().is_none_or(|m| d > *m) {
                    self.date_max = Some(d);
                }
            }
            Val::Text(t) => {
                self.texts += 1;
                let key = clip_ellipsis(t, 60);
                let full = self.top.len() >= MAX_TOP;
                match self.top.get_mut(&key) {
                    Some(c) => *c += 1,
                    None if !full => {
                        self.top.insert(key, 1);
                    }
                    None => {}
                }
            }
        }
        self.values += 1;
    }

    fn ty(&self) -> Option<Ty> {
        if self.values == 0 {
            None
        } else if self.texts > 0 || (self.dates > 0 && self.nums.count() > 0) {
            Some(Ty::Text)
        } else if self.dates > 0 {
            Some(Ty::Date)
        } else if self.nums.floats > 0 {
            Some(Ty::Float)
        } else {
            Some(Ty::Int)
        }
    }

    fn ty_name(&self) -> &'static str {
        match self.ty() {
            None => "empty",
            Some(Ty::Int) => "integer",
            Some(Ty::Float) => "float",
            Some(Ty::Date) => "date",
            Some(Ty::Text) => "text",
        }
    }

    fn num(x: f64) -> String {
        if x.fract() == 0.0 && x.abs() < 1e15 {
            format!("{}", x as i64)
        } else {
            format!("{}", (x * 1e4).round() / 1e4)
        }
    }

    /// (min, max, mean, top) as display strings, empty where they do not apply.
    fn stats(&self) -> [String; 4] {
        match self.ty() {
            Some(Ty::Int) | Some(Ty::Float) => [
                Self::num(self.nums.min),
                Self::num(self.nums.max),
                self.nums.mean().map(Self::num).unwrap_or_default(),
                String::new(),
            ],
            Some(Ty::Date) => [
                self.date_min.clone().unwrap_or_default(),
                self.date_max.clone().unwrap_or_default(),
                String::new(),
                String::new(),
            ],
            Some(Ty::Text) => {
                let mut top: Vec<_> = self.top.iter().collect();
                top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let top: Vec<String> = top
                    .iter()
                    .take(3)
                    .map(|(v, c)| format!("{v} ({c})"))
                    .collect();
                [String::new(), String::new(), String::new(), top.join("; ")]
            }
            None => Default::default(),
        }
    }
}

struct SheetStats {
    name: String,
    rows: u64,
    columns: Vec<Column>,
    sample: Vec<Vec<String>>,
    /// Set when reading stopped at the scan limit.
    partial: bool,
    /// Comment rows found above the header.
    comments: Vec<String>,
}

impl SheetStats {
    fn new(name: String, header: Vec<String>) -> Self {
        let columns = header
            .into_iter()
            .enumerate()
            .map(|(i, h)| Column {
                name: if h.trim().is_empty() {
                    format!("column{}", i + 1)
                } else {
                    clip_ellipsis(h.trim(), CELL_CHARS)
                },
                named: !h.trim().is_empty(),
                ..Default::default()
            })
            .collect();
        SheetStats {
            name,
            rows: 0,
            columns,
            sample: Vec::new(),
            partial: false,
            comments: Vec::new(),
        }
    }

    fn ensure_columns(&mut self, n: usize) {
        while self.columns.len() < n.min(MAX_COLUMNS * 4) {
            let i = self.columns.len();
            self.columns.push(Column {
                name: format!("column{}", i + 1),
                ..Default::default()
            });
        }
    }

    fn add_row<'a>(
        &mut self,
        cells: impl Iterator<Item = Val<'a>>,
        display: impl FnOnce() -> Vec<String>,
    ) {
        let mut n = 0;
        for (i, v) in cells.enumerate() {
            self.ensure_columns(i + 1);
            if let Some(c) = self.columns.get_mut(i) {
                c.add(v);
            }
            n = i + 1;
        }
        // Short rows: the missing cells are empty.
        for c in self.columns.iter_mut().skip(n) {
            c.empty += 1;
        }
        self.rows += 1;
        if self.sample.len() < SAMPLE_ROWS {
            self.sample.push(display());
        }
    }

    /// `n` empty rows; O(columns), not O(n), so a gap of a million rows costs nothing.
    fn add_empty_rows(&mut self, n: u64) {
        for c in &mut self.columns {
            c.empty += n;
        }
        self.rows += n;
        let fill = (SAMPLE_ROWS - self.sample.len()).min(n as usize);
        self.sample.extend(std::iter::repeat_n(Vec::new(), fill));
    }

    /// Drops leading columns with neither a header nor a value (a sheet whose used range
    /// starts right of column A, read cell by cell).
    fn trim_leading_empty_columns(&mut self) {
        let k = self
            .columns
            .iter()
            .take_while(|c| !c.named && c.values == 0)
            .count();
        if k == 0 || k == self.columns.len() {
            return;
        }
        self.columns.drain(..k);
        for r in &mut self.sample {
            r.drain(..k.min(r.len()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CSV / TSV

fn delimiter(input: &Input<'_>) -> u8 {
    if input.format == MIME_TSV || matches!(ext(input.name).as_str(), "tsv" | "tab") {
        b'\t'
    } else {
        b','
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Longest CSV record read; the csv crate holds one record in memory, so a file that is one
/// endless quoted field is refused rather than buffered.
const MAX_RECORD: u64 = 1024 * 1024;

/// Passes reads through, failing once more than [`MAX_RECORD`] bytes were read since the
/// caller last reset `since` (after each record).
struct RecordCap<R> {
    inner: R,
    since: Rc<Cell<u64>>,
}

impl<R: Read> Read for RecordCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since.get() > MAX_RECORD {
            return Err(std::io::Error::other(RECORD_TOO_LONG));
        }
        let n = self.inner.read(buf)?;
        self.since.set(self.since.get() + n as u64);
        Ok(n)
    }
}

const RECORD_TOO_LONG: &str = "csv record longer than the record limit";

type CappedCsv = csv::Reader<RecordCap<BufReader<std::io::Take<File>>>>;

/// A csv reader over at most `limit` bytes of `path` whose records are capped; the cell is
/// reset by the caller after every record.
fn capped_csv(
    path: &Path,
    limit: u64,
    builder: &mut csv::ReaderBuilder,
) -> std::io::Result<(CappedCsv, Rc<Cell<u64>>)> {
    let since = Rc::new(Cell::new(0));
    let inner = BufReader::new(File::open(path)?.take(limit));
    let reader = builder.from_reader(RecordCap {
        inner,
        since: since.clone(),
    });
    Ok((reader, since))
}

fn csv_err(format: &str, e: csv::Error) -> TransformError {
    if e.to_string().contains(RECORD_TOO_LONG) {
        TransformError::Limit(format!("{RECORD_TOO_LONG} ({MAX_RECORD} bytes)"))
    } else {
        TransformError::decode(format, e)
    }
}

/// Up to ten '#' comment lines at the top of a delimited file ("# Data source: ...").
fn leading_comments(path: &Path) -> std::io::Result<Vec<String>> {
    let mut r = super::util::LineReader::open(path, 64 * 1024)?;
    let mut out = Vec::new();
    while let Some(l) = r.next_line()? {
        if !l.starts_with('#') || out.len() >= 10 {
            break;
        }
        out.push(clip_ellipsis(l.trim(), 200));
    }
    Ok(out)
}

fn csv_stats(input: &Input<'_>, limits: &Limits) -> Result<SheetStats, TransformError> {
    let comments = leading_comments(input.path)?;
    let size = file_len(input.path)?;
    let (mut rdr, since) = capped_csv(
        input.path,
        limits.max_text_scan_bytes,
        csv::ReaderBuilder::new()
            .delimiter(delimiter(input))
            .has_headers(false)
            .flexible(true)
            .comment((!comments.is_empty()).then_some(b'#')),
    )?;
    let mut rec = csv::ByteRecord::new();
    let bad = |e: csv::Error| csv_err(input.format, e);
    let header: Vec<String> = if rdr.read_byte_record(&mut rec).map_err(bad)? {
        rec.iter().take(MAX_COLUMNS * 4).map(lossy).collect()
    } else {
        Vec::new()
    };
    let mut st = SheetStats::new(input.name.to_string(), header);
    st.comments = comments;
    let mut ticker = Ticker::new(limits);
    loop {
        ticker.tick()?;
        since.set(0);
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            // A record cut by the scan limit can fail to parse; everything before it counts.
            Err(e)
                if size > limits.max_text_scan_bytes
                    && !e.to_string().contains(RECORD_TOO_LONG) =>
            {
                break;
            }
            Err(e) => return Err(bad(e)),
        }
        let strs: Vec<String> = rec.iter().take(MAX_COLUMNS * 4).map(lossy).collect();
        let vals: Vec<Val<'_>> = strs.iter().map(|s| classify(s)).collect();
        // Sample cells as written, except dates, which are shown in ISO form.
        let disp = || {
            vals.iter()
                .zip(&strs)
                .map(|(v, s)| match v {
                    Val::Date(d) => d.clone(),
                    _ => clip_ellipsis(s, CELL_CHARS),
                })
                .collect()
        };
        let disp: Vec<String> = disp();
        st.add_row(vals.into_iter(), || disp);
    }
    st.partial = size > limits.max_text_scan_bytes;
    Ok(st)
}

fn write_csv(rows: &[Vec<String>]) -> Result<String, TransformError> {
    let mut w = csv::WriterBuilder::new()
        .flexible(false)
        .from_writer(Vec::new());
    for r in rows {
        w.write_record(r)
            .map_err(|e| TransformError::decode("text/csv", e))?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| TransformError::decode("text/csv", e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The schema rows of a CSV summary: one label column, then one column per data column.
fn csv_schema_rows(st: &SheetStats, ncols: usize) -> Vec<Vec<String>> {
    let cols = &st.columns[..ncols];
    let mut header = vec![SCHEMA_LABELS[0].to_string()];
    header.extend(cols.iter().map(|c| c.name.clone()));
    let mut ty = vec![SCHEMA_LABELS[1].to_string()];
    ty.extend(cols.iter().map(|c| c.ty_name().to_string()));
    let mut rows = vec![if st.partial {
        "rows (partial)".to_string()
    } else {
        SCHEMA_LABELS[2].to_string()
    }];
    rows.extend(cols.iter().map(|_| st.rows.to_string()));
    let mut empty = vec![SCHEMA_LABELS[3].to_string()];
    empty.extend(cols.iter().map(|c| c.empty.to_string()));
    vec![header, ty, rows, empty]
}

fn csv_stage1(st: &SheetStats, budget: usize) -> Result<String, TransformError> {
    let ncols = st.columns.len().min(MAX_COLUMNS);
    let mut base = csv_schema_rows(st, ncols);
    let stats: Vec<[String; 4]> = st.columns[..ncols].iter().map(Column::stats).collect();
    for (k, label) in ["min", "max", "mean", "top"].iter().enumerate() {
        let mut r = vec![label.to_string()];
        r.extend(stats.iter().map(|s| s[k].clone()));
        base.push(r);
    }
    let width = ncols + 1;
    for c in st.comments.iter().filter(|_| width >= 2) {
        let mut r = vec!["note".to_string(), c.clone()];
        r.resize(width, String::new());
        base.push(r);
    }
    let mut out = String::new();
    for n in [SAMPLE_ROWS, 10, 5, 2, 0] {
        let mut rows = base.clone();
        for (i, s) in st.sample.iter().take(n).enumerate() {
            let mut r = vec![format!("row {}", i + 1)];
            r.extend(s.iter().take(ncols).cloned());
            r.resize(width, String::new());
            rows.push(r);
        }
        out = write_csv(&rows)?;
        if out.len() <= budget {
            break;
        }
    }
    Ok(out)
}

/// Schema rows cut to as many columns as fit in `budget`.
fn csv_fit_schema(rows: &[Vec<String>], budget: usize) -> Result<String, TransformError> {
    let width = rows.iter().map(Vec::len).min().unwrap_or(0);
    let mut keep = width;
    loop {
        let cut: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r[..keep].iter().map(|c| clip_ellipsis(c, 40)).collect())
            .collect();
        let s = write_csv(&cut)?;
        if s.len() <= budget || keep <= 1 {
            return Ok(s);
        }
        keep -= 1;
    }
}

fn csv_apply(
    target: u8,
    input: &Input<'_>,
    out: &Path,
    limits: &Limits,
    budget: usize,
) -> Result<Produced, TransformError> {
    let (text, note) = if input.stage >= 1 {
        // Compact our own stage-1 CSV: keep its schema rows.
        let (mut rdr, since) = capped_csv(
            input.path,
            SUMMARY_READ_CAP,
            csv::ReaderBuilder::new().has_headers(false).flexible(true),
        )?;
        let mut rows = Vec::new();
        let mut rec = csv::ByteRecord::new();
        let mut ticker = Ticker::new(limits);
        while rdr
            .read_byte_record(&mut rec)
            .map_err(|e| csv_err("text/csv", e))?
        {
            ticker.tick()?;
            since.set(0);
            let r: Vec<String> = rec.iter().take(MAX_COLUMNS * 4).map(lossy).collect();
            if r.first()
                .is_some_and(|l| SCHEMA_LABELS.contains(&l.as_str()) || l.starts_with("rows"))
            {
                rows.push(r);
            }
        }
        (csv_fit_schema(&rows, budget)?, "csv schema".to_string())
    } else {
        let st = csv_stats(input, limits)?;
        let note = format!("{} rows x {} columns", st.rows, st.columns.len());
        if target >= 2 {
            let rows = csv_schema_rows(&st, st.columns.len().min(MAX_COLUMNS));
            (
                csv_fit_schema(&rows, budget)?,
                format!("csv schema, {note}"),
            )
        } else {
            (csv_stage1(&st, budget)?, format!("csv snapshot, {note}"))
        }
    };
    write_out(out, text.as_bytes())?;
    Ok(Produced {
        format: "text/csv".into(),
        encoding: Encoding::Plain,
        note,
    })
}

// ---------------------------------------------------------------------------------------------
// Workbooks

fn cell_val(d: &Data) -> (Val<'_>, String) {
    match d {
        Data::Empty => (Val::Empty, String::new()),
        Data::Int(i) => (Val::Num(*i as f64, true), i.to_string()),
        Data::Float(f) => {
            let int = f.fract() == 0.0 && f.abs() < 1e15;
            (Val::Num(*f, int), Column::num(*f))
        }
        Data::DateTime(dt) if dt.is_datetime() => {
            let s = excel_datetime(dt);
            (Val::Date(s.clone()), s)
        }
        Data::DateTime(dt) => (Val::Text("(duration)"), excel_duration(dt)),
        Data::DateTimeIso(s) => (Val::Date(s.clone()), s.clone()),
        Data::String(s) => (classify(s), clip_ellipsis(s, CELL_CHARS)),
        other => {
            let s = clip_ellipsis(&other.to_string(), CELL_CHARS);
            (Val::Text("(other)"), s)
        }
    }
}

/// Feeds one sheet's rows, in order, into its statistics: up to ten leading comment rows
/// ("# Data source: ...", alone in their row), then the header, then data. Empty rows count
/// only when data follows them.
struct SheetBuilder {
    name: String,
    comments: Vec<String>,
    st: Option<SheetStats>,
    pending_empty: u64,
}

impl SheetBuilder {
    fn new(name: String) -> Self {
        SheetBuilder {
            name,
            comments: Vec::new(),
            st: None,
            pending_empty: 0,
        }
    }

    fn row(&mut self, cells: &[Data]) {
        let cells = &cells[..cells.len().min(MAX_COLUMNS * 4)];
        let filled: Vec<&Data> = cells.iter().filter(|c| **c != Data::Empty).collect();
        let Some(st) = &mut self.st else {
            match filled[..] {
                [] => {}
                [Data::String(c)]
                    if c.trim_start().starts_with('#') && self.comments.len() < 10 =>
                {
                    self.comments.push(clip_ellipsis(c.trim(), 200));
                }
                _ => {
                    let header = cells.iter().map(|c| cell_val(c).1).collect();
                    self.st = Some(SheetStats::new(self.name.clone(), header));
                }
            }
            return;
        };
        if filled.is_empty() {
            self.pending_empty += 1;
            return;
        }
        if self.pending_empty > 0 {
            st.add_empty_rows(std::mem::take(&mut self.pending_empty));
        }
        let vals: Vec<(Val<'_>, String)> = cells.iter().map(cell_val).collect();
        let disp: Vec<String> = vals.iter().map(|(_, s)| s.clone()).collect();
        st.add_row(vals.into_iter().map(|(v, _)| v), || disp);
    }

    /// `n` rows absent from a sparse sheet (read cell by cell) between two present ones.
    fn gap(&mut self, n: u64) {
        if self.st.is_some() {
            self.pending_empty = self.pending_empty.saturating_add(n);
        }
    }

    fn finish(self) -> SheetStats {
        let mut st = self
            .st
            .unwrap_or_else(|| SheetStats::new(self.name, Vec::new()));
        st.comments = self.comments;
        st.trim_leading_empty_columns();
        st
    }
}

/// Most cells a workbook decoder that builds whole sheets (calamine for xls and ods) may
/// allocate: it keeps about two dense copies of cells plus formulas, some 128 bytes a cell.
fn max_cells(limits: &Limits) -> u64 {
    limits.max_alloc_bytes / 128
}

/// Sheets read cell by cell from the xlsx XML, so neither a huge sparse used range nor a long
/// sheet is ever held in memory whole.
fn xlsx_sheets(input: &Input<'_>, limits: &Limits) -> Result<Vec<SheetStats>, TransformError> {
    let bad = |e: calamine::XlsxError| TransformError::decode(input.format, e);
    let mut wb: calamine::Xlsx<BufReader<File>> =
        calamine::open_workbook(input.path).map_err(bad)?;
    let mut ticker = Ticker::new(limits);
    let mut out = Vec::new();
    for name in wb.sheet_names().into_iter().take(MAX_SHEETS) {
        let mut cells = match wb.worksheet_cells_reader(&name) {
            Ok(r) => r,
            // Chart sheets and the like have no cells.
            Err(calamine::XlsxError::NotAWorksheet(_)) => continue,
            Err(e) => return Err(bad(e)),
        };
        let mut b = SheetBuilder::new(name);
        let mut row: Vec<Data> = Vec::new();
        let mut cur: Option<u32> = None;
        while let Some(cell) = cells.next_cell().map_err(bad)? {
            ticker.tick()?;
            let (r, c) = cell.get_position();
            if cur != Some(r) {
                if let Some(prev) = cur {
                    b.row(&row);
                    row.clear();
                    if r > prev + 1 {
                        b.gap(u64::from(r - prev - 1));
                    }
                }
                cur = Some(r);
            }
            let c = c as usize;
            if c < MAX_COLUMNS * 4 {
                if row.len() <= c {
                    row.resize(c + 1, Data::Empty);
                }
                row[c] = cell.get_value().clone().into();
            }
        }
        if cur.is_some() {
            b.row(&row);
        }
        out.push(b.finish());
    }
    Ok(out)
}

/// Sheets of a decoder that returns whole ranges (xls, ods); the caller has bounded their size.
fn range_sheets<R, RS>(
    wb: &mut R,
    format: &str,
    limits: &Limits,
) -> Result<Vec<SheetStats>, TransformError>
where
    R: Reader<RS>,
    RS: std::io::Read + std::io::Seek,
    R::Error: std::fmt::Display,
{
    let mut ticker = Ticker::new(limits);
    let mut out = Vec::new();
    for name in wb.sheet_names().into_iter().take(MAX_SHEETS) {
        let range = wb
            .worksheet_range(&name)
            .map_err(|e| TransformError::decode(format, e))?;
        let mut b = SheetBuilder::new(name);
        for r in range.rows() {
            ticker.tick()?;
            b.row(r);
        }
        out.push(b.finish());
    }
    Ok(out)
}

/// Refuses an ods whose repeated rows and columns would make calamine (which expands every
/// repetition into cells, for all sheets, when it opens the file) allocate more than
/// [`max_cells`]. Counts like calamine: a row holds its cells up to the last non-empty one,
/// and repeated rows between the first and last non-empty row are all materialised.
fn ods_guard(input: &Input<'_>, limits: &Limits) -> Result<(), TransformError> {
    let mut zip = super::ziplimit::open(input.path, input.format, limits)?;
    let Some(content) = zip.read("content.xml")? else {
        return Ok(()); // calamine reports the missing part
    };
    #[derive(Default)]
    struct Table {
        /// Cells calamine stores while reading rows (repeated rows once each).
        read: u64,
        /// Widest row, and the repetitions of rows from the first non-empty one on.
        width: u64,
        rows_since_first: u64,
        rows_to_last: u64,
        seen_data: bool,
    }
    let max = max_cells(limits);
    let mut total: u64 = 0;
    let mut t = Table::default();
    let (mut row_rep, mut row_width, mut row_cols) = (1u64, 0u64, 0u64);
    let (mut cell_rep, mut cell_full) = (1u64, false);
    let mut err: Option<TransformError> = None;
    let rep = |attrs: &[(String, String)], key: &str| -> u64 {
        attrs
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(1)
    };
    let mut in_cell = false;
    walk(&content, limits, |ev| {
        match ev {
            XmlEvent::Start("table", _) => t = Table::default(),
            XmlEvent::Start("table-row", a) => {
                (row_rep, row_width, row_cols) = (rep(a, "number-rows-repeated"), 0, 0);
            }
            XmlEvent::Start("table-cell" | "covered-table-cell", a) => {
                cell_rep = rep(a, "number-columns-repeated");
                cell_full = a.iter().any(|(k, _)| k == "value-type" || k == "formula");
                in_cell = true;
            }
            XmlEvent::Start(_, _) if in_cell => cell_full = true,
            XmlEvent::Text(x) if in_cell && !x.trim().is_empty() => cell_full = true,
            XmlEvent::End("table-cell" | "covered-table-cell") => {
                in_cell = false;
                row_cols = row_cols.saturating_add(cell_rep);
                if cell_full {
                    row_width = row_cols;
                }
            }
            XmlEvent::End("table-row") => {
                t.read = t.read.saturating_add(row_width);
                if row_width > 0 {
                    t.seen_data = true;
                    t.width = t.width.max(row_width);
                }
                if t.seen_data {
                    t.rows_since_first = t.rows_since_first.saturating_add(row_rep);
                    if row_width > 0 {
                        t.rows_to_last = t.rows_since_first;
                    }
                }
            }
            XmlEvent::End("table") => {
                let dense = t.rows_to_last.saturating_mul(t.width);
                total = total.saturating_add(t.read).saturating_add(dense);
                if total > max {
                    err = Some(TransformError::Limit(format!(
                        "ods expands to more than {max} cells"
                    )));
                    return false;
                }
            }
            _ => {}
        }
        true
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn workbook_stats(input: &Input<'_>, limits: &Limits) -> Result<Vec<SheetStats>, TransformError> {
    let f = input.format;
    let mut magic = [0u8; 8];
    let n = File::open(input.path)?.read(&mut magic)?;
    let magic = &magic[..n];
    let kind = match (f, ext(input.name).as_str()) {
        (MIME_XLSX | MIME_XLSM, _) | (_, "xlsx" | "xlsm") => "xlsx",
        (MIME_ODS, _) | (_, "ods") => "ods",
        (MIME_XLS, _) | (_, "xls") => "xls",
        _ if magic.starts_with(b"PK") => "xlsx",
        _ if magic.starts_with(&xls_guard::OLE_MAGIC) => "xls",
        _ => return Err(TransformError::decode(f, "not a known workbook format")),
    };
    match kind {
        "xlsx" => {
            // Zip-bomb guard: entry count, declared and actual inflated sizes and ratios,
            // before calamine inflates anything itself.
            super::ziplimit::open(input.path, f, limits)?.verify_inflation()?;
            xlsx_sheets(input, limits)
        }
        "ods" => {
            super::ziplimit::open(input.path, f, limits)?.verify_inflation()?;
            ods_guard(input, limits)?;
            let mut wb: calamine::Ods<BufReader<File>> = calamine::open_workbook(input.path)
                .map_err(|e: calamine::OdsError| TransformError::decode(f, e))?;
            range_sheets(&mut wb, f, limits)
        }
        _ => {
            // No zip to inspect: calamine reads the whole compound file, so bound its size
            // and check its structure before calamine trusts it.
            let (data, truncated) = read_bounded(input.path, limits.max_inflated_bytes)?;
            if truncated {
                return Err(TransformError::Limit(format!(
                    "workbook larger than {} bytes",
                    limits.max_inflated_bytes
                )));
            }
            xls_guard::check(&data, f, max_cells(limits), limits)?;
            let mut wb = calamine::Xls::new(std::io::Cursor::new(data))
                .map_err(|e| TransformError::decode(f, e))?;
            range_sheets(&mut wb, f, limits)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy xls: structure check before calamine

/// calamine's xls reader trusts the compound file (sector numbers size its buffers, chains
/// are followed without a cycle check, header counts size allocations; see
/// [`super::util::cfb`], which reads it the same way with bounds first) and lays a sheet's
/// cells out densely over their bounding box. This refuses what would make it allocate
/// without limit or loop.
mod xls_guard {
    use super::super::util::cfb::{u16_at, u32_at, Cfb};
    use super::super::{Limits, TransformError};
    use super::Ticker;

    pub use super::super::util::cfb::OLE_MAGIC;

    /// Err(Decode) for a compound file calamine cannot read safely, Err(Limit) for a sheet
    /// whose cells would span more than `max_cells`.
    pub fn check(
        data: &[u8],
        format: &str,
        max_cells: u64,
        limits: &Limits,
    ) -> Result<(), TransformError> {
        let bad = |why: String| TransformError::decode(format, format!("compound file: {why}"));
        let cfb = Cfb::parse(data).map_err(bad)?;
        // A VBA project makes calamine read further streams by name, and inflate its "dir"
        // and module streams without a bound (its decompressor makes up to about 2000 bytes
        // of each compressed byte): check every stream, and refuse projects whose streams
        // could inflate past half the allocation limit.
        if cfb.entry("_VBA_PROJECT_CUR").is_some() {
            let mut total: u64 = 0;
            for e in cfb.entries.iter().skip(1).filter(|e| e.len > 0) {
                cfb.stream(e).map_err(bad)?;
                if e.name != "Workbook" && e.name != "Book" {
                    total += e.len;
                }
            }
            if total.saturating_mul(2048) > limits.max_alloc_bytes / 2 {
                return Err(TransformError::Limit(format!(
                    "xls macro project of {total} bytes could inflate past the limit"
                )));
            }
        }
        let book = cfb.entry("Workbook").or_else(|| cfb.entry("Book"));
        let Some(book) = book else {
            return Ok(()); // calamine reports the missing stream
        };
        let wb = cfb.stream(book).map_err(bad)?;
        check_cells(&wb, max_cells, limits)
    }

    /// BIFF records of `wb` from `pos`, as (type, data), until the end or a short record.
    fn records(wb: &[u8], pos: usize) -> impl Iterator<Item = (u16, &[u8])> {
        let mut rest = wb.get(pos..).unwrap_or_default();
        std::iter::from_fn(move || {
            let typ = u16_at(rest, 0)?;
            let len = u16_at(rest, 2)? as usize;
            let data = rest.get(4..4 + len)?;
            rest = &rest[4 + len..];
            Some((typ, data))
        })
    }

    /// Each sheet's cells (and its DIMENSIONS record, which calamine reserves space for) must
    /// span at most `max_cells`, computed with calamine's own (wrapping) arithmetic.
    fn check_cells(wb: &[u8], max_cells: u64, limits: &Limits) -> Result<(), TransformError> {
        let mut ticker = Ticker::new(limits);
        let mut sheets = Vec::new();
        for (typ, d) in records(wb, 0) {
            ticker.tick()?;
            match typ {
                0x0085 => sheets.extend(u32_at(d, 0)),
                0x000A => break,
                _ => {}
            }
        }
        let too_big = |what: &str, cells: u64| {
            TransformError::Limit(format!(
                "xls sheet {what} spans {cells} cells, limit {max_cells}"
            ))
        };
        for pos in sheets {
            let mut bbox: Option<(u32, u32, u32, u32)> = None;
            let mut add = |r: u32, c: u32| {
                let b = bbox.get_or_insert((r, r, c, c));
                *b = (b.0.min(r), b.1.max(r), b.2.min(c), b.3.max(c));
            };
            for (typ, d) in records(wb, pos as usize) {
                ticker.tick()?;
                let rc = || Some((u32::from(u16_at(d, 0)?), u32::from(u16_at(d, 2)?)));
                match typ {
                    0x0200 => {
                        let (rf, rl, cf, cl) = match d.len() {
                            10 => (
                                u32::from(u16_at(d, 0).unwrap_or(0)),
                                u32::from(u16_at(d, 2).unwrap_or(0)),
                                u32::from(u16_at(d, 4).unwrap_or(0)),
                                u32::from(u16_at(d, 6).unwrap_or(0)),
                            ),
                            14 => (
                                u32_at(d, 0).unwrap_or(0),
                                u32_at(d, 4).unwrap_or(0),
                                u32::from(u16_at(d, 8).unwrap_or(0)),
                                u32::from(u16_at(d, 10).unwrap_or(0)),
                            ),
                            _ => continue,
                        };
                        let cf = if cf > 0xFF || cl < cf { 0 } else { cf };
                        if rl >= 1 && cl >= 1 {
                            let rows = (rl - 1).wrapping_sub(rf).wrapping_add(1);
                            let cols = (cl - 1).wrapping_sub(cf).wrapping_add(1);
                            let cells = u64::from(rows) * u64::from(cols);
                            if cells > max_cells {
                                return Err(too_big("dimensions", cells));
                            }
                        }
                    }
                    0x0203 | 0x0204 | 0x0205 | 0x027E | 0x00FD | 0x0006 => {
                        if let Some((r, c)) = rc() {
                            add(r, c);
                        }
                    }
                    0x00BD if d.len() >= 6 => {
                        let r = u32::from(u16_at(d, 0).unwrap_or(0));
                        add(r, u32::from(u16_at(d, 2).unwrap_or(0)));
                        add(r, u32::from(u16_at(d, d.len() - 2).unwrap_or(0)));
                    }
                    0x000A => break,
                    _ => {}
                }
            }
            if let Some((r0, r1, c0, c1)) = bbox {
                let cells = u64::from(r1 - r0 + 1) * u64::from(c1 - c0 + 1);
                if cells > max_cells {
                    return Err(too_big("cells", cells));
                }
            }
        }
        Ok(())
    }
}

fn column_line(c: &Column, with_stats: bool) -> String {
    let mut s = format!(
        "  - {}: {}; {} values, {} empty",
        c.name,
        c.ty_name(),
        c.values,
        c.empty
    );
    if with_stats {
        let [min, max, mean, top] = c.stats();
        if !mean.is_empty() {
            let _ = write!(s, "; min {min}, max {max}, mean {mean}");
        } else if !min.is_empty() {
            let _ = write!(s, "; from {min} to {max}");
        } else if !top.is_empty() {
            let _ = write!(s, "; top: {top}");
        }
    }
    s
}

fn workbook_text(input: &Input<'_>, sheets: &[SheetStats], full: bool, samples: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "workbook: {} ({}), {} sheet(s)",
        input.name,
        input.format,
        sheets.len()
    );
    for st in sheets {
        let _ = writeln!(
            s,
            "sheet \"{}\": {} rows x {} columns",
            st.name,
            st.rows,
            st.columns.len()
        );
        for c in &st.comments {
            let _ = writeln!(s, "  note: {c}");
        }
        for c in st.columns.iter().take(MAX_COLUMNS) {
            let _ = writeln!(s, "{}", column_line(c, full));
        }
        if st.columns.len() > MAX_COLUMNS {
            let _ = writeln!(s, "  - ... {} more columns", st.columns.len() - MAX_COLUMNS);
        }
        if full && samples > 0 && !st.sample.is_empty() {
            let n = st.sample.len().min(samples);
            let _ = writeln!(s, "  first {n} rows:");
            let header: Vec<&str> = st
                .columns
                .iter()
                .take(MAX_COLUMNS)
                .map(|c| c.name.as_str())
                .collect();
            let _ = writeln!(s, "    | {} |", header.join(" | "));
            for r in st.sample.iter().take(n) {
                let cells: Vec<&str> = r.iter().take(MAX_COLUMNS).map(String::as_str).collect();
                let _ = writeln!(s, "    | {} |", cells.join(" | "));
            }
        }
    }
    s
}

/// Stage 2 from a stage-1 workbook text: drop sample rows and statistics.
fn compact_workbook_text(text: &str, budget: usize) -> String {
    let kept: Vec<String> = text
        .lines()
        .filter(|l| {
            !l.starts_with("    |") && !l.starts_with("  first ") && !l.starts_with("  note: ")
        })
        .map(|l| {
            if l.starts_with("  - ") {
                let mut parts = l.splitn(3, "; ");
                let a = parts.next().unwrap_or("");
                match parts.next() {
                    Some(b) => format!("{a}; {b}"),
                    None => a.to_string(),
                }
            } else {
                l.to_string()
            }
        })
        .collect();
    fit_lines(&kept.join("\n"), budget)
}

fn workbook_apply(
    target: u8,
    input: &Input<'_>,
    out: &Path,
    limits: &Limits,
    budget: usize,
) -> Result<Produced, TransformError> {
    let (text, note) = if input.stage >= 1 {
        (
            compact_workbook_text(&read_summary(input.path)?, budget),
            "workbook schema".to_string(),
        )
    } else {
        let sheets = workbook_stats(input, limits)?;
        let rows: u64 = sheets.iter().map(|s| s.rows).sum();
        let note = format!("{} sheet(s), {rows} rows", sheets.len());
        if target >= 2 {
            (
                fit_lines(&workbook_text(input, &sheets, false, 0), budget),
                format!("workbook schema, {note}"),
            )
        } else {
            let mut t = String::new();
            for n in [SAMPLE_ROWS, 10, 5, 0] {
                t = workbook_text(input, &sheets, true, n);
                if t.len() <= budget {
                    break;
                }
            }
            (fit_lines(&t, budget), format!("workbook snapshot, {note}"))
        }
    };
    write_out(out, text.as_bytes())?;
    Ok(Produced {
        format: "text/plain".into(),
        encoding: Encoding::Plain,
        note,
    })
}

fn is_csv_like(input: &Input<'_>) -> bool {
    matches!(input.format, "text/csv" | MIME_TSV)
        || (input.stage == 0 && matches!(ext(input.name).as_str(), "csv" | "tsv" | "tab"))
}

pub(crate) fn apply(
    target: u8,
    input: &Input<'_>,
    out: &Path,
    limits: &Limits,
) -> Result<Produced, TransformError> {
    let input_len = file_len(input.path)?;
    let base = if target >= 2 {
        STAGE2_BUDGET
    } else {
        64 * 1024
    };
    let budget = if input_len > 256 {
        base.min(input_len as usize * 3 / 4)
    } else {
        base
    };
    if is_csv_like(input) {
        csv_apply(target, input, out, limits, budget)
    } else {
        workbook_apply(target, input, out, limits, budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(v: f64, is_1904: bool) -> String {
        excel_datetime(&ExcelDateTime::new(
            v,
            calamine::ExcelDateTimeType::DateTime,
            is_1904,
        ))
    }

    #[test]
    fn excel_serials_in_both_date_systems() {
        assert_eq!(dt(45352.0, false), "2024-03-01");
        assert_eq!(dt(45352.5, false), "2024-03-01T12:00:00");
        // The same day is 1462 days earlier in the 1904 system.
        assert_eq!(dt(45352.0 - 1462.0, true), "2024-03-01");
        assert_eq!(dt(1.0, true), "1904-01-02");
        assert_eq!(dt(61.0, false), "1900-03-01");
        assert_eq!(dt(0.75, false), "18:00:00");
        assert_eq!(dt(-5.0, false), "-5");
        assert_eq!(dt(1e12, false), "1000000000000");
        let d = ExcelDateTime::new(1.5, calamine::ExcelDateTimeType::TimeDelta, false);
        assert_eq!(excel_duration(&d), "36:00:00");
    }

    #[test]
    fn common_date_spellings_become_iso() {
        for (s, iso) in [
            ("2024-03-01", "2024-03-01"),
            ("2024-03-01T10:20:30Z", "2024-03-01T10:20:30Z"),
            ("2024/3/1", "2024-03-01"),
            ("19-Sep-03", "2003-09-19"),
            ("1 March 1999", "1999-03-01"),
            ("3/1/2024", "2024-03-01"),
            ("25/12/2023", "2023-12-25"),
            ("01.03.2024", "2024-03-01"),
            ("29-Feb-2024", "2024-02-29"),
        ] {
            assert_eq!(iso_date(s).as_deref(), Some(iso), "{s}");
        }
        for s in [
            "29-Feb-2023",
            "13/13/2024",
            "1-Foo-2020",
            "1.2",
            "a-b-c",
            "2024-13-01",
        ] {
            assert_eq!(iso_date(s), None, "{s}");
        }
    }

    #[test]
    fn classifies_cells() {
        assert!(matches!(classify(" 42 "), Val::Num(_, true)));
        assert!(matches!(classify("4.5"), Val::Num(_, false)));
        assert!(matches!(classify("2024-01-02"), Val::Date(_)));
        assert!(matches!(classify("inf"), Val::Text(_)));
        assert!(matches!(classify(""), Val::Empty));
    }
}
