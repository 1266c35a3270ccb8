//! Corpus-wide and hostile-input tests across all transforms.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::detect::detect;
use super::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

fn corpus(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(CORPUS).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn detect_file(p: &Path) -> Detected {
    let data = std::fs::read(p).unwrap();
    detect(&name_of(p), &data[..data.len().min(8192)])
}

struct Run {
    produced: Produced,
    bytes: Vec<u8>,
}

fn run(
    target: u8,
    path: &Path,
    name: &str,
    d: &Detected,
    stage: u8,
    limits: &Limits,
) -> Result<Run, TransformError> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = Input {
        path,
        name,
        kind: d.kind,
        format: &d.format,
        stage,
    };
    let produced = apply(target, &input, &out, limits)?;
    Ok(Run {
        produced,
        bytes: std::fs::read(&out).unwrap(),
    })
}

/// apply(1), apply(2), and apply(2) chained on the stage-1 output.
fn stages(p: &Path) -> (Detected, Run, Run, Run) {
    let name = name_of(p);
    let d = detect_file(p);
    let l = Limits::default();
    let s1 = run(1, p, &name, &d, 0, &l).unwrap_or_else(|e| panic!("{name} stage 1: {e}"));
    let s2 = run(2, p, &name, &d, 0, &l).unwrap_or_else(|e| panic!("{name} stage 2: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let mid = dir.path().join("mid");
    std::fs::write(&mid, &s1.bytes).unwrap();
    let d1 = Detected {
        kind: d.kind,
        format: s1.produced.format.clone(),
    };
    let chained = run(2, &mid, &name, &d1, 1, &l).unwrap_or_else(|e| panic!("{name} 1->2: {e}"));
    (d, s1, s2, chained)
}

#[test]
fn corpus_detection_table() {
    let expect: &[(&str, Kind, &str)] = &[
        ("binary/eeg.dat", Kind::Binary, "application/octet-stream"),
        (
            "binary/ledger.sqlite",
            Kind::Binary,
            "application/vnd.sqlite3",
        ),
        ("docs/deck-1.pptx", Kind::Document, detect::MIME_PPTX),
        ("docs/handbook-1.pdf", Kind::Document, "application/pdf"),
        ("docs/report-1.docx", Kind::Document, detect::MIME_DOCX),
        ("images/SOURCES-skimage.txt", Kind::Text, "text/plain"),
        ("images/astronaut.png", Kind::Image, "image/png"),
        ("images/camera.png", Kind::Image, "image/png"),
        ("images/chelsea.png", Kind::Image, "image/png"),
        ("images/coffee.png", Kind::Image, "image/png"),
        ("images/coffee.webp", Kind::Image, "image/webp"),
        ("images/grace_hopper.jpg", Kind::Image, "image/jpeg"),
        ("images/logo.png", Kind::Image, "image/png"),
        ("images/multipage_rgb.tif", Kind::Image, "image/tiff"),
        ("images/no_time_for_that_tiny.gif", Kind::Image, "image/gif"),
        ("images/rocket.jpg", Kind::Image, "image/jpeg"),
        ("sheets/Stocks.csv", Kind::Spreadsheet, "text/csv"),
        (
            "sheets/inventory-1.xlsx",
            Kind::Spreadsheet,
            detect::MIME_XLSX,
        ),
        ("sheets/msft.csv", Kind::Spreadsheet, "text/csv"),
        ("sheets/orders-1.tsv", Kind::Spreadsheet, detect::MIME_TSV),
        ("sheets/readings-1.xls", Kind::Spreadsheet, detect::MIME_XLS),
        ("text/catalog-1.json", Kind::Text, "application/json"),
        ("text/license-1.txt", Kind::Text, "text/plain"),
        ("text/notes-1.md", Kind::Text, "text/markdown"),
        ("text/service-1.log", Kind::Text, detect::MIME_LOG),
    ];
    let mut seen = 0;
    for dir in ["binary", "docs", "images", "sheets", "text"] {
        for p in corpus(dir) {
            let rel = format!("{dir}/{}", name_of(&p));
            let (_, kind, format) = expect
                .iter()
                .find(|e| e.0 == rel)
                .unwrap_or_else(|| panic!("no expectation for {rel}"));
            assert_eq!(
                detect_file(&p),
                Detected {
                    kind: *kind,
                    format: format.to_string()
                },
                "{rel}"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, expect.len());
    // Content over extension, both ways.
    let jpeg = std::fs::read(format!("{CORPUS}/images/rocket.jpg")).unwrap();
    assert_eq!(detect("x.txt", &jpeg[..8192]).kind, Kind::Image);
    let txt = std::fs::read(format!("{CORPUS}/text/license-1.txt")).unwrap();
    assert_eq!(detect("x.png", &txt[..8192]).kind, Kind::Text);
}

#[test]
fn corpus_images() {
    for p in corpus("images") {
        let d = detect_file(&p);
        if d.kind != Kind::Image {
            continue;
        }
        let size = std::fs::metadata(&p).unwrap().len() as usize;
        let (w0, h0) = image::decode(
            &Input {
                path: &p,
                name: &name_of(&p),
                kind: Kind::Image,
                format: &d.format,
                stage: 0,
            },
            &Limits::default(),
        )
        .map(|i| (i.width(), i.height()))
        .unwrap();
        let (_, s1, s2, chained) = stages(&p);
        for (label, r) in [("stage 1", &s1), ("stage 2", &s2), ("1->2", &chained)] {
            assert_eq!(r.produced.format, "image/jpeg");
            let img = ::image::load_from_memory_with_format(&r.bytes, ::image::ImageFormat::Jpeg)
                .unwrap_or_else(|e| panic!("{p:?} {label}: {e}"));
            if label == "stage 1" {
                assert_eq!((img.width(), img.height()), (w0, h0), "{p:?}");
            } else {
                assert!(img.width().max(img.height()) <= 1024, "{p:?} {label}");
            }
        }
        // Tiny, already-compressed inputs may not shrink; the engine keeps the original then.
        if size > 20_000 {
            assert!(s1.bytes.len() < size, "{p:?}: {} >= {size}", s1.bytes.len());
            assert!(s2.bytes.len() < size, "{p:?}");
        }
        assert!(s2.bytes.len() <= s1.bytes.len() + 1024, "{p:?}");
    }
}

#[test]
fn corpus_text() {
    for p in corpus("text").into_iter().chain([PathBuf::from(format!(
        "{CORPUS}/images/SOURCES-skimage.txt"
    ))]) {
        let size = std::fs::metadata(&p).unwrap().len() as usize;
        let (d, s1, s2, chained) = stages(&p);
        for r in [&s1, &s2, &chained] {
            assert!(r.bytes.len() < size, "{p:?}: {} >= {size}", r.bytes.len());
            if d.format == "application/json" {
                assert_eq!(r.produced.format, "application/json");
                serde_json::from_slice::<serde_json::Value>(&r.bytes)
                    .unwrap_or_else(|e| panic!("{p:?}: {e}"));
            }
        }
        assert!(
            s2.bytes.len() <= 2048,
            "{p:?} stage 2 is {}",
            s2.bytes.len()
        );
        assert!(
            chained.bytes.len() <= 2048,
            "{p:?} chained is {}",
            chained.bytes.len()
        );
        // Each artifact smaller than the one before (the 280-byte sources note fits whole in
        // both budgets, so its two summaries may be equal).
        if size > 2048 {
            assert!(s2.bytes.len() < s1.bytes.len(), "{p:?}");
            assert!(chained.bytes.len() < s1.bytes.len(), "{p:?}");
        } else {
            assert!(s2.bytes.len() <= s1.bytes.len(), "{p:?}");
        }
        for r in [&s1, &s2, &chained] {
            assert!(std::str::from_utf8(&r.bytes).is_ok(), "{p:?}");
        }
    }
}

#[test]
fn log_summary_keeps_every_distinct_error() {
    let p = PathBuf::from(format!("{CORPUS}/text/service-1.log"));
    let (_, s1, s2, _) = stages(&p);
    let summary = String::from_utf8(s1.bytes).unwrap();
    let log = std::fs::read_to_string(&p).unwrap();
    let mut distinct = std::collections::BTreeSet::new();
    for line in log.lines() {
        // Independent of the summarizer: message after the level word, digit runs masked.
        let Some(level) = ["ERROR", "WARN"]
            .into_iter()
            .find(|l| line.split_whitespace().nth(1) == Some(l))
        else {
            continue;
        };
        let msg = line.split_once(level).unwrap().1.trim();
        let mut masked = String::new();
        let mut prev_digit = false;
        for c in msg.chars() {
            if c.is_ascii_digit() {
                if !prev_digit {
                    masked.push('#');
                }
            } else {
                masked.push(c);
            }
            prev_digit = c.is_ascii_digit();
        }
        distinct.insert((level, masked));
    }
    assert!(!distinct.is_empty());
    for (level, m) in &distinct {
        assert!(
            summary
                .lines()
                .any(|l| l.starts_with(level) && l.ends_with(m.as_str())),
            "missing {level} {m}"
        );
    }
    assert!(summary.starts_with("# log summary"));
    assert!(summary.contains("20000 lines"));
    assert!(summary.contains("# first 5 lines") && summary.contains("# last 5 lines"));
    let s2 = String::from_utf8(s2.bytes).unwrap();
    assert!(s2.starts_with("# log summary") && s2.contains("ERROR"));
}

fn csv_header(p: &Path, delim: u8) -> Vec<String> {
    let text = std::fs::read_to_string(p).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delim)
        .from_reader(body.as_bytes());
    r.headers().unwrap().iter().map(str::to_string).collect()
}

fn parse_csv(bytes: &[u8]) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes);
    r.records()
        .map(|rec| rec.expect("valid csv").iter().map(str::to_string).collect())
        .collect()
}

#[test]
fn corpus_sheets() {
    use calamine::Reader;
    for p in corpus("sheets") {
        let size = std::fs::metadata(&p).unwrap().len() as usize;
        let (d, s1, s2, chained) = stages(&p);
        for r in [&s1, &s2, &chained] {
            assert!(r.bytes.len() < size, "{p:?}: {} >= {size}", r.bytes.len());
        }
        assert!(
            s2.bytes.len() <= 2048 && chained.bytes.len() <= 2048,
            "{p:?}"
        );
        assert!(s2.bytes.len() < s1.bytes.len(), "{p:?}");
        assert!(chained.bytes.len() < s1.bytes.len(), "{p:?}");
        let columns: Vec<String> = match d.format.as_str() {
            "text/csv" | detect::MIME_TSV => {
                let delim = if d.format == "text/csv" { b',' } else { b'\t' };
                for r in [&s1, &s2, &chained] {
                    assert_eq!(r.produced.format, "text/csv");
                    let rows = parse_csv(&r.bytes);
                    assert_eq!(rows[0][0], "column");
                    assert_eq!(rows[1][0], "type");
                }
                let rows = parse_csv(&s1.bytes);
                assert!(
                    rows.iter().any(|r| r[0] == "row 1"),
                    "{p:?} has sample rows"
                );
                assert_eq!(parse_csv(&s2.bytes), parse_csv(&chained.bytes));
                csv_header(&p, delim)
            }
            _ => {
                let mut wb = calamine::open_workbook_auto(&p).unwrap();
                let mut cols = Vec::new();
                for n in wb.sheet_names() {
                    let r = wb.worksheet_range(&n).unwrap();
                    // The header is the first row with more than one filled cell.
                    let header = r.rows().find(|row| {
                        row.iter().filter(|c| **c != calamine::Data::Empty).count() > 1
                    });
                    if let Some(h) = header {
                        cols.extend(h.iter().map(|c| c.to_string()).filter(|c| !c.is_empty()));
                    }
                }
                cols
            }
        };
        assert!(!columns.is_empty());
        let s1t = String::from_utf8_lossy(&s1.bytes);
        let s2t = String::from_utf8_lossy(&s2.bytes);
        for c in &columns {
            assert!(s1t.contains(c.as_str()), "{p:?} stage 1 misses column {c}");
            assert!(s2t.contains(c.as_str()), "{p:?} stage 2 misses column {c}");
        }
    }
}

#[test]
fn corpus_documents() {
    for p in corpus("docs") {
        let size = std::fs::metadata(&p).unwrap().len() as usize;
        let (_, s1, s2, chained) = stages(&p);
        for r in [&s1, &s2, &chained] {
            assert_eq!(r.produced.format, "text/plain");
            assert!(r.bytes.len() < size, "{p:?}");
        }
        let t1 = String::from_utf8(s1.bytes.clone()).unwrap();
        assert!(t1.len() <= 8192 && s2.bytes.len() <= 2048 && chained.bytes.len() <= 2048);
        assert!(s2.bytes.len() < s1.bytes.len(), "{p:?}");
        assert!(t1.contains("text:\n"), "{p:?} has text:\n{t1}");
        let t2 = String::from_utf8(s2.bytes).unwrap();
        // (title, author, first heading) where the file has them.
        let name = name_of(&p);
        let (title, author, heading) = match name.rsplit_once('.').unwrap().1 {
            "docx" => (
                Some("Quarterly operations report 1"),
                Some("Operations"),
                Some("Quarterly operations report 1"),
            ),
            "pptx" => (None, None, Some("1. Slide 1: Risks")),
            "pdf" => (Some("License handbook 1"), Some("Legal"), None),
            other => panic!("no expectation for {other}"),
        };
        for (key, value) in [("title", title), ("author", author)] {
            if let Some(v) = value {
                let line = format!("{key}: {v}\n");
                assert!(t1.contains(&line) && t2.contains(&line), "{p:?} {key}");
            }
        }
        if let Some(h) = heading {
            assert!(t1.contains(&format!("headings:\n  {h}\n")), "{t1}");
            assert!(t1.contains(&format!("text:\n## {h}\n")) || name.ends_with(".docx"));
        }
        if name.ends_with(".docx") {
            assert!(
                t1.contains("  Section 1: Roadmap\n") && t1.contains("## Section 1: Roadmap\n")
            );
        }
        if name.ends_with(".pptx") {
            assert!(t1.contains("slides: 8\n"), "{t1}");
        }
        if name.ends_with(".pdf") {
            assert!(
                t1.contains("pages: 4\n") && t1.contains("## page 1\n"),
                "{t1}"
            );
            assert!(t1.contains("Apache License"), "{t1}");
        }
        assert!(t2.contains("first paragraph: "), "{t2}");
        assert_eq!(t2, String::from_utf8(chained.bytes).unwrap());
    }
}

#[test]
fn corpus_binary_stage1_is_lossless_and_stage2_undefined() {
    let mut compressed = 0;
    for p in corpus("binary") {
        let (name, d) = (name_of(&p), detect_file(&p));
        let r = match run(1, &p, &name, &d, 0, &Limits::default()) {
            Err(TransformError::NotWorthIt(why)) => {
                // eeg.dat is noise-like: zstd saves about 4% of it.
                assert!(why.contains("under 5%"), "{name}: {why}");
                continue;
            }
            other => other.unwrap(),
        };
        compressed += 1;
        assert!(
            (r.bytes.len() as f64) < 0.95 * std::fs::metadata(&p).unwrap().len() as f64,
            "{name}: kept only when it saves 5%"
        );
        assert_eq!(r.produced.encoding, Encoding::Chunked);
        assert_eq!(r.produced.format, d.format);
        assert!(binary::is_container(&r.bytes));
        let dir = tempfile::tempdir().unwrap();
        let (c, back) = (dir.path().join("c"), dir.path().join("b"));
        std::fs::write(&c, &r.bytes).unwrap();
        binary::decompress_file(&c, &back).unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&p).unwrap());
        assert!(matches!(
            run(2, &p, &name, &d, 0, &Limits::default()),
            Err(TransformError::NoTransform { .. })
        ));
    }
    assert!(compressed >= 1, "ledger.sqlite compresses");
}

