//! `rustdb fsck` on storage that an in-process engine wrote and the test then damaged on
//! purpose: every kind of damage is reported in words and in JSON, `--repair` mends what it can
//! without deleting readable bytes, the exit code says what is left, and a corrupt or busy
//! catalog is refused with a clear message. No mount needed.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustdb::clock::ManualClock;
use rustdb::engine::{Engine, EngineConfig, TickOptions};
use rustdb::policy::PolicySet;

const TENANT: &str = "default";

fn text(seed: usize) -> Vec<u8> {
    (0..400)
        .map(|i| format!("line {i} of file {seed}: the quick brown fox jumps over the lazy dog\n"))
        .collect::<String>()
        .into_bytes()
}

fn engine(dir: &Path) -> Engine {
    let mut policies = PolicySet::default();
    policies.text.keep_original = true;
    Engine::load(
        EngineConfig {
            storage_dir: dir.to_path_buf(),
            policies,
            ..EngineConfig::default()
        },
        Arc::new(ManualClock::at(1_000_000)),
    )
    .unwrap()
}

/// Writes `name` through the engine as the mount would; returns its id.
fn put(e: &Engine, name: &str, bytes: &[u8]) -> u64 {
    let root = e.tenant_root(TENANT).unwrap();
    let (view, mut file) = e.create(root, name.as_bytes(), 0o644, 0, 0).unwrap();
    file.write_all(bytes).unwrap();
    drop(file);
    e.release(view.node.ino, true, true);
    view.node.ino
}

fn force_tick(e: &Engine) -> rustdb::engine::TickReport {
    let force = TickOptions {
        force: true,
        ..Default::default()
    };
    e.tick(Some(TENANT), force).unwrap()
}

fn fsck(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rustdb"))
        .arg("fsck")
        .arg("--storage-dir")
        .arg(dir)
        .arg("--json")
        .args(extra)
        .env("RUSTDB_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn findings_of(report: &serde_json::Value, key: &str) -> Vec<(Option<u64>, String, String)> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["object"].as_u64(),
                f["severity"].as_str().unwrap().to_string(),
                f["repair"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn fsck_reports_each_kind_of_damage_and_repairs_what_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let (rebuilt, lost, flipped, no_original, written);
    {
        let e = engine(&storage);
        // Decayed with a kept original: a damaged artifact can be rebuilt, a lost original dropped.
        rebuilt = put(&e, "rebuilt.txt", &text(1));
        no_original = put(&e, "kept.txt", &text(2));
        let report = force_tick(&e);
        assert_eq!(report.changed, 2, "{report:?}");
        // Stage 0, nothing to rebuild from.
        lost = put(&e, "lost.txt", &text(3));
        flipped = put(&e, "flipped.txt", &text(4));
        // Open for writing when the process "dies": the engine is dropped without a release.
        let root = e.tenant_root(TENANT).unwrap();
        let (view, mut file) = e.create(root, b"written.txt", 0o644, 0, 0).unwrap();
        file.write_all(b"half of what was meant").unwrap();
        file.sync_all().unwrap();
        written = view.node.ino;
    }
    let (code, clean, _) = fsck(&storage, &[]);
    assert_eq!(code, 2, "the interrupted write is a leftover: {clean}");

    let artifact = |id: u64| {
        std::fs::read_dir(storage.join("objects"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{id}."))
            })
            .unwrap()
    };
    std::fs::write(artifact(rebuilt), b"short").unwrap();
    std::fs::remove_file(artifact(lost)).unwrap();
    let mut bytes = std::fs::read(artifact(flipped)).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(artifact(flipped), bytes).unwrap();
    for entry in std::fs::read_dir(storage.join("originals")).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{no_original}."))
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::write(storage.join("tmp/7-1.99.0"), b"half a rewrite").unwrap();
    std::fs::write(storage.join("objects/999.1"), b"never committed").unwrap();

    let (code, report, stderr) = fsck(&storage, &[]);
    assert_eq!(code, 2, "{stderr}");
    let mut found = findings_of(&report, "findings");
    found.sort();
    let d = |id: u64, repair: &str| (Some(id), "damage".to_string(), repair.to_string());
    let leftover = |id: Option<u64>| (id, "leftover".to_string(), "recovery".to_string());
    let mut expected = vec![
        d(rebuilt, "rebuild_from_original"),
        d(lost, "mark_lost"),
        d(flipped, "none"),
        d(no_original, "drop_original"),
        leftover(Some(written)),
        leftover(None),
        leftover(None),
    ];
    expected.sort();
    assert_eq!(found, expected, "{report:#}");

    // The same report in words.
    let words = Command::new(env!("CARGO_BIN_EXE_rustdb"))
        .args(["fsck", "--storage-dir"])
        .arg(&storage)
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&words.stdout);
    assert!(
        words.contains("is missing") && words.contains("does not match its recorded SHA-256"),
        "{words}"
    );
    assert!(words.contains("rustdb fsck --repair"), "{words}");

    let (code, repaired, stderr) = fsck(&storage, &["--repair"]);
    assert_eq!(code, 2, "the flipped file cannot be mended: {stderr}");
    assert_eq!(
        findings_of(&repaired, "findings"),
        vec![d(flipped, "none")],
        "{repaired:#}"
    );
    assert_eq!(repaired["repaired"].as_array().unwrap().len(), 6);

    let e = engine(&storage);
    let row = |id| e.object_row(id).unwrap();
    assert_eq!(row(rebuilt).stage, 0, "rebuilt to its original");
    let mut read = Vec::new();
    let opened = e.open(rebuilt, None, false, false, None).unwrap();
    if let rustdb::engine::OpenedArtifact::File(mut f) = opened {
        std::io::Read::read_to_end(&mut f, &mut read).unwrap();
    }
    e.release(rebuilt, false, false);
    assert_eq!(read, text(1));
    assert!(row(lost).deleted_at.is_some(), "lost bytes: a tombstone");
    assert!(row(no_original).original_gen.is_none());
    assert_eq!(
        row(no_original).stage,
        1,
        "the artifact itself is untouched"
    );
    let w = row(written);
    assert!(!w.writing);
    assert_eq!(w.size, "half of what was meant".len() as u64);
    drop(e);
    // The flipped file is still there for a human to look at.
    assert_eq!(
        std::fs::read(artifact(flipped)).unwrap().len(),
        text(4).len()
    );
}

#[test]
fn fsck_of_clean_storage_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = engine(dir.path());
        put(&e, "a.txt", &text(1));
        put(&e, "b.txt", &text(2));
        force_tick(&e);
    }
    let (code, report, stderr) = fsck(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#} {stderr}");
    assert_eq!(report["objects"], 2);
    assert!(report["findings"].as_array().unwrap().is_empty());
}

