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
        assert!(s1.bytes.len() >= s2.bytes.len(), "{p:?}");
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
        assert!(t1.contains("text:\n"), "{p:?} has text:\n{t1}");
        let name = name_of(&p);
        if name.ends_with(".docx") {
            assert!(t1.contains("title: Quarterly operations report 1"), "{t1}");
            assert!(t1.contains("Section 1: Roadmap"));
        }
        if name.ends_with(".pptx") {
            assert!(
                t1.contains("slides: ") && t1.contains("  1. Slide 1: Risks"),
                "{t1}"
            );
        }
        if name.ends_with(".pdf") {
            assert!(t1.contains("pages: 4"), "{t1}");
        }
        let t2 = String::from_utf8(s2.bytes).unwrap();
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