#[test]
fn stage_arguments_are_checked() {
    let p = PathBuf::from(format!("{CORPUS}/text/license-1.txt"));
    let d = detect_file(&p);
    for (target, stage) in [(0, 0), (3, 0), (4, 0), (1, 1), (2, 2)] {
        assert!(matches!(
            run(target, &p, "license-1.txt", &d, stage, &Limits::default()),
            Err(TransformError::NoTransform { .. })
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile inputs

#[test]
fn zero_byte_file_of_each_kind() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "a.png", "a.jpg", "a.gif", "a.txt", "a.md", "a.log", "a.json", "a.csv", "a.tsv", "a.xlsx",
        "a.xls", "a.ods", "a.pdf", "a.docx", "a.pptx", "a.odt", "a.doc", "a.bin",
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, b"").unwrap();
        let d = detect(name, b"");
        for t in [1, 2] {
            match run(t, &p, name, &d, 0, &Limits::default()) {
                Ok(r) if r.produced.format == "application/json" => {
                    serde_json::from_slice::<serde_json::Value>(&r.bytes).unwrap();
                }
                Ok(r) if r.produced.format == "text/csv" => {
                    parse_csv(&r.bytes);
                }
                _ => {}
            }
        }
    }
}

fn write_zip(path: &Path, entries: &[(&str, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        z.start_file(*name, opts).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn zip_bombs_hit_limits() {
    let dir = tempfile::tempdir().unwrap();
    let small = Limits {
        max_inflated_bytes: 1 << 20,
        max_zip_entries: 50,
        ..Limits::default()
    };
    let zeros = vec![0u8; 4 << 20]; // declared 4 MiB, compressed to a few KiB
    let xml = b"<?xml version=\"1.0\"?><x/>".to_vec();
    for (name, first) in [
        ("bomb.xlsx", "xl/workbook.xml"),
        ("bomb.docx", "word/document.xml"),
        ("bomb.ods", "content.xml"),
        ("bomb.pptx", "ppt/slides/slide1.xml"),
    ] {
        let p = dir.path().join(name);
        write_zip(
            &p,
            &[("[Content_Types].xml", xml.clone()), (first, zeros.clone())],
        );
        assert!(std::fs::metadata(&p).unwrap().len() < 64 * 1024);
        let d = detect_file(&p);
        let t = std::time::Instant::now();
        let r = run(1, &p, name, &d, 0, &small);
        assert!(
            matches!(r, Err(TransformError::Limit(_))),
            "{name}: {:?}",
            r.map(|r| r.produced)
        );
        assert!(t.elapsed().as_secs() < 2);
        // Too many entries.
        let many: Vec<(String, Vec<u8>)> = (0..60)
            .map(|i| (format!("f{i}.xml"), xml.clone()))
            .collect();
        let refs: Vec<(&str, Vec<u8>)> =
            many.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
        write_zip(&p, &refs);
        assert!(matches!(
            run(2, &p, name, &d, 0, &small),
            Err(TransformError::Limit(_))
        ));
    }
}

#[test]
fn deeply_nested_docx_xml_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deep.docx");
    let mut body = String::from("<w:document xmlns:w=\"w\"><w:body>");
    body.push_str(&"<w:p>".repeat(100_000));
    body.push_str(&"</w:p>".repeat(100_000));
    body.push_str("</w:body></w:document>");
    write_zip(&p, &[("word/document.xml", body.into_bytes())]);
    let d = detect_file(&p);
    assert_eq!(d.kind, Kind::Document);
    let t = std::time::Instant::now();
    let r = run(1, &p, "deep.docx", &d, 0, &Limits::default());
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
    assert!(t.elapsed().as_secs() < 5);
}

#[test]
fn truncated_containers_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for rel in [
        "docs/report-1.docx",
        "docs/deck-1.pptx",
        "docs/handbook-1.pdf",
        "sheets/inventory-1.xlsx",
        "sheets/readings-1.xls",
        "images/coffee.webp",
        "images/no_time_for_that_tiny.gif",
        "images/multipage_rgb.tif",
    ] {
        let src = PathBuf::from(format!("{CORPUS}/{rel}"));
        let data = std::fs::read(&src).unwrap();
        let name = name_of(&src);
        let d = detect_file(&src);
        for cut in [10, data.len() / 2, data.len() - 10] {
            let p = dir.path().join(&name);
            std::fs::write(&p, &data[..cut]).unwrap();
            // Err or a fallback; never a panic.
            let _ = run(1, &p, &name, &d, 0, &Limits::default());
            let _ = run(2, &p, &name, &d, 0, &Limits::default());
        }
    }
}

#[test]
fn tight_scan_limit_bounds_text_reads() {
    let limits = Limits {
        max_text_scan_bytes: 10_000,
        ..Limits::default()
    };
    for rel in [
        "text/service-1.log",
        "text/license-1.txt",
        "text/notes-1.md",
        "text/catalog-1.json",
        "sheets/orders-1.tsv",
    ] {
        let p = PathBuf::from(format!("{CORPUS}/{rel}"));
        let d = detect_file(&p);
        let r = run(1, &p, &name_of(&p), &d, 0, &limits).unwrap_or_else(|e| panic!("{rel}: {e}"));
        if d.format == "application/json" {
            let v: serde_json::Value = serde_json::from_slice(&r.bytes).unwrap();
            assert!(v["reason"].as_str().unwrap().contains("scan limit"));
        }
    }
}

#[test]
fn opendocument_text_and_presentation() {
    let dir = tempfile::tempdir().unwrap();
    let meta = br#"<office:document-meta xmlns:office="o" xmlns:dc="dc" xmlns:meta="m"><office:meta><dc:title>Field guide</dc:title><meta:initial-creator>Ada</meta:initial-creator><meta:document-statistic meta:page-count="3"/></office:meta></office:document-meta>"#.to_vec();
    let odt = br#"<office:document-content xmlns:office="o" xmlns:text="t"><office:body><office:text><text:h text:outline-level="1">Getting started</text:h><text:p>Install the tool &amp; run it<text:s/>twice.</text:p></office:text></office:body></office:document-content>"#.to_vec();
    let odp = br#"<office:document-content xmlns:office="o" xmlns:text="t" xmlns:draw="d" xmlns:presentation="p"><office:body><office:presentation><draw:page draw:name="p1"><draw:frame presentation:class="title"><draw:text-box><text:p>Quarterly review</text:p></draw:text-box></draw:frame><draw:frame presentation:class="outline"><draw:text-box><text:p>Revenue grew in every region.</text:p></draw:text-box></draw:frame></draw:page><draw:page draw:name="p2"><draw:frame presentation:class="title"><draw:text-box><text:p>Next steps</text:p></draw:text-box></draw:frame></draw:page></office:presentation></office:body></office:document-content>"#.to_vec();
    for (name, mime, content) in [
        ("a.odt", detect::MIME_ODT, odt),
        ("a.odp", detect::MIME_ODP, odp),
    ] {
        let p = dir.path().join(name);
        write_zip(
            &p,
            &[
                ("mimetype", mime.as_bytes().to_vec()),
                ("meta.xml", meta.clone()),
                ("content.xml", content),
            ],
        );
        let d = detect_file(&p);
        assert_eq!(d.format, mime);
        let r = run(1, &p, name, &d, 0, &Limits::default()).unwrap();
        let t = String::from_utf8(r.bytes).unwrap();
        assert!(
            t.contains("title: Field guide") && t.contains("author: Ada"),
            "{t}"
        );
        if name.ends_with("odt") {
            assert!(
                t.contains("pages: 3") && t.contains("  Getting started"),
                "{t}"
            );
            assert!(t.contains("Install the tool & run it twice."), "{t}");
        } else {
            assert!(
                t.contains("slides: 2")
                    && t.contains("  1. Quarterly review")
                    && t.contains("  2. Next steps"),
                "{t}"
            );
            assert!(t.contains("Revenue grew in every region."), "{t}");
        }
    }
}

#[test]
fn lying_zip_sizes_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("liar.xlsx");
    write_zip(&p, &[("xl/workbook.xml", vec![b'<'; 4 << 20])]);
    let mut data = std::fs::read(&p).unwrap();
    // Patch the declared uncompressed size (local header and central directory) down to 100.
    let find = |data: &[u8], sig: &[u8]| data.windows(4).position(|w| w == sig).unwrap();
    let local = find(&data, b"PK\x03\x04");
    data[local + 22..local + 26].copy_from_slice(&100u32.to_le_bytes());
    let central = find(&data, b"PK\x01\x02");
    data[central + 24..central + 28].copy_from_slice(&100u32.to_le_bytes());
    std::fs::write(&p, &data).unwrap();
    let small = Limits {
        max_inflated_bytes: 1 << 20,
        ..Limits::default()
    };
    let d = detect_file(&p);
    let r = run(1, &p, "liar.xlsx", &d, 0, &small);
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
}

// ---------------------------------------------------------------------------------------------
// Generated hostile inputs (fixed seed)

/// xorshift64*: the same "random" cuts and corruptions on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A hostile input must end in Limit or Decode, or give a sane (parseable) fallback; a
/// decoder panic (caught by `apply`) fails the test, and so does taking long.
fn assert_bounded(what: &str, r: &Result<Run, TransformError>, started: std::time::Instant) {
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{what} took {:?}",
        started.elapsed()
    );
    match r {
        Ok(run) if run.produced.format == "application/json" => {
            serde_json::from_slice::<serde_json::Value>(&run.bytes)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
        Ok(run) if run.produced.format == "text/csv" => {
            parse_csv(&run.bytes);
        }
        Ok(_) => {}
        Err(TransformError::Decode { reason, .. }) => {
            assert_ne!(reason, "decoder panicked", "{what}");
        }
        Err(TransformError::Limit(_)) => {}
        Err(e) => panic!("{what}: unexpected {e}"),
    }
}

fn detected(kind: Kind, format: &str) -> Detected {
    Detected {
        kind,
        format: format.to_string(),
    }
}

const ODS_MIME: &str = "application/vnd.oasis.opendocument.spreadsheet";

fn ods_zip(path: &Path, content: &str) {
    let manifest = r#"<?xml version="1.0"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
    write_zip(
        path,
        &[
            ("mimetype", ODS_MIME.as_bytes().to_vec()),
            ("META-INF/manifest.xml", manifest.as_bytes().to_vec()),
            ("content.xml", content.as_bytes().to_vec()),
        ],
    );
}

fn ods_content(rows: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet><table:table table:name="data">{rows}</table:table></office:spreadsheet></office:body></office:document-content>"#
    )
}

