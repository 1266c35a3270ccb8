//! Spreadsheets: per-sheet snapshot (header, counts, column types and statistics, first rows) at
//! stage 1; the schema alone at stage 2. CSV/TSV stream through the `csv` crate and their
//! summaries are valid CSV; workbooks go through calamine after a zip-bomb check and their
//! summaries are plain text.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use calamine::{Data, Reader};

use super::detect::{MIME_ODS, MIME_TSV, MIME_XLS, MIME_XLSM, MIME_XLSX};
use super::util::{clip_ellipsis, ext, file_len, fit_lines, write_out, NumStats};
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

fn is_date(s: &str) -> bool {
    super::text::log_timestamp(s).is_some_and(|t| t.len() == s.len() && !s.starts_with('['))
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
    if is_date(t) {
        return Val::Date(t.to_string());
    }
    Val::Text(t)
}

/// Excel serial day number (1900 system) to an ISO date or date-time.
fn excel_date(serial: f64) -> String {
    if !serial.is_finite() || !(0.0..3_000_000.0).contains(&serial) {
        return format!("{serial}");
    }
    let days = serial.floor() as i64 - 25569; // days from 1970-01-01
    let secs = ((serial - serial.floor()) * 86400.0).round() as i64;
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if secs == 0 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

#[derive(Default)]
struct Column {
    name: String,
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

fn csv_stats(input: &Input<'_>, limits: &Limits) -> Result<SheetStats, TransformError> {
    let mut first = [0u8; 1];
    let starts_with_hash = File::open(input.path)?.read(&mut first)? == 1 && first[0] == b'#';
    let size = file_len(input.path)?;
    let reader = BufReader::new(File::open(input.path)?.take(limits.max_text_scan_bytes));
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter(input))
        .has_headers(false)
        .flexible(true)
        .comment(if starts_with_hash { Some(b'#') } else { None })
        .from_reader(reader);
    let mut rec = csv::ByteRecord::new();
    let bad = |e: csv::Error| TransformError::decode(input.format, e);
    let header: Vec<String> = if rdr.read_byte_record(&mut rec).map_err(bad)? {
        rec.iter().take(MAX_COLUMNS * 4).map(lossy).collect()
    } else {
        Vec::new()
    };
    let mut st = SheetStats::new(input.name.to_string(), header);
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            // A record cut by the scan limit can fail to parse; everything before it counts.
            Err(e) if size > limits.max_text_scan_bytes => {
                let _ = e;
                break;
            }
            Err(e) => return Err(bad(e)),
        }
        let strs: Vec<String> = rec.iter().map(lossy).collect();
        let disp = || strs.iter().map(|s| clip_ellipsis(s, CELL_CHARS)).collect();
        st.add_row(strs.iter().map(|s| classify(s)), disp);
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
        let data = super::util::read_bounded(input.path, limits.max_text_scan_bytes)?.0;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(data.as_slice());
        let mut rows = Vec::new();
        for rec in rdr.byte_records() {
            let rec = rec.map_err(|e| TransformError::decode("text/csv", e))?;
            let r: Vec<String> = rec.iter().map(lossy).collect();
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
            let s = excel_date(dt.as_f64());
            (Val::Date(s.clone()), s)
        }
        Data::DateTimeIso(s) => (Val::Date(s.clone()), s.clone()),
        Data::String(s) => (classify(s), clip_ellipsis(s, CELL_CHARS)),
        other => {
            let s = other.to_string();
            (Val::Text("(other)"), s)
        }
    }
}

fn workbook_stats(input: &Input<'_>, limits: &Limits) -> Result<Vec<SheetStats>, TransformError> {
    let f = input.format;
    let e = ext(input.name);
    let kind = match (f, e.as_str()) {
        (MIME_XLSX | MIME_XLSM, _) | (_, "xlsx" | "xlsm") => "xlsx",
        (MIME_ODS, _) | (_, "ods") => "ods",
        (MIME_XLS, _) | (_, "xls") => "xls",
        _ => "auto",
    };
    if kind == "xls" || kind == "auto" {
        // No zip to inspect: calamine reads the whole compound file, so bound its size.
        let size = file_len(input.path)?;
        if size > limits.max_inflated_bytes {
            return Err(TransformError::Limit(format!(
                "workbook of {size} bytes, limit {}",
                limits.max_inflated_bytes
            )));
        }
    }
    if kind == "xlsx" || kind == "ods" {
        // Zip-bomb guard: entry count, declared and actual inflated sizes, before calamine
        // inflates anything itself.
        super::ziplimit::open(input.path, f, limits)?.verify_inflation()?;
    }
    let bad = |e: calamine::Error| TransformError::decode(f, e);
    let mut wb: calamine::Sheets<BufReader<File>> = match kind {
        "xlsx" => calamine::Sheets::Xlsx(
            calamine::open_workbook(input.path).map_err(|e: calamine::XlsxError| bad(e.into()))?,
        ),
        "ods" => calamine::Sheets::Ods(
            calamine::open_workbook(input.path).map_err(|e: calamine::OdsError| bad(e.into()))?,
        ),
        "xls" => calamine::Sheets::Xls(
            calamine::open_workbook(input.path).map_err(|e: calamine::XlsError| bad(e.into()))?,
        ),
        _ => calamine::open_workbook_auto(input.path).map_err(bad)?,
    };
    let names = wb.sheet_names();
    let mut out = Vec::new();
    for name in names.iter().take(MAX_SHEETS) {
        let range = wb.worksheet_range(name).map_err(bad)?;
        let mut rows = range.rows().peekable();
        // Leading comment rows ("# Data source: ...", alone in their row) precede the header.
        let mut comments = Vec::new();
        while let Some(r) = rows.peek() {
            let filled: Vec<String> = r
                .iter()
                .filter(|c| **c != Data::Empty)
                .map(|c| c.to_string())
                .collect();
            if filled.len() != 1 || !filled[0].starts_with('#') || comments.len() >= 10 {
                break;
            }
            comments.push(clip_ellipsis(&filled[0], 200));
            rows.next();
        }
        let header: Vec<String> = rows
            .next()
            .map(|r| {
                r.iter()
                    .take(MAX_COLUMNS * 4)
                    .map(|c| c.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut st = SheetStats::new(name.clone(), header);
        st.comments = comments;
        for r in rows {
            let vals: Vec<(Val<'_>, String)> = r.iter().map(cell_val).collect();
            let disp: Vec<String> = vals.iter().map(|(_, s)| s.clone()).collect();
            st.add_row(vals.into_iter().map(|(v, _)| v), || disp);
        }
        // Trailing all-empty columns are an artifact of the used range, not data.
        out.push(st);
    }
    Ok(out)
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
        let data = super::util::read_bounded(input.path, limits.max_text_scan_bytes)?.0;
        (
            compact_workbook_text(&String::from_utf8_lossy(&data), budget),
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

    #[test]
    fn excel_serials() {
        assert_eq!(excel_date(45352.0), "2024-03-01");
        assert_eq!(excel_date(45352.5), "2024-03-01T12:00:00");
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
