//! Stage-3 metadata stub: a small text saying what the file was.

use std::fmt::Write;

use super::Kind;

pub struct StubInfo<'a> {
    pub name: &'a str,
    pub path: &'a str,
    pub kind: Kind,
    pub format: &'a str,
    pub original_size: u64,
    pub sha256: &'a str,
    pub created_at: i64,
    pub last_access_at: i64,
    /// (unix time, stage, note)
    pub stage_history: &'a [(i64, u8, String)],
}

/// Values are written on one line: control characters (newlines included) become spaces so a
/// hostile file name cannot forge extra keys.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

const MAGIC: &[u8] = b"rustdb-stub: 1\n";

/// Whether `head` (the first bytes of an artifact the engine wrote) is a stub.
pub fn is_stub(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// A small UTF-8 text of "key: value" lines saying what the file was. Format "text/plain".
pub fn render(info: &StubInfo<'_>) -> Vec<u8> {
    let mut s = String::new();
    s.push_str(std::str::from_utf8(MAGIC).expect("ascii"));
    let _ = writeln!(s, "name: {}", one_line(info.name));
    let _ = writeln!(s, "path: {}", one_line(info.path));
    let _ = writeln!(s, "kind: {}", info.kind.as_str());
    let _ = writeln!(s, "format: {}", one_line(info.format));
    let _ = writeln!(s, "original_size: {}", info.original_size);
    let _ = writeln!(s, "sha256: {}", one_line(info.sha256));
    let _ = writeln!(s, "created_at: {}", info.created_at);
    let _ = writeln!(s, "last_access_at: {}", info.last_access_at);
    for (at, stage, note) in info.stage_history {
        let _ = writeln!(s, "stage: {at} {stage} {}", one_line(note));
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_key_value_lines() {
        let history = vec![
            (10, 1, "jpeg q60\n640x480".to_string()),
            (20, 2, "jpeg q30".into()),
        ];
        let info = StubInfo {
            name: "a\nkind: fake.png",
            path: "/pics/a.png",
            kind: Kind::Image,
            format: "image/png",
            original_size: 1234,
            sha256: "ab12",
            created_at: 1,
            last_access_at: 2,
            stage_history: &history,
        };
        let text = String::from_utf8(render(&info)).unwrap();
        assert!(text.lines().all(|l| l.contains(": ")));
        assert_eq!(text.lines().filter(|l| l.starts_with("kind: ")).count(), 1);
        assert!(text.contains("original_size: 1234\n"));
        assert!(text.contains("stage: 10 1 jpeg q60 640x480\n"));
        assert!(text.len() < 1024);
    }
}
