//! Hostile and awkward files through a real mount: every one ends in bounded time with an
//! outcome in its history, and the process stays up. Plus random reads of a compressed binary.
//!
//! Inputs are made here from a fixed seed: zero-byte and truncated files of every kind, a PNG
//! declaring 40000 x 40000 pixels, an xlsx whose sheet inflates to 1 GiB, a docx with deeply
//! nested XML, JSON nested 100000 deep, 4 MiB of random bytes, and a wrong extension each way.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::{corpus, xattr, Instance};

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// One zip entry: a name, its bytes as stored in the archive, the method (0 stored, 8
/// deflated), the CRC-32 and the uncompressed size it claims.
struct Entry {
    name: &'static str,
    data: Vec<u8>,
    method: u16,
    crc: u32,
    size: u32,
}

fn stored(name: &'static str, data: &[u8]) -> Entry {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    Entry {
        name,
        data: data.to_vec(),
        method: 0,
        crc: crc.sum(),
        size: data.len() as u32,
    }
}

/// A deflated entry of `repeat` copies of a 1 MiB block of `byte`, made by repeating one
/// fully-flushed deflate segment (so building a 1 GiB bomb costs 1 MiB of work). The CRC is
/// left 0: a reader must stop at its inflation limit long before it could check it.
fn bomb(name: &'static str, byte: u8, repeat: usize) -> Entry {
    let block = vec![byte; 1 << 20];
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut seg = Vec::with_capacity(8192);
    c.compress_vec(&block, &mut seg, flate2::FlushCompress::Full)
        .unwrap();
    assert_eq!(c.total_in(), block.len() as u64, "one call takes the block");
    let mut data = Vec::with_capacity(seg.len() * repeat + 2);
    for _ in 0..repeat {
        data.extend_from_slice(&seg);
    }
    data.extend_from_slice(&[0x03, 0x00]); // a final, empty fixed-Huffman block
    Entry {
        name,
        data,
        method: 8,
        crc: 0,
        size: (repeat << 20) as u32,
    }
}

