//! Real kernel mounts: `rustdb up` as users run it, driven through the mount and the API.
//! These need /dev/fuse and root (or fusermount3); they say SKIPPED when they cannot run.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;

use common::{copy_corpus_in, set_xattr, xattr, Instance};
use sha2::Digest;

fn kind_of(rel: &str) -> &str {
    rel.split('/').next().unwrap()
}

/// Names in the storage directory that belong to object `id`.
fn backing_files(inst: &Instance, id: u64) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["objects", "originals"] {
        for e in std::fs::read_dir(inst.storage.join(dir)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.split('.').next() == Some(id.to_string().as_str()) {
                out.push(format!("{dir}/{name}"));
            }
        }
    }
    out
}

/// The bytes a path serves decode as the format its `user.rustdb.format` names.
fn assert_decodes_as(rel: &str, format: &str, bytes: &[u8]) {
    match format {
        "image/jpeg" => {
            image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
                .unwrap_or_else(|e| panic!("{rel}: not a JPEG: {e}"));
        }
        "application/json" => {
            serde_json::from_slice::<serde_json::Value>(bytes)
                .unwrap_or_else(|e| panic!("{rel}: not JSON: {e}"));
        }
        "text/csv" | "text/tab-separated-values" => {
            let delim = if format == "text/csv" { b',' } else { b'\t' };
            for r in csv::ReaderBuilder::new()
                .delimiter(delim)
                .flexible(true)
                .has_headers(false)
                .from_reader(bytes)
                .records()
            {
                r.unwrap_or_else(|e| panic!("{rel}: not CSV: {e}"));
            }
        }
        f if f.starts_with("text/") => {
            std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{rel}: not UTF-8 text: {e}"));
        }
        _ => {}
    }
}

/// What a stage-1 or stage-2 summary promises to keep of its original.
fn assert_summary_keeps(rel: &str, original: &[u8], summary: &[u8]) {
    let summary = String::from_utf8_lossy(summary);
    if rel.ends_with(".log") {
        for line in String::from_utf8_lossy(original).lines() {
            if let Some((_, message)) = rustdb::transform::text::log_message(line) {
                assert!(
                    summary.contains(&message),
                    "{rel}: the summary lacks the distinct message {message:?}"
                );
            }
        }
    }
    if rel.ends_with(".csv") || rel.ends_with(".tsv") {
        let delim = if rel.ends_with(".tsv") { b'\t' } else { b',' };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delim)
            .comment(Some(b'#'))
            .flexible(true)
            .from_reader(original);
        for column in reader.headers().unwrap().iter() {
            assert!(
                summary.contains(column),
                "{rel}: the summary does not name column {column:?}"
            );
        }
    }
}