fn ods_row(cells: &[(&str, &str)]) -> String {
    let mut r = String::from("<table:table-row>");
    for (ty, v) in cells {
        if *ty == "string" {
            r.push_str(&format!(
                r#"<table:table-cell office:value-type="string"><text:p>{v}</text:p></table:table-cell>"#
            ));
        } else {
            // Numbers carry office:value, dates office:date-value.
            let attr = if *ty == "float" {
                "value"
            } else {
                "date-value"
            };
            r.push_str(&format!(
                r#"<table:table-cell office:value-type="{ty}" office:{attr}="{v}"><text:p>{v}</text:p></table:table-cell>"#
            ));
        }
    }
    r.push_str("</table:table-row>");
    r
}

fn valid_ods(path: &Path) {
    let mut rows = ods_row(&[("string", "city"), ("string", "temp"), ("string", "day")]);
    for i in 0..30 {
        rows.push_str(&ods_row(&[
            ("string", ["Oslo", "Lima", "Pune"][i % 3]),
            ("float", &format!("{}.5", i % 17)),
            ("date", &format!("2024-02-{:02}", i % 28 + 1)),
        ]));
    }
    ods_zip(path, &ods_content(&rows));
}

/// A minimal xlsx: one sheet with `sheet_data` (the inside of <sheetData>), optional
/// date1904, and style 1 a date format.
fn xlsx_zip(path: &Path, sheet_data: &str, date1904: bool) {
    let pr = if date1904 {
        r#"<workbookPr date1904="1"/>"#
    } else {
        "<workbookPr/>"
    };
    let workbook = format!(
        r#"<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">{pr}<sheets><sheet name="s" sheetId="1" r:id="rId1"/></sheets></workbook>"#
    );
    let rels = r#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
    let styles = r#"<?xml version="1.0"?><styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs></styleSheet>"#;
    let sheet = format!(
        r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{sheet_data}</sheetData></worksheet>"#
    );
    write_zip(
        path,
        &[
            ("xl/workbook.xml", workbook.into_bytes()),
            ("xl/_rels/workbook.xml.rels", rels.as_bytes().to_vec()),
            ("xl/styles.xml", styles.as_bytes().to_vec()),
            ("xl/worksheets/sheet1.xml", sheet.into_bytes()),
        ],
    );
}

