//! Kind and MIME detection: content first (magic bytes, then a text check), extension second.

use super::util::ext;
use super::{Detected, Kind};

pub const MIME_DOCX: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
pub const MIME_PPTX: &str =
    "application/vnd.openxmlformats-officedocument.presentationml.presentation";
pub const MIME_XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
pub const MIME_XLSM: &str = "application/vnd.ms-excel.sheet.macroEnabled.12";
pub const MIME_ODT: &str = "application/vnd.oasis.opendocument.text";
pub const MIME_ODP: &str = "application/vnd.oasis.opendocument.presentation";
pub const MIME_ODS: &str = "application/vnd.oasis.opendocument.spreadsheet";
pub const MIME_XLS: &str = "application/vnd.ms-excel";
pub const MIME_DOC: &str = "application/msword";
pub const MIME_PPT: &str = "application/vnd.ms-powerpoint";
pub const MIME_LOG: &str = "text/x-log";
pub const MIME_TSV: &str = "text/tab-separated-values";

fn det(kind: Kind, format: &str) -> Detected {
    Detected {
        kind,
        format: format.to_string(),
    }
}

/// The kind and MIME type a file extension alone suggests.
fn by_extension(e: &str) -> Option<Detected> {
    Some(match e {
        "png" => det(Kind::Image, "image/png"),
        "jpg" | "jpeg" | "jpe" => det(Kind::Image, "image/jpeg"),
        "gif" => det(Kind::Image, "image/gif"),
        "webp" => det(Kind::Image, "image/webp"),
        "bmp" => det(Kind::Image, "image/bmp"),
        "tif" | "tiff" => det(Kind::Image, "image/tiff"),
        "txt" | "text" => det(Kind::Text, "text/plain"),
        "md" | "markdown" => det(Kind::Text, "text/markdown"),
        "log" => det(Kind::Text, MIME_LOG),
        "json" => det(Kind::Text, "application/json"),
        "csv" => det(Kind::Spreadsheet, "text/csv"),
        "tsv" | "tab" => det(Kind::Spreadsheet, MIME_TSV),
        "xlsx" => det(Kind::Spreadsheet, MIME_XLSX),
        "xlsm" => det(Kind::Spreadsheet, MIME_XLSM),
        "xls" => det(Kind::Spreadsheet, MIME_XLS),
        "ods" => det(Kind::Spreadsheet, MIME_ODS),
        "pdf" => det(Kind::Document, "application/pdf"),
        "docx" => det(Kind::Document, MIME_DOCX),
        "pptx" => det(Kind::Document, MIME_PPTX),
        "odt" => det(Kind::Document, MIME_ODT),
        "odp" => det(Kind::Document, MIME_ODP),
        "doc" => det(Kind::Document, MIME_DOC),
        "ppt" => det(Kind::Document, MIME_PPT),
        _ => return None,
    })
}

fn binary(format: &str) -> Detected {
    det(Kind::Binary, format)
}

/// `head` is the first bytes of the file (the engine passes up to 8 KiB). Content first (magic
/// bytes, then a UTF-8 check on head), extension second: a text file named .png is text, a JPEG
/// named .txt is an image. Zip containers are told apart by extension and first entries; OLE2 by
/// extension. Empty files: by extension, else text/plain.
pub fn detect(name: &str, head: &[u8]) -> Detected {
    let e = ext(name);
    if head.is_empty() {
        return by_extension(&e).unwrap_or_else(|| det(Kind::Text, "text/plain"));
    }
    if let Some(d) = by_magic(&e, head) {
        return d;
    }
    if looks_textual(head) {
        return text_subtype(&e, head);
    }
    binary("application/octet-stream")
}

