//! Documents: text summaries of PDF (lopdf), OOXML and OpenDocument (zip + quick-xml), and a
//! metadata-only summary of legacy OLE2 doc/ppt. Stage 1: title, author, pages or slides,
//! headings, first paragraphs (about 8 KiB). Stage 2: compact metadata and first paragraph.

use std::fmt::Write as _;
use std::path::Path;

use super::detect::{MIME_DOC, MIME_DOCX, MIME_ODP, MIME_ODT, MIME_PPT, MIME_PPTX};
use super::util::{
    clip, clip_ellipsis, ext, file_len, fit_lines, read_bounded, squash_ws, write_out,
};
use super::xml::{walk, XmlEvent};
use super::ziplimit::LimitedZip;
use super::{Encoding, Input, Limits, Produced, TransformError};

pub const STAGE1_BUDGET: usize = 8 * 1024;
pub const STAGE2_BUDGET: usize = 2048;
/// Paragraph text collected before the rest of a document is skipped.
const COLLECT_CHARS: usize = 16 * 1024;
const MAX_HEADINGS: usize = 200;
const MAX_SLIDES_READ: usize = 500;
const PDF_PAGES_READ: u32 = 20;
const OLE_SCAN: u64 = 4 * 1024 * 1024;

#[derive(Default)]
struct DocInfo {
    title: Option<String>,
    author: Option<String>,
    /// ("pages" | "slides", count)
    count: Option<(&'static str, u64)>,
    headings: Vec<String>,
    paragraphs: Vec<String>,
    collected: usize,
    /// Extra "key: value" lines (e.g. printable strings of a legacy file).
    extra: Vec<String>,
}

impl DocInfo {
    fn full(&self) -> bool {
        self.collected >= COLLECT_CHARS && self.headings.len() >= MAX_HEADINGS
    }

    fn heading(&mut self, h: &str) {
        let h = squash_ws(h);
        if !h.is_empty() && self.headings.len() < MAX_HEADINGS {
            self.headings.push(clip_ellipsis(&h, 200));
        }
    }

    fn paragraph(&mut self, p: &str) {
        let p = squash_ws(p);
        // Bare numbers and labels (table cells, page numbers) say little in a summary.
        let letters = p.chars().filter(|c| c.is_alphabetic()).count();
        if letters >= 3 && self.collected < COLLECT_CHARS {
            let p = clip_ellipsis(&p, 2000);
            self.collected += p.len();
            self.paragraphs.push(p);
        }
    }
}

fn some_text(s: &str) -> Option<String> {
    let s = squash_ws(s);
    (!s.is_empty()).then(|| clip_ellipsis(&s, 300))
}

fn header_lines(input: &Input<'_>, info: &DocInfo, size: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "document: {}", clip(input.name, 300));
    let _ = writeln!(s, "format: {}", input.format);
    let _ = writeln!(s, "size: {size} bytes");
    if let Some(t) = &info.title {
        let _ = writeln!(s, "title: {t}");
    }
    if let Some(a) = &info.author {
        let _ = writeln!(s, "author: {a}");
    }
    if let Some((label, n)) = info.count {
        let _ = writeln!(s, "{label}: {n}");
    }
    for e in &info.extra {
        let _ = writeln!(s, "{e}");
    }
    s
}

fn render_stage1(input: &Input<'_>, info: &DocInfo, size: u64, budget: usize) -> String {
    let mut s = header_lines(input, info, size);
    if !info.headings.is_empty() {
        s.push_str("\nheadings:\n");
        for h in &info.headings {
            if s.len() + h.len() + 3 > budget / 2 {
                s.push_str("  ...\n");
                break;
            }
            let _ = writeln!(s, "  {h}");
        }
    }
    if !info.paragraphs.is_empty() {
        s.push_str("\ntext:\n");
        for p in &info.paragraphs {
            let room = budget.saturating_sub(s.len() + 2);
            if room < 40 {
                break;
            }
            let _ = writeln!(s, "{}\n", clip_ellipsis(p, room.min(1200)));
        }
    }
    fit_lines(&s, budget)
}

/// Stage 2 from a stage-1 summary: the metadata block and the first paragraph.
fn compact(stage1: &str, budget: usize) -> String {
    let mut s = String::new();
    let mut lines = stage1.lines();
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            break;
        }
        let _ = writeln!(s, "{l}");
    }
    let mut in_text = false;
    for l in lines {
        if l == "text:" {
            in_text = true;
            continue;
        }
        if in_text && !l.trim().is_empty() {
            let room = budget.saturating_sub(s.len() + 20);
            if room > 40 {
                let _ = writeln!(s, "first paragraph: {}", clip_ellipsis(l, room));
            }
            break;
        }
    }
    fit_lines(&s, budget)
}