/// A minimal zip archive (no data descriptors, no zip64).
fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let header = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central {
                h.extend(20u16.to_le_bytes()); // made by
            }
            h.extend(20u16.to_le_bytes()); // needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(e.method.to_le_bytes());
            h.extend(0u32.to_le_bytes()); // time and date
            h.extend(e.crc.to_le_bytes());
            h.extend((e.data.len() as u32).to_le_bytes());
            h.extend(e.size.to_le_bytes());
            h.extend((e.name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend([0u8; 6]); // comment len, disk, internal attrs
                h.extend(0u32.to_le_bytes()); // external attrs
                h.extend(offset.to_le_bytes());
            }
            h.extend(e.name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend(&e.data);
        central.extend(header(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

const CONTENT_TYPES: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/></Types>"#;

/// An xlsx with one sheet whose part is `sheet`.
fn workbook(sheet: Entry) -> Vec<u8> {
    zip(&[
        stored("[Content_Types].xml", CONTENT_TYPES),
        stored(
            "xl/workbook.xml",
            br#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        stored(
            "xl/_rels/workbook.xml.rels",
            br#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
        sheet,
    ])
}

fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    fn chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(body);
        let mut c = (body.len() as u32).to_be_bytes().to_vec();
        c.extend(kind);
        c.extend(body);
        c.extend(crc.sum().to_be_bytes());
        c
    }
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", b""));
    png
}

/// Every hostile input, by the name it gets in the mount.
fn hostile_files() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut seed = 0x00c0_ffee_u64;
    let read = |dir: &str, name: &str| std::fs::read(corpus().join(dir).join(name)).unwrap();

    for name in [
        "empty.png",
        "empty.jpg",
        "empty.xlsx",
        "empty.xls",
        "empty.docx",
        "empty.pdf",
        "empty.json",
        "empty.csv",
        "empty.log",
        "empty.md",
        "empty.bin",
    ] {
        files.insert(name.to_string(), Vec::new());
    }
    for (dir, name) in [
        ("images", "astronaut.png"),
        ("images", "grace_hopper.jpg"),
        ("images", "coffee.webp"),
        ("images", "multipage_rgb.tif"),
        ("sheets", "inventory-1.xlsx"),
        ("sheets", "readings-1.xls"),
        ("sheets", "msft.csv"),
        ("docs", "report-1.docx"),
        ("docs", "deck-1.pptx"),
        ("docs", "handbook-1.pdf"),
        ("text", "catalog-1.json"),
        ("binary", "ledger.sqlite"),
    ] {
        let bytes = read(dir, name);
        // Cut somewhere in the middle half, from the fixed seed.
        let cut = bytes.len() / 4 + (xorshift(&mut seed) as usize) % (bytes.len() / 2);
        files.insert(format!("truncated-{name}"), bytes[..cut].to_vec());
    }
    files.insert("huge-40000.png".into(), png_declaring(40_000, 40_000));
    // A sheet inflating to 1 GiB, once with honest sizes and once lying (4 KiB declared).
    let mut liar = bomb("xl/worksheets/sheet1.xml", b' ', 1024);
    liar.size = 4096;
    for (name, sheet) in [
        ("bomb.xlsx", bomb("xl/worksheets/sheet1.xml", b' ', 1024)),
        ("bomb-lying.xlsx", liar),
    ] {
        files.insert(name.into(), workbook(sheet));
    }
    let depth = 100_000;
    let mut nested = b"<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>".to_vec();
    nested.extend(b"<w:p>".repeat(depth));
    nested.extend(b"</w:p>".repeat(depth));
    nested.extend(b"</w:body></w:document>");
    files.insert(
        "nested.docx".into(),
        zip(&[
            stored("[Content_Types].xml", CONTENT_TYPES),
            stored("word/document.xml", &nested),
        ]),
    );
    let mut json = b"[".repeat(depth);
    json.extend(b"]".repeat(depth));
    files.insert("deep.json".into(), json);
    files.insert(
        "random.bin".into(),
        (0..4 << 20).map(|_| xorshift(&mut seed) as u8).collect(),
    );
    // Wrong extension each way: text named .png, a JPEG named .txt.
    files.insert(
        "notes-really-text.png".into(),
        b"2026-11-21T10:00:00Z INFO started\n2026-11-21T10:00:01Z ERROR disk 7 failed\n"
            .repeat(200),
    );
    files.insert(
        "photo-really-jpeg.txt".into(),
        read("images", "grace_hopper.jpg"),
    );
    files
}

fn history(inst: &Instance, id: u64) -> Vec<serde_json::Value> {
    inst.get(&format!("/rot/state/{id}"))["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn mount_hostile_inputs_end_in_bounded_time_with_an_outcome() {
    require_mount!();
    let inst = Instance::start(&[]);
    let files = hostile_files();
    let dir = inst.path("hostile");
    std::fs::create_dir(&dir).unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    assert_eq!(
        xattr(&dir.join("notes-really-text.png"), "user.rustdb.kind").as_deref(),
        Some("text"),
        "content beats the .png extension"
    );
    assert_eq!(
        xattr(&dir.join("photo-really-jpeg.txt"), "user.rustdb.kind").as_deref(),
        Some("image"),
        "content beats the .txt extension"
    );
    assert_eq!(
        xattr(&dir.join("photo-really-jpeg.txt"), "user.rustdb.format").as_deref(),
        Some("image/jpeg")
    );
    let ids: BTreeMap<&String, u64> = files
        .keys()
        .map(|n| {
            let o = inst.object(&format!("hostile/{n}")).expect("listed");
            (n, o["id"].as_u64().unwrap())
        })
        .collect();

    let started = Instant::now();
    let report = inst.force_tick();
    let took = started.elapsed();
    eprintln!(
        "first forced tick over {} hostile files: {took:?}: {report}",
        files.len()
    );
    assert!(
        took < Duration::from_secs(120),
        "a tick over hostile files is bounded ({took:?})"
    );
    assert_eq!(inst.try_get("/healthz").map(|(s, _)| s), Some(200));

    for (name, id) in &ids {
        let h = history(&inst, *id);
        let outcome = h
            .iter()
            .find(|e| e["to_stage"] != 0 || e["reason"].as_str().unwrap_or("").contains("failed"));
        assert!(
            outcome.is_some(),
            "{name}: the tick recorded an outcome; history: {h:?}"
        );
    }
    // Limits, not luck: each bomb breaks a limit, and the stub stands in at once.
    for name in [
        "huge-40000.png",
        "bomb.xlsx",
        "bomb-lying.xlsx",
        "deep.json",
        "nested.docx",
    ] {
        let h = history(&inst, ids[&name.to_string()]);
        let last = h.last().unwrap();
        let reason = last["reason"].as_str().unwrap_or("");
        eprintln!("{name}: {reason}");
        assert!(
            reason.contains("metadata stub in place of the transform: limit exceeded"),
            "{name}: {reason}"
        );
        assert_eq!(last["to_stage"], 1, "{name}");
        let bytes = std::fs::read(dir.join(name)).unwrap();
        if reason.contains("output not smaller") {
            assert_eq!(bytes, files[name], "{name}: a tiny file keeps its bytes");
        } else {
            assert!(
                bytes.starts_with(b"rustdb-stub: 1\n"),
                "{name} reads as its stub"
            );
        }
    }

    let random = history(&inst, ids[&"random.bin".to_string()]);
    let reason = random.last().unwrap()["reason"].as_str().unwrap();
    assert!(
        reason.contains("compression skipped"),
        "random bytes stay plain: {reason}"
    );

    // Two more ticks: a file that failed to decode has had its three tries and the stub stands
    // in; nothing has reached the purge yet (that needs a tick at stage 3). The process stays
    // up throughout.
    for _ in 0..2 {
        inst.force_tick();
        assert_eq!(inst.try_get("/healthz").map(|(s, _)| s), Some(200));
    }
    // The bombs were refused by limits, not absorbed: the process's peak memory stays small.
    let status = std::fs::read_to_string(format!("/proc/{}/status", inst.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    eprintln!("peak resident memory of rustdb: {} MiB", peak_kib / 1024);
    assert!(
        peak_kib < 512 * 1024,
        "peak RSS {peak_kib} KiB: a bomb was inflated in memory"
    );
    for (name, original) in &files {
        let path = dir.join(name);
        let stage: u8 = xattr(&path, "user.rustdb.stage")
            .unwrap_or_else(|| panic!("{name} left the mount before its purge"))
            .parse()
            .unwrap();
        assert!(stage >= 1, "{name} is still at stage 0");
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.len() <= original.len().max(1024),
            "{name}: {} bytes served for a {}-byte original",
            bytes.len(),
            original.len()
        );
    }
}

#[test]
fn mount_random_reads_of_a_compressed_binary_equal_the_original() {
    require_mount!();
    let inst = Instance::start(&[]);
    // 8 MiB: compressible (repeated records with a counter) so stage 1 keeps the container.
    let mut seed = 42u64;
    let mut original = Vec::with_capacity(8 << 20);
    let mut n = 0u64;
    while original.len() < 8 << 20 {
        n += 1;
        original.extend(n.to_le_bytes());
        original.extend(&(xorshift(&mut seed) % 1000).to_le_bytes()[..2]);
        original.extend(b"record-padding--");
    }
    original.truncate(8 << 20);
    let path = inst.path("data.bin");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&original).unwrap();
        f.sync_all().unwrap();
    }
    inst.force_tick();
    assert_eq!(xattr(&path, "user.rustdb.stage").as_deref(), Some("1"));
    let id = inst.object("data.bin").unwrap()["id"].as_u64().unwrap();
    let h = history(&inst, id);
    let reason = h.last().unwrap()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("chunked"), "compressed: {reason}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        original.len() as u64
    );

    let f = std::fs::File::open(&path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..500 {
        let at = xorshift(&mut seed) % original.len() as u64;
        let len = 1 + (xorshift(&mut seed) % (1 << 20)) as usize;
        let want = &original[at as usize..(at as usize + len).min(original.len())];
        let got = f.read_at(&mut buf[..len], at).unwrap();
        assert_eq!(got, want.len(), "read length at {at}");
        assert_eq!(&buf[..got], want, "bytes at {at}+{len}");
    }
    // A read past the end gives nothing.
    assert_eq!(f.read_at(&mut buf[..16], original.len() as u64).unwrap(), 0);
}