fn inline(cell: &str, s: &str) -> String {
    format!(r#"<c r="{cell}" t="inlineStr"><is><t>{s}</t></is></c>"#)
}

/// One PDF with the given objects (numbered from 1; object 1 must be the catalog, object 5,
/// when there is one, the document information dictionary).
pub(crate) fn pdf_file(objs: &[Vec<u8>]) -> Vec<u8> {
    let mut pdf = b"%PDF-1.5\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(o);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R{} >>\nstartxref\n{xref}\n%%EOF\n",
            objs.len() + 1,
            if objs.len() >= 5 { " /Info 5 0 R" } else { "" }
        )
        .as_bytes(),
    );
    pdf
}

fn stream_obj(dict: &str, body: &[u8]) -> Vec<u8> {
    let mut s = format!("<< /Length {} {dict} >>\nstream\n", body.len()).into_bytes();
    s.extend_from_slice(body);
    s.extend_from_slice(b"\nendstream");
    s
}

/// A one-page PDF whose page content is `content` (its stream dictionary extras in `dict`).
fn one_page_pdf(dict: &str, content: &[u8]) -> Vec<u8> {
    pdf_file(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] /Contents 4 0 R >>".to_vec(),
        stream_obj(dict, content),
        b"<< /Title (Hostile) /Author (Test) >>".to_vec(),
    ])
}

