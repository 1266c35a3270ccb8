//! Documents: text summaries of PDF (lopdf, after [`pdf_guard`] has bounded what it may
//! inflate, allocate and recurse into), OOXML and OpenDocument (bounded zip + quick-xml), and a
//! metadata summary of legacy OLE2 doc/ppt (property sets and printable strings). Stage 1:
//! title, author, pages or slides, the outline, each section's first paragraphs (about 8 KiB).
//! Stage 2: compact metadata and first paragraph.

use std::fmt::Write as _;
use std::path::Path;

use super::detect::{MIME_DOC, MIME_DOCX, MIME_ODP, MIME_ODT, MIME_PPT, MIME_PPTX};
use super::util::{
    clip, clip_ellipsis, ext, file_len, fit_lines, read_bounded, squash_ws, write_out,
};
use super::xml::{walk, XmlEvent};
use super::ziplimit::LimitedZip;
use super::{pdf_guard, Encoding, Input, Limits, Produced, TransformError};

pub const STAGE1_BUDGET: usize = 8 * 1024;
pub const STAGE2_BUDGET: usize = 2048;
/// Paragraph text collected before the rest of a document is skipped.
const COLLECT_CHARS: usize = 16 * 1024;
const MAX_HEADINGS: usize = 200;
const MAX_SLIDES_READ: usize = MAX_HEADINGS;
const PDF_PAGES_READ: u32 = 20;
const OLE_SCAN: u64 = 4 * 1024 * 1024;

/// One part of a document: a heading (or a page / slide label) and its paragraphs.
#[derive(Default)]
struct Section {
    heading: Option<String>,
    /// Whether the heading belongs in the outline (page labels do not).
    outline: bool,
    paragraphs: Vec<String>,
}

#[derive(Default)]
struct DocInfo {
    title: Option<String>,
    author: Option<String>,
    /// ("pages" | "slides", count)
    count: Option<(&'static str, u64)>,
    /// Always at least one section once anything is added; the first may have no heading.
    sections: Vec<Section>,
    /// Headings seen past [`MAX_HEADINGS`].
    more_headings: u64,
    /// Paragraph bytes kept beyond each section's first paragraph.
    collected: usize,
    /// Extra "key: value" lines (e.g. printable strings of a legacy file).
    extra: Vec<String>,
}

impl DocInfo {
    fn full(&self) -> bool {
        self.collected >= COLLECT_CHARS && self.sections.len() >= MAX_HEADINGS
    }

    fn current(&mut self) -> &mut Section {
        if self.sections.is_empty() {
            self.sections.push(Section::default());
        }
        self.sections.last_mut().expect("just ensured")
    }

    /// Starts a section; past [`MAX_HEADINGS`] the text goes on into the last one and this
    /// returns false.
    fn section(&mut self, heading: Option<&str>, outline: bool) -> bool {
        if self.sections.len() >= MAX_HEADINGS {
            self.more_headings += u64::from(heading.is_some());
            return false;
        }
        let heading = heading
            .map(squash_ws)
            .filter(|h| !h.is_empty())
            .map(|h| clip_ellipsis(&h, 200));
        self.sections.push(Section {
            heading,
            outline,
            paragraphs: Vec::new(),
        });
        true
    }

    fn heading(&mut self, h: &str) {
        if !squash_ws(h).is_empty() {
            self.section(Some(h), true);
        }
    }

    /// Names the section a slide started, or counts the slide as one more heading when no
    /// section could be started for it.
    fn name_slide(&mut self, started: bool, h: &str) {
        if started {
            self.name_section(h);
        } else {
            self.more_headings += 1;
        }
    }

    /// Names the current section (a slide whose title comes after its body).
    fn name_section(&mut self, h: &str) {
        let h = clip_ellipsis(&squash_ws(h), 200);
        let cur = self.current();
        cur.heading = Some(h);
        cur.outline = true;
    }