// ---------------------------------------------------------------------------------------------
// XML-based formats

fn read_props(
    zip: &mut LimitedZip,
    name: &str,
    info: &mut DocInfo,
    limits: &Limits,
) -> Result<(), TransformError> {
    let Some(data) = zip.read(name)? else {
        return Ok(());
    };
    let mut field: Option<&'static str> = None;
    let mut buf = String::new();
    walk(&data, limits.max_xml_depth, |ev| {
        match ev {
            XmlEvent::Start(n, attrs) => {
                field = match n {
                    "title" => Some("title"),
                    "creator" | "initial-creator" => Some("author"),
                    "Pages" => Some("pages"),
                    "Slides" => Some("slides"),
                    _ => None,
                };
                buf.clear();
                if n == "document-statistic" {
                    if let Some((_, v)) = attrs.iter().find(|(k, _)| k == "page-count") {
                        if let Ok(p) = v.parse() {
                            info.count.get_or_insert(("pages", p));
                        }
                    }
                }
            }
            XmlEvent::Text(t) => {
                if field.is_some() && buf.len() < 1000 {
                    buf.push_str(t);
                }
            }
            XmlEvent::End(_) => {
                match field {
                    Some("title") if info.title.is_none() => info.title = some_text(&buf),
                    Some("author") if info.author.is_none() => info.author = some_text(&buf),
                    Some(label @ ("pages" | "slides")) => {
                        if let Ok(n) = buf.trim().parse() {
                            info.count = Some((label, n));
                        }
                    }
                    _ => {}
                }
                field = None;
            }
        }
        true
    })
}