#[test]
fn fsck_refuses_storage_in_use_and_a_corrupt_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    put(&e, "a.txt", &text(1));
    let (code, _, stderr) = fsck(dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("in use by another rustdb process"),
        "{stderr}"
    );
    drop(e);

    // Garbage over the catalog's pages: refused with what to do, by fsck and by a start.
    let catalog = dir.path().join("catalog.db");
    let mut bytes = std::fs::read(&catalog).unwrap();
    for b in bytes.iter_mut().skip(100).take(4000) {
        *b = 0xA5;
    }
    std::fs::write(&catalog, bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("catalog.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("catalog.db-shm"));
    let (code, _, stderr) = fsck(dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("is damaged") && stderr.contains("restore it from a backup"),
        "{stderr}"
    );
    let refused = Engine::load(
        EngineConfig {
            storage_dir: dir.path().to_path_buf(),
            ..EngineConfig::default()
        },
        Arc::new(ManualClock::at(0)),
    );
    let message = refused
        .err()
        .expect("a corrupt catalog is refused")
        .to_string();
    assert!(message.contains("restore it from a backup"), "{message}");

    let (code, _, stderr) = fsck(&dir.path().join("nowhere"), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("holds no catalog.db"), "{stderr}");
}

/// A catalog from before schema 3 has no hashes for decayed artifacts: fsck says so (a note,
/// exit 0), and `--repair` records them from the files (exit 1), after which nothing is left
/// to note.
#[test]
fn fsck_records_hashes_an_older_catalog_lacks() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = engine(dir.path());
        put(&e, "a.txt", &text(1));
        force_tick(&e);
    }
    let conn = rusqlite::Connection::open(dir.path().join("catalog.db")).unwrap();
    conn.execute(
        "UPDATE objects SET artifact_sha256 = NULL, original_sha256 = NULL",
        [],
    )
    .unwrap();
    drop(conn);
    let (code, report, _) = fsck(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    let notes = findings_of(&report, "findings");
    assert_eq!(notes.len(), 2, "artifact and kept original: {report:#}");
    assert!(notes
        .iter()
        .all(|(_, s, r)| s == "note" && r == "record_hash"));
    let (code, report, stderr) = fsck(dir.path(), &["--repair"]);
    assert_eq!(code, 1, "{report:#} {stderr}");
    assert!(findings_of(&report, "findings").is_empty(), "{report:#}");
    let (code, report, _) = fsck(dir.path(), &[]);
    assert_eq!(code, 0);
    assert!(findings_of(&report, "findings").is_empty(), "{report:#}");
}