    fn paragraph(&mut self, p: &str) {
        let p = squash_ws(p);
        // Bare numbers and labels (table cells, page numbers) say little in a summary.
        let letters = p.chars().filter(|c| c.is_alphabetic()).count();
        if letters < 3 {
            return;
        }
        let p = clip_ellipsis(&p, 2000);
        let first = self.current().paragraphs.is_empty();
        if first || self.collected < COLLECT_CHARS {
            if !first {
                self.collected += p.len();
            }
            self.current().paragraphs.push(p);
        }
    }

    fn headings(&self) -> impl Iterator<Item = &str> {
        self.sections
            .iter()
            .filter(|s| s.outline)
            .filter_map(|s| s.heading.as_deref())
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

/// Prefix of a section heading line in the text part.
const SECTION_MARK: &str = "## ";

/// Metadata, the outline (up to half the budget), then each section with its first
/// paragraph and, while its share of the remaining budget lasts, further ones.
fn render_stage1(input: &Input<'_>, info: &DocInfo, size: u64, budget: usize) -> String {
    let mut s = header_lines(input, info, size);
    let mut headings = info.headings().peekable();
    if headings.peek().is_some() {
        s.push_str("\nheadings:\n");
        for h in headings {
            if s.len() + h.len() + 3 > budget / 2 {
                s.push_str("  ...\n");
                break;
            }
            let _ = writeln!(s, "  {h}");
        }
        if info.more_headings > 0 {
            let _ = writeln!(s, "  ... {} more", info.more_headings);
        }
    }
    // Sections without text are in the outline already.
    let sections: Vec<&Section> = info
        .sections
        .iter()
        .filter(|s| !s.paragraphs.is_empty())
        .collect();
    if !sections.is_empty() {
        s.push_str("\ntext:\n");
        for (i, sec) in sections.iter().enumerate() {
            let left = sections.len() - i;
            let share = (budget.saturating_sub(s.len()) / left).max(200);
            let start = s.len();
            if let Some(h) = &sec.heading {
                if s.len() + h.len() + 8 > budget {
                    break;
                }
                let _ = writeln!(s, "{SECTION_MARK}{h}");
            }
            for (k, p) in sec.paragraphs.iter().enumerate() {
                let used = s.len() - start;
                let room = share
                    .saturating_sub(used)
                    .min(budget.saturating_sub(s.len() + 2));
                if room < 60 || (k > 0 && p.len() + 2 > room) {
                    break;
                }
                let _ = writeln!(s, "{}\n", clip_ellipsis(p, room.min(1200)));
            }
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
        if in_text && !l.trim().is_empty() && !l.starts_with(SECTION_MARK) {
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
    walk(&data, limits, |ev| {
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
    pptx_started: Option<bool>,
) -> Result<(), TransformError> {
    let mut p_depth = 0usize;
    let mut in_t = false;
    let mut cur = String::new();
    let mut style_heading = false;
    let mut title_shape = false;
    let mut slide_title: Option<String> = None;
    let mut slide_title_frame_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut page_started = false;
    walk(data, limits, |ev| {
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
                    // OpenDocument presentations: one draw:page per slide.
                    "page" if slide.is_some() => page_started = info.section(None, true),
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
                        info.name_slide(page_started, &format!("{n}. {t}"));
                    }
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
        }
        !info.full()
    })?;
    // A pptx slide (its own part, numbered by the caller) is named once its title is known.
    if let (Some(n), Some(started)) = (slide.filter(|&n| n > 0), pptx_started) {
        info.name_slide(
            started,
            &format!("{n}. {}", slide_title.unwrap_or_default()),
        );
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
            read_body(&body, limits, &mut info, Some("t"), None, None)?;
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
                    let started = info.section(None, true);
                    read_body(
                        &data,
                        limits,
                        &mut info,
                        Some("t"),
                        Some(i + 1),
                        Some(started),
                    )?;
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
            read_body(&body, limits, &mut info, None, slide, None)?;
        }
    }
    Ok(info)
}

// ---------------------------------------------------------------------------------------------
// PDF

/// Stack for the thread that runs lopdf: its parser recurses once per nesting level (about
/// 3 KiB a level in release builds, 24 KiB in debug builds), so [`pdf_guard::MAX_NESTING`]
/// levels must fit. Reserved address space; only the pages used are committed.
const PDF_STACK: usize = if cfg!(debug_assertions) {
    512 * 1024 * 1024
} else {
    128 * 1024 * 1024
};

fn pdf_doc(input: &Input<'_>, limits: &Limits) -> Result<DocInfo, TransformError> {
    // lopdf keeps the file and a copy of every stream it parses.
    let cap = limits.max_alloc_bytes / 2;
    let (data, truncated) = read_bounded(input.path, cap)?;
    if truncated {
        return Err(TransformError::Limit(format!(
            "pdf larger than {cap} bytes"
        )));
    }
    let scan = pdf_guard::check(&data, limits)?;
    if scan.encrypted {
        // Decryption happens inside lopdf, past what the guard could inspect.
        let mut info = DocInfo::default();
        info.extra
            .push("content: encrypted, text not extracted".to_string());
        return Ok(info);
    }
    let format = input.format.to_string();
    let limits = limits.clone();
    let worker = std::thread::Builder::new()
        .name("pdf-text".into())
        .stack_size(PDF_STACK)
        .spawn(move || pdf_text(&data, &format, &limits))?;
    worker
        .join()
        .unwrap_or_else(|_| Err(TransformError::decode(input.format, "decoder panicked")))
}

/// Title, author, page count and the text of the first pages; runs on the big-stack thread
/// after [`pdf_guard::check`] passed.
fn pdf_text(data: &[u8], f: &str, limits: &Limits) -> Result<DocInfo, TransformError> {
    let doc = lopdf::Document::load_mem(data).map_err(|e| TransformError::decode(f, e))?;
    limits.check_time()?;
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
    for (&num, &page_id) in pages.iter().take(PDF_PAGES_READ as usize) {
        limits.check_time()?;
        if info.collected >= COLLECT_CHARS {
            break;
        }
        // The content lopdf is about to parse: its nesting must stay within the stack.
        let content = doc.get_page_content(page_id).unwrap_or_default();
        if pdf_guard::nesting(&content) > pdf_guard::MAX_NESTING {
            return Err(TransformError::Limit(format!(
                "pdf page {num} nests deeper than {}",
                pdf_guard::MAX_NESTING
            )));
        }
        drop(content);
        let Ok(text) = doc.extract_text(&[num]) else {
            continue;
        };
        info.section(Some(&format!("page {num}")), false);
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

/// A value of an OLE property set.
enum Prop {
    Text(String),
    Int(i64),
    /// A FILETIME as an ISO date-time.
    Time(String),
}

/// ISO date-time of a FILETIME (100 ns ticks since 1601-01-01), None when out of range.
fn filetime(ticks: u64) -> Option<String> {
    let secs = (ticks / 10_000_000) as i64 - 11_644_473_600;
    if ticks == 0 || !(0..253_402_300_800).contains(&secs) {
        return None;
    }
    // Days to a civil date (proleptic Gregorian, era-based).
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

/// (property id, value) of the first property set in an OLE property-set stream
/// ([MS-OLEPS]); offsets are checked, at most 256 properties are read.
fn property_set(s: &[u8]) -> Vec<(u32, Prop)> {
    use super::util::cfb::{u16_at, u32_at};
    let mut out = Vec::new();
    if u16_at(s, 0) != Some(0xFFFE) || u32_at(s, 24).unwrap_or(0) == 0 {
        return out;
    }
    let Some(set) = u32_at(s, 44).and_then(|o| s.get(o as usize..)) else {
        return out;
    };
    let n = u32_at(set, 4).unwrap_or(0).min(256) as usize;
    let mut codepage = 1252;
    for k in 0..n {
        let (Some(pid), Some(off)) = (u32_at(set, 8 + 8 * k), u32_at(set, 12 + 8 * k)) else {
            break;
        };
        let Some(v) = set.get(off as usize..) else {
            continue;
        };
        let body = |len: usize| v.get(8..).map(|b| &b[..len.min(b.len()).min(4096)]);
        let value = match u32_at(v, 0).map(|t| t & 0xFFFF) {
            Some(0x02) => u16_at(v, 4).map(|x| Prop::Int(i64::from(x as i16))),
            Some(0x03) => u32_at(v, 4).map(|x| Prop::Int(i64::from(x as i32))),
            Some(0x1E) => body(u32_at(v, 4).unwrap_or(0) as usize).map(|b| {
                let b: Vec<u8> = b.iter().copied().take_while(|&c| c != 0).collect();
                Prop::Text(if codepage == 65001 {
                    String::from_utf8_lossy(&b).into_owned()
                } else {
                    b.iter().map(|&c| char::from(c)).collect()
                })
            }),
            Some(0x1F) => body(u32_at(v, 4).unwrap_or(0) as usize * 2).map(|b| {
                let units: Vec<u16> = b
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                Prop::Text(String::from_utf16_lossy(&units))
            }),
            Some(0x40) => v
                .get(4..12)
                .and_then(|b| filetime(u64::from_le_bytes(b.try_into().ok()?)))
                .map(Prop::Time),
            _ => None,
        };
        if let Some(value) = value {
            if let (1, Prop::Int(cp)) = (pid, &value) {
                codepage = *cp as u16 as u32;
            }
            out.push((pid, value));
        }
    }
    out
}

/// Metadata of a legacy Word or PowerPoint file from its property-set streams, and printable
/// strings of its first bytes as text. A file whose compound structure cannot be read still
/// gets the strings.
fn ole_doc(input: &Input<'_>, limits: &Limits) -> Result<DocInfo, TransformError> {
    let (data, truncated) = read_bounded(input.path, limits.max_inflated_bytes)?;
    if truncated {
        return Err(TransformError::Limit(format!(
            "legacy document larger than {} bytes",
            limits.max_inflated_bytes
        )));
    }
    let mut info = DocInfo::default();
    match super::util::cfb::Cfb::parse(&data) {
        Ok(cfb) => {
            let props = |name: &str| {
                cfb.entry(name)
                    .and_then(|e| cfb.stream(e).ok())
                    .map(|s| property_set(&s))
                    .unwrap_or_default()
            };
            let text = |p: &Prop| match p {
                Prop::Text(t) => some_text(t),
                Prop::Int(i) => Some(i.to_string()),
                Prop::Time(t) => Some(t.clone()),
            };
            for (pid, v) in props("\u{5}SummaryInformation") {
                match (pid, &v) {
                    (2, _) => info.title = text(&v),
                    (4, _) => info.author = text(&v),
                    (14, Prop::Int(n)) if *n > 0 => info.count = Some(("pages", *n as u64)),
                    _ => {
                        let key = match pid {
                            3 => "subject",
                            5 => "keywords",
                            8 => "last saved by",
                            12 => "created",
                            13 => "modified",
                            15 => "words",
                            18 => "application",
                            _ => continue,
                        };
                        if let Some(t) = text(&v) {
                            info.extra.push(format!("{key}: {t}"));
                        }
                    }
                }
            }
            for (pid, v) in props("\u{5}DocumentSummaryInformation") {
                match (pid, v) {
                    (7, Prop::Int(n)) if n > 0 => info.count = Some(("slides", n as u64)),
                    (15, Prop::Text(t)) => info
                        .extra
                        .extend(some_text(&t).map(|t| format!("company: {t}"))),
                    _ => {}
                }
            }
        }
        Err(why) => info.extra.push(format!("structure: unreadable ({why})")),
    }
    for s in printable_strings(&data[..data.len().min(OLE_SCAN as usize)], 60) {
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
        (
            compact(&super::util::read_summary(input.path)?, budget),
            "document metadata".to_string(),
        )
    } else {
        let kind = which(input);
        let info = match kind {
            "pdf" => pdf_doc(input, limits)?,
            "ole" => ole_doc(input, limits)?,
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
        let mut stream = format!(
            "<< /Length {} /Filter /FlateDecode >>\nstream\n",
            body.len()
        )
        .into_bytes();
        stream.extend_from_slice(&body);
        stream.extend_from_slice(b"\nendstream");
        crate::transform::tests::pdf_file(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] /Contents 4 0 R >>".to_vec(),
            stream,
        ])
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