#[test]
fn mount_corpus_decays_through_every_stage() {
    require_mount!();
    let inst = Instance::start(&[]);
    let files = copy_corpus_in(&inst);

    // Every file reads back byte-identical at stage 0.
    for (rel, bytes) in &files {
        assert_eq!(
            &std::fs::read(inst.path(rel)).unwrap(),
            bytes,
            "{rel} differs after copy-in"
        );
        assert_eq!(
            xattr(&inst.path(rel), "user.rustdb.stage").as_deref(),
            Some("0"),
            "{rel}"
        );
        assert_eq!(
            xattr(&inst.path(rel), "user.rustdb.original_size"),
            Some(bytes.len().to_string()),
            "{rel}"
        );
    }
    for (rel, attr, want) in [
        ("images/coffee.png", "kind", "image"),
        ("images/coffee.png", "format", "image/png"),
        ("text/service-1.log", "kind", "text"),
        ("sheets/msft.csv", "kind", "spreadsheet"),
        ("docs/handbook-1.pdf", "kind", "document"),
        ("binary/ledger.sqlite", "kind", "binary"),
    ] {
        let got = xattr(&inst.path(rel), &format!("user.rustdb.{attr}"));
        assert_eq!(got.as_deref(), Some(want), "{rel} {attr}");
    }
    assert!(xattr(
        &inst.path("binary/ledger.sqlite"),
        "user.rustdb.next_decay_at"
    )
    .is_some());

    let ids: BTreeMap<String, u64> = files
        .iter()
        .map(|(rel, _)| {
            (
                rel.clone(),
                inst.object(rel).expect("listed")["id"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut previous: BTreeMap<String, u64> = files
        .iter()
        .map(|(rel, b)| (rel.clone(), b.len() as u64))
        .collect();

    for stage in 1..=3u8 {
        let report = inst.force_tick();
        assert_eq!(report["failed"], 0, "tick to stage {stage}: {report}");
        for (rel, original) in &files {
            let path = inst.path(rel);
            let got_stage = xattr(&path, "user.rustdb.stage").unwrap_or_default();
            assert_eq!(got_stage, stage.to_string(), "{rel} after tick {stage}");
            let bytes = std::fs::read(&path).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(
                meta.len(),
                bytes.len() as u64,
                "{rel}: stat size and read size agree"
            );
            assert!(!bytes.is_empty(), "{rel} is empty at stage {stage}");
            let format = xattr(&path, "user.rustdb.format").unwrap();
            match (kind_of(rel), stage) {
                ("binary", 1) => {
                    assert_eq!(
                        &bytes, original,
                        "{rel}: compressed binaries read back identical"
                    );
                    let stored = std::fs::metadata(
                        inst.storage.join("objects").join(
                            backing_files(&inst, ids[rel])
                                .iter()
                                .find(|f| f.starts_with("objects/"))
                                .unwrap()
                                .trim_start_matches("objects/"),
                        ),
                    )
                    .unwrap()
                    .len();
                    let state = inst.get(&format!("/rot/state/{}", ids[rel]));
                    let last = state["history"]
                        .as_array()
                        .and_then(|h| h.last())
                        .map(|h| h["reason"].to_string())
                        .unwrap_or_default();
                    if last.contains("compression skipped") {
                        // Noise-like data (eeg.dat): under 5% saved, so the bytes stay plain.
                        assert_eq!(stored, original.len() as u64, "{rel}: {last}");
                    } else {
                        assert!(
                            (stored as f64) < 0.95 * original.len() as f64,
                            "{rel}: backing file shrank by 5% or more ({stored} bytes): {last}"
                        );
                    }
                }
                ("images", 1 | 2) if original.len() > 1024 => {
                    assert_eq!(format, "image/jpeg", "{rel}");
                    assert_eq!(&bytes[..3], &[0xff, 0xd8, 0xff], "{rel} is a JPEG");
                    assert!(
                        (bytes.len() as u64) < previous[rel],
                        "{rel}: JPEG smaller than before"
                    );
                }
                _ => {
                    assert!(
                        (bytes.len() as u64) <= previous[rel],
                        "{rel}: stage {stage} is not larger than the stage before"
                    );
                    if kind_of(rel) != "binary" && original.len() > 4096 {
                        assert!(
                            bytes.len() < original.len(),
                            "{rel}: summary smaller than the original"
                        );
                    }
                }
            }
            assert_decodes_as(rel, &format, &bytes);
            if stage <= 2 {
                assert_summary_keeps(rel, original, &bytes);
            }
            previous.insert(rel.clone(), bytes.len() as u64);
        }
    }

    // Stage 3 everywhere: a metadata stub (or kept bytes when a stub would not be smaller).
    let stub = std::fs::read_to_string(inst.path("images/coffee.png")).unwrap();
    assert!(
        stub.contains("coffee.png"),
        "the stub names the file: {stub}"
    );

    let report = inst.force_tick();
    assert_eq!(report["failed"], 0, "{report}");
    for (rel, _) in &files {
        assert!(
            !inst.path(rel).exists(),
            "{rel} still in the mount after purge"
        );
        assert!(
            backing_files(&inst, ids[rel]).is_empty(),
            "{rel} still has backing files"
        );
        let tomb = inst.object(rel).expect("tombstone listed");
        assert_eq!(tomb["deleted"], true);
        assert_eq!(tomb["stage"], 4);
    }
    let listing: Vec<_> = std::fs::read_dir(inst.path("images")).unwrap().collect();
    assert!(listing.is_empty(), "purged files vanish from listings");
}

#[test]
fn mount_keep_original_restores_byte_identical() {
    require_mount!();
    let inst = Instance::start(&[]);
    let original = std::fs::read(common::corpus().join("images/astronaut.png")).unwrap();
    let path = inst.path("astronaut.png");
    std::fs::write(&path, &original).unwrap();
    set_xattr(&path, "user.rustdb.keep_original", "1").unwrap();
    assert_eq!(
        xattr(&path, "user.rustdb.keep_original").as_deref(),
        Some("1")
    );
    assert!(xattr(&path, "user.rustdb.restore_until").is_none());

    let report = inst.force_tick();
    assert_eq!(
        xattr(&path, "user.rustdb.stage").as_deref(),
        Some("1"),
        "{report}\n{}",
        inst.log()
    );
    let warm = std::fs::read(&path).unwrap();
    assert!(warm.len() < original.len());
    let until: i64 = xattr(&path, "user.rustdb.restore_until")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(until > now, "restore window is open");

    let id = inst.object("astronaut.png").unwrap()["id"]
        .as_u64()
        .unwrap();
    let (status, state) = inst.post(&format!("/rot/restore/{id}"), serde_json::json!({}));
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["stage"], 0);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        original,
        "restored byte-identical"
    );
    assert_eq!(xattr(&path, "user.rustdb.stage").as_deref(), Some("0"));
    assert_eq!(
        xattr(&path, "user.rustdb.format").as_deref(),
        Some("image/png")
    );

    // Without a kept original, a lossy file cannot be restored: 409 says what is left.
    let other = inst.path("plain.png");
    std::fs::write(&other, &original).unwrap();
    inst.force_tick();
    let id = inst.object("plain.png").unwrap()["id"].as_u64().unwrap();
    let (status, body) = inst.post(&format!("/rot/restore/{id}"), serde_json::json!({}));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stage 1"),
        "{body}"
    );
}

#[test]
fn mount_open_is_an_access_and_listing_is_not() {
    require_mount!();
    let inst = Instance::start(&[]);
    let path = inst.path("notes.md");
    std::fs::write(&path, "# Notes\n\nSome text.\n").unwrap();
    let heat = |p: &std::path::Path| {
        xattr(p, "user.rustdb.heat")
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let before = heat(&path);
    for _ in 0..3 {
        let _ = std::fs::metadata(&path).unwrap();
        let _ = std::fs::read_dir(&inst.mount).unwrap().count();
    }
    assert_eq!(heat(&path), before, "stat and listing are not accesses");
    for _ in 0..3 {
        std::fs::read(&path).unwrap();
    }
    assert!(
        heat(&path) >= before + 3.0 - 0.01,
        "three opens add heat: {} -> {}",
        before,
        heat(&path)
    );
}

#[test]
fn mount_reader_keeps_its_bytes_across_a_rewrite() {
    require_mount!();
    reader_keeps_its_bytes(&[]);
}

#[test]
fn mount_reader_keeps_its_bytes_across_a_rewrite_without_passthrough() {
    require_mount!();
    reader_keeps_its_bytes(&[("RUSTDB_NO_PASSTHROUGH", "true")]);
}

fn reader_keeps_its_bytes(env: &[(&str, &str)]) {
    let inst = Instance::start(env);
    let original = std::fs::read(common::corpus().join("images/chelsea.png")).unwrap();
    let path = inst.path("cat.png");
    std::fs::write(&path, &original).unwrap();
    let mut held = std::fs::File::open(&path).unwrap();
    let mut first = vec![0u8; 4096];
    held.read_exact(&mut first).unwrap();

    inst.force_tick();
    // The old handle still reads the generation it opened, to the end.
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    first.extend(rest);
    assert_eq!(
        first, original,
        "an open reader keeps reading what it opened"
    );
    held.seek(SeekFrom::Start(0)).unwrap();
    let mut again = vec![0u8; 8];
    held.read_exact(&mut again).unwrap();
    assert_eq!(&again, &original[..8]);

    // A new open sees the new artifact and its new size.
    let now = std::fs::read(&path).unwrap();
    assert_eq!(&now[..3], &[0xff, 0xd8, 0xff], "{}", inst.log());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), now.len() as u64);
    drop(held);
}