/// Raw deflate of `mib` MiB of zeros, written without ever holding them: one MiB is
/// compressed once (ending on a byte boundary), its blocks repeated, then a final empty
/// block. Returns the compressed length.
fn deflate_zeros(mib: u64, w: &mut impl Write) -> u64 {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 1 << 20]).unwrap();
    enc.flush().unwrap();
    let block = enc.get_ref().clone();
    for _ in 0..mib {
        w.write_all(&block).unwrap();
    }
    w.write_all(&[0x01, 0x00, 0x00, 0xFF, 0xFF]).unwrap();
    block.len() as u64 * mib + 5
}

/// zlib stream (header, raw deflate; the checksum is never reached) of `mib` MiB of zeros.
fn zlib_zeros(mib: u64) -> Vec<u8> {
    let mut z = vec![0x78, 0xDA];
    deflate_zeros(mib, &mut z);
    z.extend_from_slice(&[0, 0, 0, 0]);
    z
}

/// A one-entry zip written by hand, so the entry can inflate to far more than the test
/// holds in memory and its declared size can lie.
fn zip_one_deflated(path: &Path, name: &str, mib: u64, declared: u32) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let header = |sig: u32, central: bool, csize: u32| {
        let mut h = sig.to_le_bytes().to_vec();
        if central {
            h.extend_from_slice(&20u16.to_le_bytes()); // made by
        }
        h.extend_from_slice(&20u16.to_le_bytes()); // needed
        h.extend_from_slice(&0u16.to_le_bytes()); // flags
        h.extend_from_slice(&8u16.to_le_bytes()); // deflate
        h.extend_from_slice(&0u16.to_le_bytes()); // time
        h.extend_from_slice(&0x21u16.to_le_bytes()); // date
        h.extend_from_slice(&0u32.to_le_bytes()); // crc (never checked: reading stops first)
        h.extend_from_slice(&csize.to_le_bytes());
        h.extend_from_slice(&declared.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // extra
        if central {
            h.extend_from_slice(&[0; 8]); // comment, disk, internal attributes
            h.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            h.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        }
        h.extend_from_slice(name.as_bytes());
        h
    };
    // The compressed size goes in the local header first, so measure it on a sink.
    let csize = deflate_zeros(mib, &mut std::io::sink()) as u32;
    let local = header(0x0403_4b50, false, csize);
    f.write_all(&local).unwrap();
    deflate_zeros(mib, &mut f);
    let central = header(0x0201_4b50, true, csize);
    let cd_offset = local.len() as u32 + csize;
    f.write_all(&central).unwrap();
    let mut end = 0x0605_4b50u32.to_le_bytes().to_vec();
    end.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    end.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end.extend_from_slice(&cd_offset.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    f.write_all(&end).unwrap();
    f.flush().unwrap();
}

#[test]
fn hostile_truncated_and_corrupted_files_of_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Sources: corpus files and generated ones for kinds the corpus lacks.
    let mut sources: Vec<(PathBuf, Detected)> = [
        "docs/report-1.docx",
        "docs/deck-1.pptx",
        "docs/handbook-1.pdf",
        "sheets/inventory-1.xlsx",
        "sheets/readings-1.xls",
        "sheets/msft.csv",
        "sheets/orders-1.tsv",
        "text/catalog-1.json",
        "text/service-1.log",
        "text/notes-1.md",
    ]
    .iter()
    .map(|rel| {
        let p = PathBuf::from(format!("{CORPUS}/{rel}"));
        let d = detect_file(&p);
        (p, d)
    })
    .collect();
    let ods = src.join("gen.ods");
    valid_ods(&ods);
    sources.push((ods, detected(Kind::Spreadsheet, ODS_MIME)));
    let odt = src.join("gen.odt");
    let content = r#"<office:document-content xmlns:office="o" xmlns:text="t"><office:body><office:text><text:h>Heading</text:h><text:p>Some paragraph text here.</text:p></office:text></office:body></office:document-content>"#;
    write_zip(
        &odt,
        &[
            ("mimetype", detect::MIME_ODT.as_bytes().to_vec()),
            ("content.xml", content.as_bytes().to_vec()),
        ],
    );
    sources.push((odt, detected(Kind::Document, detect::MIME_ODT)));
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut runs = 0;
    for (p, d) in &sources {
        let data = std::fs::read(p).unwrap();
        let name = name_of(p);
        let mut variants: Vec<Vec<u8>> = vec![Vec::new(), data[..data.len().min(10)].to_vec()];
        for _ in 0..3 {
            variants.push(data[..rng.below(data.len())].to_vec());
        }
        for _ in 0..3 {
            // Scattered byte corruption, and one zeroed run.
            let mut bad = data.clone();
            for _ in 0..1 + rng.below(16) {
                let i = rng.below(bad.len());
                bad[i] = rng.next() as u8;
            }
            let at = rng.below(bad.len());
            let end = (at + rng.below(4096)).min(bad.len());
            bad[at..end].fill(0);
            variants.push(bad);
        }
        for (k, v) in variants.iter().enumerate() {
            let path = dir.path().join(&name);
            std::fs::write(&path, v).unwrap();
            for target in [1, 2] {
                let t = std::time::Instant::now();
                let r = run(target, &path, &name, d, 0, &Limits::default());
                assert_bounded(&format!("{name} variant {k} stage {target}"), &r, t);
                runs += 1;
            }
        }
    }
    assert!(runs >= 12 * 8 * 2);
}

#[test]
fn xlsx_sheet_inflating_to_1gib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = detected(Kind::Spreadsheet, detect::MIME_XLSX);
    // Declared honestly (1 GiB), and declared as 1000 bytes.
    for declared in [1u32 << 30, 1000] {
        let p = dir.path().join("bomb.xlsx");
        zip_one_deflated(&p, "xl/worksheets/sheet1.xml", 1024, declared);
        assert!(std::fs::metadata(&p).unwrap().len() < 4 << 20);
        let t = std::time::Instant::now();
        let r = run(1, &p, "bomb.xlsx", &d, 0, &Limits::default());
        assert!(
            matches!(r, Err(TransformError::Limit(_))),
            "declared {declared}: {:?}",
            r.map(|r| r.produced)
        );
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    }
}

#[test]
fn xlsx_1904_dates_come_out_as_iso() {
    let dir = tempfile::tempdir().unwrap();
    let d = detected(Kind::Spreadsheet, detect::MIME_XLSX);
    // 43830 is 2024-01-01 in the 1904 system and 2019-12-31 in the 1900 system.
    let data = format!(
        r#"<row r="1">{}{}</row><row r="2"><c r="A2" s="1"><v>43830</v></c><c r="B2"><v>7</v></c></row><row r="3"><c r="A3" s="1"><v>43831.5</v></c><c r="B3"><v>8</v></c></row>"#,
        inline("A1", "day"),
        inline("B1", "n")
    );
    for (date1904, first, second) in [
        (true, "2024-01-01", "2024-01-02T12:00:00"),
        (false, "2019-12-31", "2020-01-01T12:00:00"),
    ] {
        let p = dir.path().join("dates.xlsx");
        xlsx_zip(&p, &data, date1904);
        let r = run(1, &p, "dates.xlsx", &d, 0, &Limits::default()).unwrap();
        let t = String::from_utf8(r.bytes).unwrap();
        assert!(
            t.contains(&format!(
                "- day: date; 2 values, 0 empty; from {first} to {second}"
            )),
            "{t}"
        );
        assert!(t.contains(&format!("| {first} | 7 |")), "{t}");
        assert!(!t.contains("43830"), "{t}");
    }
}