fn by_magic(e: &str, head: &[u8]) -> Option<Detected> {
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some(det(Kind::Image, "image/png"));
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Some(det(Kind::Image, "image/jpeg"));
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some(det(Kind::Image, "image/gif"));
    }
    if head.len() >= 12 && starts(b"RIFF") && &head[8..12] == b"WEBP" {
        return Some(det(Kind::Image, "image/webp"));
    }
    // "BM" alone is too weak (text can start with it); BMP has four zero reserved bytes.
    if head.len() >= 14 && starts(b"BM") && head[6..10] == [0, 0, 0, 0] {
        return Some(det(Kind::Image, "image/bmp"));
    }
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Some(det(Kind::Image, "image/tiff"));
    }
    if starts(b"%PDF") {
        return Some(det(Kind::Document, "application/pdf"));
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        return Some(zip_kind(e, head));
    }
    if starts(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Some(match e {
            "xls" => det(Kind::Spreadsheet, MIME_XLS),
            "doc" => det(Kind::Document, MIME_DOC),
            "ppt" => det(Kind::Document, MIME_PPT),
            _ => binary("application/x-ole-storage"),
        });
    }
    if starts(b"SQLite format 3\0") {
        return Some(binary("application/vnd.sqlite3"));
    }
    let other: &[(&[u8], &str)] = &[
        (&[0x1F, 0x8B], "application/gzip"),
        (&[0x28, 0xB5, 0x2F, 0xFD], "application/zstd"),
        (b"BZh", "application/x-bzip2"),
        (&[0xFD, b'7', b'z', b'X', b'Z', 0], "application/x-xz"),
        (b"7z\xBC\xAF\x27\x1C", "application/x-7z-compressed"),
        (b"\x7fELF", "application/x-elf"),
        (super::binary::MAGIC, "application/octet-stream"),
    ];
    other
        .iter()
        .find(|(m, _)| starts(m))
        .map(|(_, mime)| binary(mime))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn zip_kind(e: &str, head: &[u8]) -> Detected {
    if let Some(d) = by_extension(e) {
        if matches!(e, "docx" | "pptx" | "xlsx" | "xlsm" | "odt" | "odp" | "ods") {
            return d;
        }
    }
    // OpenDocument: first entry "mimetype", stored, whose data is the MIME type.
    if head.len() > 30 {
        let name_len = u16::from_le_bytes([head[26], head[27]]) as usize;
        let extra_len = u16::from_le_bytes([head[28], head[29]]) as usize;
        if head.get(30..30 + name_len) == Some(b"mimetype".as_slice()) {
            let data = head.get(30 + name_len + extra_len..).unwrap_or(&[]);
            for (mime, kind) in [
                (MIME_ODT, Kind::Document),
                (MIME_ODP, Kind::Document),
                (MIME_ODS, Kind::Spreadsheet),
            ] {
                if data.starts_with(mime.as_bytes()) {
                    return det(kind, mime);
                }
            }
        }
    }
    if contains(head, b"word/") {
        return det(Kind::Document, MIME_DOCX);
    }
    if contains(head, b"ppt/") {
        return det(Kind::Document, MIME_PPTX);
    }
    if contains(head, b"xl/") {
        return det(Kind::Spreadsheet, MIME_XLSX);
    }
    binary("application/zip")
}

/// True when `head` reads as text: valid UTF-8 (a sequence cut at the end of `head` is allowed)
/// or, failing that, almost entirely printable bytes; never with NUL bytes.
pub(crate) fn looks_textual(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    let utf8_ok = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(err) => err.error_len().is_none() && head.len() - err.valid_up_to() < 4,
    };
    let control = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C | 0x1B))
        .count();
    if utf8_ok {
        return control * 100 <= head.len();
    }
    // Legacy 8-bit text: mostly printable ASCII, few controls.
    let printable = head
        .iter()
        .filter(|&&b| (0x20..0x7F).contains(&b) || matches!(b, b'\n' | b'\r' | b'\t'))
        .count();
    control == 0 && printable * 100 >= head.len() * 90
}

fn text_subtype(e: &str, head: &[u8]) -> Detected {
    match by_extension(e) {
        Some(d) if d.kind == Kind::Text || matches!(e, "csv" | "tsv" | "tab") => return d,
        _ => {}
    }
    let s = String::from_utf8_lossy(head);
    let trimmed = s.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return det(Kind::Text, "application/json");
    }
    let first_lines: Vec<&str> = trimmed.lines().take(5).collect();
    if !first_lines.is_empty()
        && first_lines
            .iter()
            .all(|l| super::text::log_timestamp(l).is_some() && super::text::log_level(l).is_some())
    {
        return det(Kind::Text, MIME_LOG);
    }
    if trimmed.starts_with("# ") && e.is_empty() {
        return det(Kind::Text, "text/markdown");
    }
    det(Kind::Text, "text/plain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_beats_extension() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];
        assert_eq!(detect("x.txt", &jpeg).kind, Kind::Image);
        let d = detect("x.png", b"just some words\n");
        assert_eq!(d, det(Kind::Text, "text/plain"));
        assert_eq!(detect("a.json", b"{\"a\":1}").format, "application/json");
        assert_eq!(detect("noext", b"[1,2]").format, "application/json");
        assert_eq!(detect("BMW.txt", b"BMW cars are fast\n").kind, Kind::Text);
    }

    #[test]
    fn empty_files() {
        assert_eq!(detect("a.csv", b"").kind, Kind::Spreadsheet);
        assert_eq!(detect("a.png", b"").kind, Kind::Image);
        assert_eq!(detect("noext", b""), det(Kind::Text, "text/plain"));
    }

    #[test]
    fn random_bytes_are_binary() {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let bytes: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(detect("r.txt", &bytes).kind, Kind::Binary);
        assert_eq!(detect("r", &bytes).kind, Kind::Binary);
    }

    #[test]
    fn ole_and_zip() {
        let ole = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0];
        assert_eq!(detect("a.xls", &ole).kind, Kind::Spreadsheet);
        assert_eq!(detect("a.doc", &ole).kind, Kind::Document);
        assert_eq!(detect("a.bin", &ole).kind, Kind::Binary);
        assert_eq!(detect("a.zip", b"PK\x03\x04rest").format, "application/zip");
        let mut odt = b"PK\x03\x04".to_vec();
        odt.extend_from_slice(&[0; 22]);
        odt.extend_from_slice(&8u16.to_le_bytes());
        odt.extend_from_slice(&0u16.to_le_bytes());
        odt.extend_from_slice(b"mimetype");
        odt.extend_from_slice(MIME_ODT.as_bytes());
        assert_eq!(detect("noext", &odt), det(Kind::Document, MIME_ODT));
    }
}