/// Paragraph-level text of a body part. `text_elem` restricts text to one element ("t" in
/// OOXML); None takes all text inside paragraphs (OpenDocument).
fn read_body(
    data: &[u8],
    limits: &Limits,
    info: &mut DocInfo,
    text_elem: Option<&str>,
    slide: Option<usize>,
) -> Result<(), TransformError> {
    let mut p_depth = 0usize;
    let mut in_t = false;
    let mut cur = String::new();
    let mut style_heading = false;
    let mut title_shape = false;
    let mut slide_title: Option<String> = None;
    let mut slide_title_frame_depth: Option<usize> = None;
    let mut depth = 0usize;
    walk(data, limits.max_xml_depth, |ev| {
        match ev {
            XmlEvent::Start(n, attrs) => {
                depth += 1;
                match n {
                    "p" | "h" => {
                        if p_depth == 0 {
                            cur.clear();
                            style_heading = n == "h";
                        }
                        p_depth += 1;
                    }
                    "pStyle" => {
                        if let Some((_, v)) = attrs.iter().find(|(k, _)| k == "val") {
                            let v = v.to_ascii_lowercase();
                            style_heading =
                                v.starts_with("heading") || v == "title" || v == "subtitle";
                        }
                    }
                    "sp" => title_shape = false,
                    "ph" => {
                        title_shape = attrs
                            .iter()
                            .any(|(k, v)| k == "type" && (v == "title" || v == "ctrTitle"));
                    }
                    "frame" if attrs.iter().any(|(k, v)| k == "class" && v == "title") => {
                        slide_title_frame_depth = Some(depth);
                    }
                    "t" => in_t = true,
                    "tab" | "s" | "br" | "line-break" => cur.push(' '),
                    _ => {}
                }
            }
            XmlEvent::Text(t) => {
                let take = match text_elem {
                    Some(_) => in_t,
                    None => p_depth > 0,
                };
                if take && cur.len() < 4000 {
                    cur.push_str(t);
                }
            }
            XmlEvent::End(n) => {
                match n {
                    "t" => in_t = false,
                    "p" | "h" if p_depth > 0 => {
                        p_depth -= 1;
                        if p_depth == 0 {
                            let in_title = slide.is_some()
                                && (title_shape || slide_title_frame_depth.is_some());
                            if in_title {
                                if slide_title.is_none() {
                                    slide_title = some_text(&cur);
                                }
                            } else if style_heading {
                                info.heading(&cur);
                            } else {
                                info.paragraph(&cur);
                            }
                            cur.clear();
                        }
                    }
                    "frame" if slide_title_frame_depth == Some(depth) => {
                        slide_title_frame_depth = None
                    }
                    // OpenDocument presentations: one draw:page per slide.
                    "page" if slide.is_some() => {
                        let n = info.count.map(|c| c.1).unwrap_or(0) + 1;
                        info.count = Some(("slides", n));
                        let t = slide_title.take().unwrap_or_default();
                        info.heading(&format!("{n}. {t}"));
                    }
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
        }
        !info.full()
    })?;
    if let (Some(n), Some(t)) = (slide, slide_title) {
        info.heading(&format!("{n}. {t}"));
    }
    Ok(())
}

fn slide_number(name: &str) -> Option<usize> {
    name.strip_prefix("ppt/slides/slide")?
        .strip_suffix(".xml")?
        .parse()
        .ok()
}

fn zip_doc(input: &Input<'_>, limits: &Limits, which: &str) -> Result<DocInfo, TransformError> {
    let mut zip = super::ziplimit::open(input.path, input.format, limits)?;
    let mut info = DocInfo::default();
    let missing = |part: &str| TransformError::decode(input.format, format!("missing {part}"));
    match which {
        "docx" => {
            read_props(&mut zip, "docProps/core.xml", &mut info, limits)?;
            read_props(&mut zip, "docProps/app.xml", &mut info, limits)?;
            let body = zip
                .read("word/document.xml")?
                .ok_or_else(|| missing("word/document.xml"))?;
            read_body(&body, limits, &mut info, Some("t"), None)?;
        }
        "pptx" => {
            read_props(&mut zip, "docProps/core.xml", &mut info, limits)?;
            let mut slides: Vec<(usize, String)> = zip
                .names()
                .into_iter()
                .filter_map(|n| slide_number(&n).map(|k| (k, n)))
                .collect();
            slides.sort();
            info.count = Some(("slides", slides.len() as u64));
            for (i, (_, name)) in slides.iter().take(MAX_SLIDES_READ).enumerate() {
                if let Some(data) = zip.read(name)? {
                    read_body(&data, limits, &mut info, Some("t"), Some(i + 1))?;
                }
            }
        }
        _ => {
            read_props(&mut zip, "meta.xml", &mut info, limits)?;
            let body = zip
                .read("content.xml")?
                .ok_or_else(|| missing("content.xml"))?;
            let slide = (which == "odp").then_some(0);
            if slide.is_some() {
                info.count = None;
            }
            read_body(&body, limits, &mut info, None, slide)?;
        }
    }
    Ok(info)
}

// ---------------------------------------------------------------------------------------------
// PDF

fn pdf_doc(input: &Input<'_>, limits: &Limits) -> Result<DocInfo, TransformError> {
    let f = input.format;
    let (data, truncated) = read_bounded(input.path, limits.max_alloc_bytes)?;
    if truncated {
        return Err(TransformError::Limit(format!(
            "pdf larger than {} bytes",
            limits.max_alloc_bytes
        )));
    }
    let doc = lopdf::Document::load_mem(&data).map_err(|e| TransformError::decode(f, e))?;
    drop(data);
    let mut info = DocInfo::default();
    let dict = doc.trailer.get(b"Info").ok().and_then(|o| match o {
        lopdf::Object::Reference(id) => doc.get_dictionary(*id).ok(),
        lopdf::Object::Dictionary(d) => Some(d),
        _ => None,
    });
    if let Some(d) = dict {
        let get = |k: &[u8]| {
            d.get(k)
                .ok()
                .and_then(|o| lopdf::decode_text_string(o).ok())
                .and_then(|s| some_text(&s))
        };
        info.title = get(b"Title");
        info.author = get(b"Author");
    }
    let pages = doc.get_pages();
    info.count = Some(("pages", pages.len() as u64));
    let mut inflate_left = limits.max_inflated_bytes;
    for (&num, &page_id) in pages.iter().take(PDF_PAGES_READ as usize) {
        if info.collected >= COLLECT_CHARS {
            break;
        }
        check_page_inflation(&doc, page_id, &mut inflate_left)?;
        let Ok(text) = doc.extract_text(&[num]) else {
            continue;
        };
        // Lines of one page joined into paragraphs at blank lines.
        let mut para = String::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                info.paragraph(&para);
                para.clear();
            } else {
                para.push(' ');
                para.push_str(line);
                if para.len() > 600 {
                    info.paragraph(&para);
                    para.clear();
                }
            }
        }
        info.paragraph(&para);
    }
    Ok(info)
}