#[test]
fn xlsx_cells_far_apart_are_read_cell_by_cell() {
    // calamine's whole-range reader would lay out 2^20 x 2^14 cells for this sheet.
    let dir = tempfile::tempdir().unwrap();
    let d = detected(Kind::Spreadsheet, detect::MIME_XLSX);
    let data = format!(
        r#"<row r="1">{}{}</row><row r="2"><c r="A2"><v>1</v></c><c r="XFD2"><v>9</v></c></row><row r="1048576"><c r="B1048576"><v>2</v></c></row>"#,
        inline("A1", "id"),
        inline("B1", "name")
    );
    let p = dir.path().join("sparse.xlsx");
    xlsx_zip(&p, &data, false);
    let t = std::time::Instant::now();
    let r = run(1, &p, "sparse.xlsx", &d, 0, &Limits::default()).unwrap();
    assert!(t.elapsed().as_secs() < 5);
    let text = String::from_utf8(r.bytes).unwrap();
    // The rows in between are empty rows of the used range; far columns are cut.
    assert!(
        text.contains("sheet \"s\": 1048575 rows x 2 columns"),
        "{text}"
    );
    assert!(
        text.contains("- id: integer; 1 values, 1048574 empty"),
        "{text}"
    );
    assert!(
        text.contains("- name: integer; 1 values, 1048574 empty"),
        "{text}"
    );
    assert!(text.len() < 4096);
}

#[test]
fn ods_is_summarised_and_its_repetition_bomb_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = detected(Kind::Spreadsheet, ODS_MIME);
    let p = dir.path().join("ok.ods");
    valid_ods(&p);
    let r = run(1, &p, "ok.ods", &d, 0, &Limits::default()).unwrap();
    let t = String::from_utf8(r.bytes).unwrap();
    assert!(t.contains("sheet \"data\": 30 rows x 3 columns"), "{t}");
    assert!(
        t.contains("- temp: float;") && t.contains("- day: date;"),
        "{t}"
    );
    assert!(t.contains("from 2024-02-01 to 2024-02-28"), "{t}");
    // A thousand-wide row repeated a million times: calamine would expand 10^9 cells.
    let bomb = ods_content(
        r#"<table:table-row table:number-rows-repeated="1000000"><table:table-cell office:value-type="float" office:value="1" table:number-columns-repeated="1000"/></table:table-row>"#,
    );
    let p = dir.path().join("bomb.ods");
    ods_zip(&p, &bomb);
    let t = std::time::Instant::now();
    let r = run(1, &p, "bomb.ods", &d, 0, &Limits::default());
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
    assert!(t.elapsed().as_secs() < 5);
    // Trailing empty repeated rows and columns (as office suites write them) are fine.
    let mut rows = ods_row(&[("string", "a"), ("float", "1")]);
    rows.push_str(&ods_row(&[("string", "b"), ("float", "2")]));
    rows.push_str(r#"<table:table-row table:number-rows-repeated="1048000"><table:table-cell table:number-columns-repeated="1024"/></table:table-row>"#);
    let p = dir.path().join("tail.ods");
    ods_zip(&p, &ods_content(&rows));
    let r = run(2, &p, "tail.ods", &d, 0, &Limits::default()).unwrap();
    let t = String::from_utf8(r.bytes).unwrap();
    assert!(t.contains("1 rows x 2 columns"), "{t}");
}

#[test]
fn xls_with_lying_structures_is_refused_before_calamine() {
    let src = std::fs::read(format!("{CORPUS}/sheets/readings-1.xls")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = detected(Kind::Spreadsheet, detect::MIME_XLS);
    let put32 = |data: &mut Vec<u8>, at: usize, v: u32| {
        data[at..at + 4].copy_from_slice(&v.to_le_bytes());
    };
    let find = |data: &[u8], pat: &[u8]| data.windows(pat.len()).position(|w| w == pat).unwrap();
    let dims = find(&src, &[0x00, 0x02, 0x0E, 0x00]) + 4;
    let number = find(&src, &[0x03, 0x02, 0x0E, 0x00]) + 4;
    let dir_start = u32::from_le_bytes(src[48..52].try_into().unwrap()) as usize;
    let fat0 = u32::from_le_bytes(src[76..80].try_into().unwrap()) as usize;
    type Patch<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
    // (what, patch, whether a Limit rather than a Decode error is expected)
    let cases: Vec<(&str, Patch<'_>, bool)> = vec![
        // DIMENSIONS claiming 2^32 rows: calamine reserves rows x columns cells up front.
        (
            "dimensions",
            Box::new(move |x| put32(x, dims + 4, u32::MAX)),
            true,
        ),
        // One cell moved to the last row and column: a dense 65536 x 256 range.
        (
            "cell span",
            Box::new(move |x| {
                x[number..number + 4].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0x00]);
            }),
            true,
        ),
        // Header counts and sector numbers beyond the file.
        ("fat count", Box::new(|x| put32(x, 44, u32::MAX)), false),
        (
            "directory sector",
            Box::new(|x| put32(x, 48, 0x7FFF_FFFF)),
            false,
        ),
        // calamine sizes a buffer from bytes 62..66 (two half fields): 2^32 entries.
        ("difat size", Box::new(|x| put32(x, 62, u32::MAX)), false),
        // The directory chain pointing at itself: calamine would follow it forever.
        (
            "fat cycle",
            Box::new(move |x| {
                let entry = 512 + (fat0 + dir_start / 128) * 512 + (dir_start % 128) * 4;
                put32(x, entry, dir_start as u32);
            }),
            false,
        ),
    ];
    for (what, patch, limit) in cases {
        let mut data = src.clone();
        patch(&mut data);
        let p = dir.path().join("bad.xls");
        std::fs::write(&p, &data).unwrap();
        let t = std::time::Instant::now();
        let r = run(1, &p, "bad.xls", &d, 0, &Limits::default());
        let ok = if limit {
            matches!(r, Err(TransformError::Limit(_)))
        } else {
            matches!(r, Err(TransformError::Decode { .. }))
        };
        assert!(ok, "{what}: {:?}", r.map(|r| r.produced));
        assert!(t.elapsed().as_secs() < 5, "{what}");
    }
    // A macro project whose streams could inflate past the allocation limit.
    let vba = ole_file(&[
        ("Workbook", &[0u8; 4096]),
        ("_VBA_PROJECT_CUR", &[]),
        ("dir", &vec![7u8; 200_000]),
    ]);
    let p = dir.path().join("macro.xls");
    std::fs::write(&p, &vba).unwrap();
    let r = run(1, &p, "macro.xls", &d, 0, &Limits::default());
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
    // The unpatched file passes the same checks.
    assert!(run(
        1,
        &PathBuf::from(format!("{CORPUS}/sheets/readings-1.xls")),
        "r.xls",
        &d,
        0,
        &Limits::default()
    )
    .is_ok());
}