#[test]
fn mount_writes_make_new_original_content_and_block_decay() {
    require_mount!();
    writes_make_new_original_content(&[]);
}

#[test]
fn mount_writes_make_new_original_content_without_passthrough() {
    require_mount!();
    writes_make_new_original_content(&[("RUSTDB_NO_PASSTHROUGH", "true")]);
}

fn writes_make_new_original_content(env: &[(&str, &str)]) {
    let inst = Instance::start(env);
    let path = inst.path("diary.txt");
    let text = "Dear diary. ".repeat(2000);
    std::fs::write(&path, &text).unwrap();
    inst.force_tick();
    assert_eq!(xattr(&path, "user.rustdb.stage").as_deref(), Some("1"));
    let summary = std::fs::read_to_string(&path).unwrap();
    assert!(summary.len() < text.len());

    // Opening read-write without writing changes nothing (passthrough writes are invisible to
    // RustDB, so this checks the backing-file comparison).
    let mut rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut seen = String::new();
    rw.read_to_string(&mut seen).unwrap();
    drop(rw);
    assert_eq!(seen, summary);
    assert_eq!(
        xattr(&path, "user.rustdb.stage").as_deref(),
        Some("1"),
        "a read-write open without writes keeps the stage"
    );

    // Appending to a decayed file: its bytes (summary + addition) become stage-0 content.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"\nP.S. hello").unwrap();
    // Open for writing: a forced tick must not rewrite it.
    inst.force_tick();
    drop(f);
    assert_eq!(xattr(&path, "user.rustdb.stage").as_deref(), Some("0"));
    let now = std::fs::read_to_string(&path).unwrap();
    assert_eq!(now, format!("{summary}\nP.S. hello"));
    assert_eq!(
        xattr(&path, "user.rustdb.original_size"),
        Some(now.len().to_string())
    );

    // Writing to a compressed binary decodes it first, transparently.
    let bin = inst.path("blob.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&bin, &data).unwrap();
    inst.force_tick();
    assert_eq!(xattr(&bin, "user.rustdb.stage").as_deref(), Some("1"));
    let mut f = std::fs::OpenOptions::new().write(true).open(&bin).unwrap();
    f.seek(SeekFrom::Start(10)).unwrap();
    f.write_all(b"XYZ").unwrap();
    drop(f);
    let mut expect = data.clone();
    expect[10..13].copy_from_slice(b"XYZ");
    assert_eq!(std::fs::read(&bin).unwrap(), expect);
    assert_eq!(xattr(&bin, "user.rustdb.stage").as_deref(), Some("0"));
}

#[test]
fn mount_namespace_operations_behave_like_a_filesystem() {
    require_mount!();
    let inst = Instance::start(&[]);
    let m = &inst.mount;
    std::fs::create_dir_all(m.join("a/b")).unwrap();
    std::fs::write(m.join("a/b/f.txt"), "one").unwrap();
    std::fs::write(m.join("a/g.txt"), "two").unwrap();
    // rename over an existing file
    std::fs::rename(m.join("a/g.txt"), m.join("a/b/f.txt")).unwrap();
    assert_eq!(std::fs::read_to_string(m.join("a/b/f.txt")).unwrap(), "two");
    assert!(!m.join("a/g.txt").exists());
    // truncate, chmod, symlink, readlink
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.join("a/b/f.txt"))
        .unwrap();
    f.set_len(1).unwrap();
    drop(f);
    assert_eq!(std::fs::read_to_string(m.join("a/b/f.txt")).unwrap(), "t");
    std::fs::set_permissions(
        m.join("a/b/f.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(m.join("a/b/f.txt")).unwrap().mode() & 0o777,
        0o640
    );
    std::os::unix::fs::symlink("b/f.txt", m.join("a/link")).unwrap();
    assert_eq!(
        std::fs::read_link(m.join("a/link")).unwrap().to_str(),
        Some("b/f.txt")
    );
    assert_eq!(std::fs::read_to_string(m.join("a/link")).unwrap(), "t");
    // rmdir of a non-empty directory fails; unlink then rmdir works
    assert!(std::fs::remove_dir(m.join("a/b")).is_err());
    std::fs::remove_file(m.join("a/b/f.txt")).unwrap();
    std::fs::remove_dir(m.join("a/b")).unwrap();
    // user xattrs are stored as given; rustdb ones validate
    set_xattr(&m.join("a"), "user.color", "blue").unwrap();
    assert_eq!(xattr(&m.join("a"), "user.color").as_deref(), Some("blue"));
    std::fs::write(m.join("x.txt"), "x").unwrap();
    assert!(set_xattr(&m.join("x.txt"), "user.rustdb.speed", "fast").is_err());
    set_xattr(&m.join("x.txt"), "user.rustdb.speed", "2.5").unwrap();
    assert_eq!(
        xattr(&m.join("x.txt"), "user.rustdb.speed").as_deref(),
        Some("2.5")
    );
    // legal hold: no delete, no decay
    set_xattr(&m.join("x.txt"), "user.rustdb.hold", "1").unwrap();
    assert!(std::fs::remove_file(m.join("x.txt")).is_err());
    inst.force_tick();
    assert_eq!(
        xattr(&m.join("x.txt"), "user.rustdb.stage").as_deref(),
        Some("0")
    );
    // A directory's times move when its entries change; its mode is not written back stale.
    let dir_mtime = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    std::fs::set_permissions(
        m.join("a"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    let before = dir_mtime(&m.join("a"));
    std::fs::write(m.join("a/new.txt"), "n").unwrap();
    let after_create = dir_mtime(&m.join("a"));
    assert!(after_create > before, "create moves the directory's mtime");
    std::fs::remove_file(m.join("a/new.txt")).unwrap();
    assert!(
        dir_mtime(&m.join("a")) > after_create,
        "unlink moves the directory's mtime"
    );
    assert_eq!(
        std::fs::metadata(m.join("a")).unwrap().mode() & 0o777,
        0o750
    );
    // chown, utimens, fsync
    std::os::unix::fs::chown(m.join("a"), Some(1000), Some(1000)).unwrap();
    let meta = std::fs::metadata(m.join("a")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.join("x.txt"))
        .unwrap();
    f.set_modified(when).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(
        std::fs::metadata(m.join("x.txt")).unwrap().mtime(),
        1_600_000_000
    );
    // statfs answers
    let st = nix::sys::statvfs::statvfs(m).unwrap();
    assert!(st.blocks() > 0);
}

#[test]
fn mount_pin_and_speed_through_xattrs() {
    require_mount!();
    let inst = Instance::start(&[]);
    let text = "A line of text that repeats. ".repeat(500);
    for name in ["pinned.txt", "slow.txt", "fast.txt"] {
        std::fs::write(inst.path(name), &text).unwrap();
    }
    set_xattr(&inst.path("pinned.txt"), "user.rustdb.pinned", "1").unwrap();
    set_xattr(&inst.path("slow.txt"), "user.rustdb.speed", "0.5").unwrap();
    set_xattr(&inst.path("fast.txt"), "user.rustdb.speed", "2").unwrap();
    // The speed rule is the engine's, through the API as through xattrs.
    let id = inst.object("slow.txt").unwrap()["id"].as_u64().unwrap();
    for bad in [0.0, -1.0, 100.5, 1e300] {
        let (status, body) = inst.post(
            &format!("/rot/control/{id}"),
            serde_json::json!({"speed": bad}),
        );
        assert_eq!(status, 422, "speed {bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("speed"),
            "{body}"
        );
    }
    assert!(set_xattr(&inst.path("slow.txt"), "user.rustdb.speed", "0").is_err());
    inst.force_tick();
    let stage = |n: &str| xattr(&inst.path(n), "user.rustdb.stage").unwrap();
    assert_eq!(
        (stage("pinned.txt"), stage("slow.txt"), stage("fast.txt")),
        ("0".into(), "0".into(), "2".into())
    );
    inst.force_tick();
    assert_eq!(
        (stage("pinned.txt"), stage("slow.txt")),
        ("0".into(), "1".into())
    );
    assert!(
        !inst.path("fast.txt").exists(),
        "speed 2 purges after the stub"
    );
}

fn fast_policy_file(inst_dir: &std::path::Path) -> std::path::PathBuf {
    let policy = serde_json::json!({
        "stage_one_after_sec": 1, "stage_two_after_sec": 3600, "stub_after_sec": 7200,
        "delete_after_sec": 10800, "min_retention_sec": 0, "grace_delete_sec": 0,
        "access_cooldown_sec": 0, "restore_window_sec": 600, "keep_original": false,
        "heat_half_life_sec": 86400
    });
    let set = serde_json::json!({
        "image": policy, "text": policy, "spreadsheet": policy, "document": policy, "binary": policy
    });
    let path = inst_dir.join("policy.json");
    std::fs::write(&path, set.to_string()).unwrap();
    path
}

#[test]
fn mount_scheduler_decays_on_the_wall_clock() {
    require_mount!();
    let dir = tempfile::tempdir().unwrap();
    let policy = fast_policy_file(dir.path());
    let inst = Instance::start(&[
        ("RUSTDB_POLICY_FILE", policy.to_str().unwrap()),
        ("RUSTDB_TICK_INTERVAL_SEC", "1"),
    ]);
    let path = inst.path("log.txt");
    std::fs::write(&path, "a line of the log that repeats\n".repeat(400)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while xattr(&path, "user.rustdb.stage").as_deref() != Some("1") {
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduler never decayed the file:\n{}",
            inst.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let next: i64 = xattr(&path, "user.rustdb.next_decay_at")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        next > now + 3000,
        "stage 2 is due an hour after the last access: {next} vs {now}"
    );
}

#[test]
fn mount_shadow_mode_reports_and_changes_nothing() {
    require_mount!();
    let inst = Instance::start(&[("RUSTDB_SHADOW_MODE", "true")]);
    let original = std::fs::read(common::corpus().join("images/coffee.png")).unwrap();
    std::fs::write(inst.path("coffee.png"), &original).unwrap();
    let report = inst.force_tick();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["changed"], 1, "{report}");
    assert!(
        report["bytes_saved"].as_i64().unwrap() > 100_000,
        "{report}"
    );
    assert_eq!(std::fs::read(inst.path("coffee.png")).unwrap(), original);
    assert_eq!(
        xattr(&inst.path("coffee.png"), "user.rustdb.stage").as_deref(),
        Some("0")
    );
}

/// Hard links name one file: same inode and bytes, link counts as on ext4; the file (and its
/// object) lives until its last name goes, and the API path follows the remaining name.
#[test]
fn mount_hard_links_share_one_file_until_the_last_name_goes() {
    require_mount!();
    use std::os::unix::fs::MetadataExt;
    let mut inst = Instance::start(&[]);
    let m = inst.mount.clone();
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::write(m.join("a.txt"), "first").unwrap();
    std::fs::hard_link(m.join("a.txt"), m.join("d/b.txt")).unwrap();
    let (a, b) = (
        std::fs::metadata(m.join("a.txt")).unwrap(),
        std::fs::metadata(m.join("d/b.txt")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(
        std::fs::hard_link(m.join("d"), m.join("d2"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EPERM),
        "directories cannot be hard-linked"
    );
    // Directory link counts: 2 plus subdirectories.
    assert_eq!(std::fs::metadata(&m).unwrap().nlink(), 3);
    // A write through one name shows through the other.
    std::fs::write(m.join("d/b.txt"), "second").unwrap();
    assert_eq!(std::fs::read_to_string(m.join("a.txt")).unwrap(), "second");
    // Renaming one name onto the other does nothing (POSIX).
    std::fs::rename(m.join("a.txt"), m.join("d/b.txt")).unwrap();
    assert!(m.join("a.txt").exists() && m.join("d/b.txt").exists());
    // The first name goes: the file lives on under the other, and the API follows it.
    std::fs::remove_file(m.join("a.txt")).unwrap();
    assert_eq!(std::fs::metadata(m.join("d/b.txt")).unwrap().nlink(), 1);
    assert_eq!(
        std::fs::read_to_string(m.join("d/b.txt")).unwrap(),
        "second"
    );
    let obj = inst.object("d/b.txt").expect("object follows the link");
    assert_eq!(obj["deleted"], false, "{obj}");
    // The last name goes: the object becomes a tombstone.
    std::fs::remove_file(m.join("d/b.txt")).unwrap();
    assert_eq!(inst.object("d/b.txt").unwrap()["deleted"], true);
    inst.stop();
}

/// FIFOs, sockets and device nodes exist as names with their type and device number; the mount
/// is `nodev`, so device nodes cannot be opened through it.
#[test]
fn mount_special_files_keep_their_type() {
    require_mount!();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut inst = Instance::start(&[]);
    let m = inst.mount.clone();
    let mknod = |name: &str, mode: libc::mode_t, dev: libc::dev_t| {
        let path = std::ffi::CString::new(m.join(name).to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and plain integers.
        assert_eq!(
            unsafe { libc::mknod(path.as_ptr(), mode, dev) },
            0,
            "{name}"
        );
    };
    mknod("fifo", libc::S_IFIFO | 0o644, 0);
    mknod("chr", libc::S_IFCHR | 0o600, libc::makedev(1, 3));
    mknod("plain", libc::S_IFREG | 0o640, 0);
    let meta = |n: &str| std::fs::symlink_metadata(m.join(n)).unwrap();
    assert!(meta("fifo").file_type().is_fifo());
    assert!(meta("chr").file_type().is_char_device());
    assert_eq!(meta("chr").rdev(), libc::makedev(1, 3));
    assert!(meta("plain").file_type().is_file());
    assert_eq!(meta("plain").mode() & 0o777, 0o640);
    // A FIFO made here carries data between two processes, as anywhere.
    let fifo = m.join("fifo");
    let writer = std::thread::spawn(move || std::fs::write(fifo, b"through the pipe").unwrap());
    assert_eq!(std::fs::read(m.join("fifo")).unwrap(), b"through the pipe");
    writer.join().unwrap();
    inst.stop();
}

/// Every close of a duplicated descriptor flushes; writes through another descriptor after
/// that (kernel passthrough never shows them to RustDB) are still recorded as the file's
/// content when the last descriptor goes. Found by the crash harness: a forked child closing
/// its copy of a descriptor made the parent's later writes invisible to the catalog.
#[test]
fn mount_writes_after_a_duplicate_is_closed_are_recorded() {
    require_mount!();
    use std::os::fd::AsRawFd;
    let mut inst = Instance::start(&[]);
    let path = inst.path("dup.txt");
    let mut f = std::fs::File::create(&path).unwrap();
    // SAFETY: dup and close of a descriptor this test owns.
    unsafe {
        let copy = libc::dup(f.as_raw_fd());
        assert!(copy >= 0);
        assert_eq!(libc::close(copy), 0);
    }
    let content = "written after the duplicate was closed\n".repeat(100);
    f.write_all(content.as_bytes()).unwrap();
    drop(f);
    // The release that records the rest may follow close by a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let obj = inst.object("dup.txt").unwrap();
        if obj["size"] == content.len() as u64 {
            assert_eq!(
                obj["sha256"],
                hex::encode(sha2::Sha256::digest(content.as_bytes()))
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the catalog never saw the writes: {obj}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    inst.stop();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rustdb"))
        .args(["fsck", "--storage-dir"])
        .arg(&inst.storage)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