/// lopdf inflates content streams without a bound, so before text extraction the Flate
/// streams of a page are inflated here into a counting sink, against `left`.
fn check_page_inflation(
    doc: &lopdf::Document,
    page_id: lopdf::ObjectId,
    left: &mut u64,
) -> Result<(), TransformError> {
    use std::io::Read;
    for id in doc.get_page_contents(page_id) {
        let Ok(stream) = doc.get_object(id).and_then(lopdf::Object::as_stream) else {
            continue;
        };
        let first = stream
            .filters()
            .ok()
            .and_then(|f| f.first().map(|f| f.to_vec()));
        let n = if first.as_deref() == Some(b"FlateDecode".as_slice()) {
            let mut dec = flate2::read::ZlibDecoder::new(stream.content.as_slice())
                .take(left.saturating_add(1));
            std::io::copy(&mut dec, &mut std::io::sink()).unwrap_or(0)
        } else {
            stream.content.len() as u64
        };
        if n > *left {
            return Err(TransformError::Limit(
                "pdf content streams inflate past the limit".to_string(),
            ));
        }
        *left -= n;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Legacy OLE2 documents: metadata and printable strings only

fn printable_strings(data: &[u8], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let push = |s: String, out: &mut Vec<String>| {
        let s = squash_ws(&s);
        if s.len() >= 8
            && s.chars().filter(|c| c.is_alphabetic()).count() * 2 >= s.len()
            && !out.contains(&s)
            && out.len() < max
        {
            out.push(clip_ellipsis(&s, 200));
        }
    };
    // 8-bit runs.
    let mut cur = String::new();
    for &b in data {
        if (0x20..0x7F).contains(&b) {
            cur.push(b as char);
        } else {
            push(std::mem::take(&mut cur), &mut out);
        }
    }
    push(cur, &mut out);
    // UTF-16LE runs (Word and PowerPoint store most text this way).
    let mut cur = String::new();
    for pair in data.chunks_exact(2) {
        let u = u16::from_le_bytes([pair[0], pair[1]]);
        match char::from_u32(u as u32) {
            Some(c)
                if ((0x20..0x180).contains(&u) || (0x370..0x530).contains(&u))
                    && (c.is_alphanumeric() || c.is_ascii_punctuation() || c == ' ') =>
            {
                cur.push(c)
            }
            _ => push(std::mem::take(&mut cur), &mut out),
        }
    }
    push(cur, &mut out);
    out
}

fn ole_doc(input: &Input<'_>) -> Result<DocInfo, TransformError> {
    let (data, _) = read_bounded(input.path, OLE_SCAN)?;
    let mut info = DocInfo::default();
    for s in printable_strings(&data, 60) {
        info.paragraph(&s);
    }
    info.extra
        .push("content: legacy binary format, metadata and printable strings only".into());
    Ok(info)
}

// ---------------------------------------------------------------------------------------------

fn which(input: &Input<'_>) -> &'static str {
    match input.format {
        "application/pdf" => return "pdf",
        MIME_DOCX => return "docx",
        MIME_PPTX => return "pptx",
        MIME_ODT => return "odt",
        MIME_ODP => return "odp",
        MIME_DOC | MIME_PPT => return "ole",
        _ => {}
    }
    match ext(input.name).as_str() {
        "pdf" => "pdf",
        "docx" => "docx",
        "pptx" => "pptx",
        "odt" => "odt",
        "odp" => "odp",
        _ => "ole",
    }
}

pub(crate) fn apply(
    target: u8,
    input: &Input<'_>,
    out: &Path,
    limits: &Limits,
) -> Result<Produced, TransformError> {
    let size = file_len(input.path)?;
    let cap = |b: usize| {
        if size > 256 {
            b.min(size as usize * 3 / 4)
        } else {
            b
        }
    };
    let budget = cap(if target >= 2 {
        STAGE2_BUDGET
    } else {
        STAGE1_BUDGET
    });
    let (text, note) = if input.stage >= 1 {
        let (data, _) = read_bounded(input.path, limits.max_text_scan_bytes)?;
        (
            compact(&String::from_utf8_lossy(&data), budget),
            "document metadata".to_string(),
        )
    } else {
        let kind = which(input);
        let info = match kind {
            "pdf" => pdf_doc(input, limits)?,
            "ole" => ole_doc(input)?,
            other => zip_doc(input, limits, other)?,
        };
        let stage1 = render_stage1(input, &info, size, cap(STAGE1_BUDGET));
        let count = info
            .count
            .map(|(l, n)| format!(", {n} {l}"))
            .unwrap_or_default();
        if target >= 2 {
            (compact(&stage1, budget), format!("{kind} metadata{count}"))
        } else {
            (stage1, format!("{kind} text summary{count}"))
        }
    };
    write_out(out, text.as_bytes())?;
    Ok(Produced {
        format: "text/plain".into(),
        encoding: Encoding::Plain,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_from_legacy_bytes() {
        let mut data = b"\x00\x01Quarterly results are in\x00\x02".to_vec();
        for c in "Budget overview text".encode_utf16() {
            data.extend_from_slice(&c.to_le_bytes());
        }
        let s = printable_strings(&data, 10);
        assert!(s.iter().any(|x| x == "Quarterly results are in"));
        assert!(s.iter().any(|x| x == "Budget overview text"));
    }

    #[test]
    fn compact_keeps_metadata_and_first_paragraph() {
        let s1 = "document: a.pdf\nformat: application/pdf\ntitle: T\n\nheadings:\n  H\n\ntext:\nFirst para.\n\nSecond.\n";
        let c = compact(s1, 2048);
        assert!(c.contains("title: T"));
        assert!(c.contains("first paragraph: First para."));
        assert!(!c.contains("Second"));
    }

    /// A one-page PDF whose content stream is a small deflate of many megabytes.
    fn bomb_pdf(inflated: usize) -> Vec<u8> {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![b' '; 1 << 16];
        let mut left = inflated;
        while left > 0 {
            let n = left.min(chunk.len());
            z.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        let body = z.finish().unwrap();
        let mut pdf = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        let objs: Vec<Vec<u8>> = vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] /Contents 4 0 R >>".to_vec(),
            {
                let mut s = format!(
                    "<< /Length {} /Filter /FlateDecode >>\nstream\n",
                    body.len()
                )
                .into_bytes();
                s.extend_from_slice(&body);
                s.extend_from_slice(b"\nendstream");
                s
            },
        ];
        for (i, o) in objs.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            pdf.extend_from_slice(o);
            pdf.extend_from_slice(b"\nendobj\n");
        }
        let xref = pdf.len();
        pdf.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes(),
        );
        for o in offsets {
            pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        pdf.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objs.len() + 1
            )
            .as_bytes(),
        );
        pdf
    }

    #[test]
    fn pdf_content_bomb_hits_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb.pdf");
        std::fs::write(&p, bomb_pdf(8 << 20)).unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() < 64 * 1024);
        let input = Input {
            path: &p,
            name: "bomb.pdf",
            kind: crate::transform::Kind::Document,
            format: "application/pdf",
            stage: 0,
        };
        let small = Limits {
            max_inflated_bytes: 1 << 20,
            ..Limits::default()
        };
        let r = crate::transform::apply(1, &input, &dir.path().join("o"), &small);
        assert!(matches!(r, Err(TransformError::Limit(_))), "{r:?}");
        // Under the default limits the same file is fine (blank page).
        assert!(
            crate::transform::apply(1, &input, &dir.path().join("o"), &Limits::default()).is_ok()
        );
    }
}