#[test]
fn pdf_inflation_bombs_hit_limits() {
    let dir = tempfile::tempdir().unwrap();
    let d = detected(Kind::Document, "application/pdf");
    let p = dir.path().join("bomb.pdf");
    let check = |name: &str, pdf: &[u8], limits: &Limits| {
        std::fs::write(&p, pdf).unwrap();
        let t = std::time::Instant::now();
        let r = run(1, &p, "bomb.pdf", &d, 0, limits);
        assert!(
            matches!(r, Err(TransformError::Limit(_))),
            "{name}: {:?}",
            r.map(|r| r.produced)
        );
        assert!(t.elapsed().as_secs() < 8, "{name} took {:?}", t.elapsed());
    };
    // A content stream inflating to 1 GiB, under the default limits.
    let gib = zlib_zeros(1024);
    assert!(gib.len() < 2 << 20);
    check(
        "1 GiB flate",
        &one_page_pdf("/Filter /FlateDecode", &gib),
        &Limits::default(),
    );
    let small = Limits {
        max_inflated_bytes: 4 << 20,
        ..Limits::default()
    };
    // The same bomb hidden where lopdf decompresses it while loading: an object stream.
    let objstm = pdf_file(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [] /Count 0 >>".to_vec(),
        stream_obj(
            "/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode",
            &zlib_zeros(64),
        ),
    ]);
    check("object stream", &objstm, &small);
    // Deflate inside deflate, and ASCII85 around deflate.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&zlib_zeros(64)).unwrap();
    let twice = z.finish().unwrap();
    check(
        "nested flate",
        &one_page_pdf("/Filter [/FlateDecode /FlateDecode]", &twice),
        &small,
    );
    let a85 = ascii85(&zlib_zeros(64));
    check(
        "ascii85 flate",
        &one_page_pdf("/Filter [/ASCII85Decode /FlateDecode]", &a85),
        &small,
    );
    // LZW: a run of zeros codes as a few thousand growing codes.
    let zeros = vec![0u8; 16 << 20];
    let lzw = weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
        .encode(&zeros)
        .unwrap();
    assert!(lzw.len() < zeros.len() / 100);
    check("lzw", &one_page_pdf("/Filter /LZWDecode", &lzw), &small);
}

/// ASCII85 encoding with the end marker (the `z` shorthand for zero groups included).
fn ascii85(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(4) {
        let mut g = [0u8; 4];
        g[..chunk.len()].copy_from_slice(chunk);
        let v = u32::from_be_bytes(g);
        if v == 0 && chunk.len() == 4 {
            out.push(b'z');
            continue;
        }
        let mut digits = [0u8; 5];
        let mut x = v;
        for d in digits.iter_mut().rev() {
            *d = (x % 85) as u8 + b'!';
            x /= 85;
        }
        out.extend_from_slice(&digits[..chunk.len() + 1]);
    }
    out.extend_from_slice(b"~>");
    out
}

#[test]
fn pdf_nesting_predictor_and_length_chains_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = detected(Kind::Document, "application/pdf");
    let p = dir.path().join("x.pdf");
    let go = |pdf: &[u8]| {
        std::fs::write(&p, pdf).unwrap();
        let t = std::time::Instant::now();
        let r = run(1, &p, "x.pdf", &d, 0, &Limits::default());
        assert!(t.elapsed().as_secs() < 8, "took {:?}", t.elapsed());
        r
    };
    let nested = |depth: usize| {
        let mut o = b"<< /Type /Catalog /Pages 2 0 R /X ".to_vec();
        o.extend(std::iter::repeat_n(b'[', depth));
        o.extend(std::iter::repeat_n(b']', depth));
        o.extend_from_slice(b" >>");
        o
    };
    let pages = b"<< /Type /Pages /Kids [] /Count 0 >>".to_vec();
    // 100000 levels would overflow any thread's stack inside lopdf's parser.
    let r = go(&pdf_file(&[nested(100_000), pages.clone()]));
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
    // 2000 levels overflow an 8 MiB stack in a debug build; the big-stack thread copes.
    let r = go(&pdf_file(&[nested(2000), pages.clone()]));
    assert_bounded("nested 2000", &r, std::time::Instant::now());
    // The same nesting inside a compressed content stream.
    let mut content = vec![b'['; 100_000];
    content.extend(vec![b']'; 100_000]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&content).unwrap();
    let r = go(&one_page_pdf("/Filter /FlateDecode", &z.finish().unwrap()));
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
    // A predictor row of 10^12 bytes (escaped name, as lopdf reads it).
    let r = go(&one_page_pdf(
        "/Filter /FlateDecode /DecodeParms << /Predictor 12 /Col#75mns 1000000000000 >>",
        &zlib_zeros(1),
    ));
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
    // Streams whose /Length is the next stream, 500 deep: lopdf resolves them recursively.
    let mut objs = vec![b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(), pages.clone()];
    for i in 0..500 {
        let next = i + 4;
        let mut o = format!("<< /Length {next} 0 R >>\nstream\n").into_bytes();
        o.extend_from_slice(b"abc\nendstream");
        objs.push(o);
    }
    let r = go(&pdf_file(&objs));
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
    // An ordinary small PDF still gives its title and text.
    let r = go(&one_page_pdf(
        "",
        b"BT /F1 12 Tf 0 0 Td (Hello there world) Tj ET",
    ))
    .unwrap();
    let t = String::from_utf8(r.bytes).unwrap();
    assert!(
        t.contains("title: Hostile") && t.contains("author: Test"),
        "{t}"
    );
}

#[test]
fn csv_record_that_never_ends_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("endless.csv");
    let mut data = b"a,b\n1,\"".to_vec();
    data.extend(std::iter::repeat_n(b'x', 3 << 20));
    std::fs::write(&p, &data).unwrap();
    let d = detected(Kind::Spreadsheet, "text/csv");
    let r = run(1, &p, "endless.csv", &d, 0, &Limits::default());
    assert!(
        matches!(r, Err(TransformError::Limit(_))),
        "{:?}",
        r.map(|r| r.produced)
    );
}

#[test]
fn tiny_time_limit_stops_text_and_sheet_transforms() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Limits {
        max_transform_time: std::time::Duration::from_millis(1),
        ..Limits::default()
    };
    let mut log = String::new();
    let mut json = String::from("[");
    let mut csv = String::from("id,name,score\n");
    let mut md = String::new();
    let mut txt = String::new();
    for i in 0..200_000 {
        log.push_str(&format!(
            "2026-01-01T00:00:{:02} {} [w-{}] step {i} done\n",
            i % 60,
            ["INFO", "WARN", "ERROR"][i % 3],
            i % 7
        ));
        json.push_str(&format!("{{\"id\":{i},\"tags\":[\"a\",\"b\"]}},"));
        csv.push_str(&format!("{i},n{i},{}.5\n", i % 100));
        md.push_str(&format!("Line {i} of prose.\n"));
        txt.push_str(&format!("Sentence number {i} is here.\n"));
    }
    json.push_str("0]");
    let d = |k, f: &str| detected(k, f);
    let cases = [
        ("big.log", log, d(Kind::Text, detect::MIME_LOG)),
        ("big.json", json, d(Kind::Text, "application/json")),
        ("big.csv", csv, d(Kind::Spreadsheet, "text/csv")),
        ("big.md", md, d(Kind::Text, "text/markdown")),
        ("big.txt", txt, d(Kind::Text, "text/plain")),
    ];
    for (name, body, det) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        let r = run(1, &p, name, &det, 0, &tiny);
        assert!(
            matches!(r, Err(TransformError::Limit(ref m)) if m.contains("longer than")),
            "{name}: {:?}",
            r.map(|r| r.produced)
        );
        // With the default limits the same file is summarised.
        assert!(
            run(1, &p, name, &det, 0, &Limits::default()).is_ok(),
            "{name}"
        );
    }
}

/// A minimal compound file (512-byte sectors) holding the given streams, each padded to at
/// least 4096 bytes (so none lives in the mini stream); an empty one becomes a storage entry.
fn ole_file(streams: &[(&str, &[u8])]) -> Vec<u8> {
    const END: u32 = 0xFFFF_FFFE;
    const FREE: u32 = 0xFFFF_FFFF;
    let bodies: Vec<Vec<u8>> = streams
        .iter()
        .map(|(_, s)| {
            let mut b = s.to_vec();
            if !b.is_empty() {
                b.resize(b.len().max(4096).div_ceil(512) * 512, 0);
            }
            b
        })
        .collect();
    let data_sectors: usize = bodies.iter().map(|b| b.len() / 512).sum();
    let dir_sectors = (streams.len() + 1).div_ceil(4);
    let fat_sectors = (1 + dir_sectors + data_sectors + 1).div_ceil(127);
    // Sectors: FAT, then the directory, then each stream in turn.
    let mut fat: Vec<u32> = vec![0xFFFF_FFFD; fat_sectors];
    let dir_start = fat.len() as u32;
    for k in 0..dir_sectors {
        fat.push(if k + 1 < dir_sectors {
            dir_start + k as u32 + 1
        } else {
            END
        });
    }
    let mut starts = Vec::new();
    for b in &bodies {
        let n = b.len() / 512;
        let first = fat.len() as u32;
        starts.push(if n == 0 { END } else { first });
        for k in 0..n {
            fat.push(if k + 1 < n { first + k as u32 + 1 } else { END });
        }
    }
    fat.resize(fat_sectors * 128, FREE);
    let mut h = vec![0u8; 512];
    h[..8].copy_from_slice(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    let put16 = |b: &mut [u8], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put16(&mut h, 24, 0x3E);
    put16(&mut h, 26, 3);
    put16(&mut h, 28, 0xFFFE);
    put16(&mut h, 30, 9);
    put16(&mut h, 32, 6);
    put32(&mut h, 44, fat_sectors as u32);
    put32(&mut h, 48, dir_start);
    put32(&mut h, 56, 4096);
    put32(&mut h, 60, END); // no mini FAT
    put32(&mut h, 68, END); // no DIFAT sectors
    for i in 0..109 {
        put32(
            &mut h,
            76 + 4 * i,
            if i < fat_sectors { i as u32 } else { FREE },
        );
    }
    let entry = |name: &str, ty: u8, start: u32, len: u32| {
        let mut e = vec![0u8; 128];
        let units: Vec<u16> = name.encode_utf16().collect();
        for (i, u) in units.iter().enumerate() {
            e[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        e[64..66].copy_from_slice(&((units.len() as u16 + 1) * 2).to_le_bytes());
        e[66] = ty;
        e[68..80].copy_from_slice(&[0xFF; 12]); // no siblings or child
        e[116..120].copy_from_slice(&start.to_le_bytes());
        e[120..124].copy_from_slice(&len.to_le_bytes());
        e
    };
    let mut dir = entry("Root Entry", 5, END, 0);
    dir[76..80].copy_from_slice(&1u32.to_le_bytes()); // child: entry 1
    for (((name, _), b), start) in streams.iter().zip(&bodies).zip(&starts) {
        let ty = if b.is_empty() { 1 } else { 2 };
        dir.extend(entry(name, ty, *start, b.len() as u32));
    }
    dir.resize(dir_sectors * 512, 0);
    let mut out = h;
    out.extend(fat.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(dir);
    for b in bodies {
        out.extend(b);
    }
    out
}

/// A SummaryInformation property set: title, author (8-bit strings), page count, creation
/// time.
fn summary_information(title: &str, author: &str, pages: i32) -> Vec<u8> {
    let mut props: Vec<(u32, Vec<u8>)> = Vec::new();
    let lpstr = |s: &str| {
        let mut v = 0x1Eu32.to_le_bytes().to_vec();
        v.extend(((s.len() + 1) as u32).to_le_bytes());
        v.extend(s.as_bytes());
        v.push(0);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    };
    props.push((2, lpstr(title)));
    props.push((4, lpstr(author)));
    let mut pc = 3u32.to_le_bytes().to_vec();
    pc.extend(pages.to_le_bytes());
    props.push((14, pc));
    // 2024-03-01T12:00:00Z as a FILETIME.
    let mut ft = 0x40u32.to_le_bytes().to_vec();
    ft.extend(((1_709_294_400u64 + 11_644_473_600) * 10_000_000).to_le_bytes());
    props.push((12, ft));
    let table = 8 + 8 * props.len();
    let mut set = Vec::new();
    let mut values: Vec<u8> = Vec::new();
    let mut index = Vec::new();
    for (pid, v) in &props {
        index.extend(pid.to_le_bytes());
        index.extend(((table + values.len()) as u32).to_le_bytes());
        values.extend(v);
    }
    set.extend(((table + values.len()) as u32).to_le_bytes());
    set.extend((props.len() as u32).to_le_bytes());
    set.extend(index);
    set.extend(values);
    let mut s = vec![0xFE, 0xFF, 0, 0, 0x0A, 0, 2, 0];
    s.extend([0u8; 16]); // CLSID
    s.extend(1u32.to_le_bytes()); // one property set
    s.extend([
        0xE0, 0x85, 0x9F, 0xF2, 0xF9, 0x4F, 0x68, 0x10, 0xAB, 0x91, 0x08, 0x00, 0x2B, 0x27, 0xB3,
        0xD9,
    ]);
    s.extend(48u32.to_le_bytes());
    s.extend(set);
    s
}

#[test]
fn legacy_doc_metadata_comes_from_summary_information() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("old.doc");
    let mut data = ole_file(&[(
        "\u{5}SummaryInformation",
        &summary_information("Budget memo", "Grace", 3),
    )]);
    for c in "Quarterly budget figures follow".encode_utf16() {
        data.extend_from_slice(&c.to_le_bytes());
    }
    std::fs::write(&p, &data).unwrap();
    let d = detected(Kind::Document, detect::MIME_DOC);
    let r = run(1, &p, "old.doc", &d, 0, &Limits::default()).unwrap();
    let t = String::from_utf8(r.bytes).unwrap();
    for line in [
        "title: Budget memo\n",
        "author: Grace\n",
        "pages: 3\n",
        "created: 2024-03-01T12:00:00\n",
    ] {
        assert!(t.contains(line), "{line}: {t}");
    }
    assert!(t.contains("Quarterly budget figures follow"), "{t}");
    let r2 = run(2, &p, "old.doc", &d, 0, &Limits::default()).unwrap();
    let t2 = String::from_utf8(r2.bytes).unwrap();
    assert!(
        t2.contains("title: Budget memo\n") && t2.len() <= 2048,
        "{t2}"
    );
    // A looping stream chain loses the metadata, a looping directory chain the structure;
    // both still get a summary of printable strings.
    for (sector, unreadable) in [(2usize, false), (1, true)] {
        let mut bad = data.clone();
        bad[512 + 4 * sector..512 + 4 * sector + 4].copy_from_slice(&(sector as u32).to_le_bytes());
        std::fs::write(&p, &bad).unwrap();
        let t = std::time::Instant::now();
        let r = run(1, &p, "old.doc", &d, 0, &Limits::default()).unwrap();
        assert!(t.elapsed().as_secs() < 5);
        let t = String::from_utf8(r.bytes).unwrap();
        assert!(!t.contains("title:"), "{t}");
        assert_eq!(t.contains("structure: unreadable"), unreadable, "{t}");
        assert!(t.contains("Quarterly budget figures follow"), "{t}");
    }
}
