//! A full disk: the storage directory on a small tmpfs, filled to the last byte by a file beside
//! it. Writes through the mount fail with ENOSPC, uploads with 507, ticks take no step (and count
//! no failure against any file: a rewrite that finds no room is simply not taken), and nothing
//! already stored changes. Once the filler goes,
//! decay, uploads and writes resume, and fsck finds the storage clean. Needs root (it mounts).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{exchange, figure, Instance, Rng};

const SMALL_FS_BYTES: u64 = 24 << 20;

/// The tmpfs under the test's directory; unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={SMALL_FS_BYTES}"))
            .arg("tmpfs")
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "cannot mount a tmpfs at {}", at.display());
        SmallFs(at.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `filler` until a write fails with ENOSPC; answers the filler's
/// length.
fn fill(filler: &Path) -> u64 {
    let mut f = std::fs::File::create(filler).unwrap();
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let block = vec![0xa5u8; chunk];
        loop {
            match f.write_all(&block) {
                Ok(()) => written += chunk as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
    }
    let _ = f.sync_all();
    // A write cut short by ENOSPC left some of its bytes: the file's length counts them.
    f.metadata().unwrap().len().max(written)
}

fn compressible(n: usize, seed: u64) -> Vec<u8> {
    common::compressible(&mut Rng(seed | 1), b"\x00\xffRUSTDB-ENOSPC\x00", n)
}

fn upload(inst: &Instance, path: &str, data: &[u8]) -> (u16, serde_json::Value) {
    let (status, _, body) = exchange(
        inst.port,
        "POST",
        &format!("/upload?path={path}"),
        &[("Content-Type", "application/octet-stream")],
        data.len() as u64,
        |s| s.write_all(data),
    );
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

#[test]
fn enospc_loses_nothing_and_decay_resumes_when_space_returns() {
    require_mount!();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED full-disk test: mounting a small tmpfs needs root");
        return;
    }
    let mut small = None;
    let mut inst = Instance::start_with_storage(&[], |dir| {
        small = Some(SmallFs::mount(&dir.join("small")));
        dir.join("small/storage")
    });
    let small = small.unwrap();
    let filler = small.0.join("filler");

    // What is stored before the disk fills.
    let stored: Vec<(String, Vec<u8>)> = vec![
        ("keep/a.bin".into(), compressible(3 << 20, 1)),
        ("keep/b.bin".into(), compressible(600 << 10, 2)),
        (
            "keep/notes.txt".into(),
            "A line of notes that will be summarised.\n"
                .repeat(4000)
                .into_bytes(),
        ),
    ];
    std::fs::create_dir_all(inst.path("keep")).unwrap();
    for (rel, bytes) in &stored {
        std::fs::write(inst.path(rel), bytes).unwrap();
    }
    fill(&filler);

    // A new file through the mount: ENOSPC at the create, a write or the close.
    let big = compressible(2 << 20, 3);
    let new_file = inst.path("keep/new.bin");
    let wrote = std::fs::File::create(&new_file).and_then(|mut f| {
        f.write_all(&big)?;
        f.sync_all()
    });
    assert_eq!(
        errno_of(wrote),
        Some(libc::ENOSPC),
        "writing 2 MiB into a full disk through the mount"
    );
    // Appending to a stored file: ENOSPC, and its bytes before the append are intact.
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .open(inst.path("keep/b.bin"))
        .and_then(|mut f| {
            f.write_all(&compressible(1 << 20, 4))?;
            f.sync_all()
        });
    assert_eq!(
        errno_of(appended),
        Some(libc::ENOSPC),
        "appending on a full disk"
    );
    let b_now = std::fs::read(inst.path("keep/b.bin")).unwrap();
    assert_eq!(
        &b_now[..stored[1].1.len()],
        &stored[1].1[..],
        "the bytes before a failed append stay"
    );

    // An upload: 507, and nothing of it is stored.
    let (status, body) = upload(&inst, "/up/while-full.bin", &compressible(1 << 20, 5));
    assert_eq!(status, 507, "upload on a full disk: {body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(!inst.path("up/while-full.bin").exists());

    // A forced tick: no rewrite can be published; it says so, and no file changes.
    let (status, body) = inst.post("/rot/run", serde_json::json!({"force": true}));
    assert!(
        status == 507 || (status == 200 && body["changed"] == 0),
        "a forced tick on a full disk: {status} {body}"
    );
    for (rel, bytes) in &stored[..1] {
        assert_eq!(&std::fs::read(inst.path(rel)).unwrap(), bytes, "{rel}");
    }
    assert_eq!(
        std::fs::read(inst.path("keep/notes.txt")).unwrap(),
        stored[2].1
    );

    // A little space back, enough for the catalog and small artifacts but not for the
    // compressed generation of the largest file: its step fails for want of space, without a
    // failure counted against it (three would make a stub), and the others move on.
    let room = 256 << 10;
    // Filled afresh: whatever the catalog gave back meanwhile (a checkpointed log) is taken too.
    std::fs::remove_file(&filler).unwrap();
    let filled = fill(&filler);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(filled - room)
        .unwrap();
    let tick = inst.force_tick();
    let moved: Vec<&str> = tick["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        tick["failed"].as_u64().unwrap() >= 1 && !moved.contains(&"/keep/a.bin"),
        "the 3 MiB file cannot be rewritten in {room} bytes: {tick}"
    );
    assert!(!moved.is_empty(), "the small ones can: {tick}");
    let a = inst.object("keep/a.bin").unwrap();
    let state = inst.get(&format!("/rot/state/{}", a["id"]));
    assert_eq!(state["stage"], 0, "{state}");
    assert!(
        state["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["event"] != "failed"),
        "a full disk is not the file's failure: {state}"
    );
    assert_eq!(std::fs::read(inst.path("keep/a.bin")).unwrap(), stored[0].1);

    // Space returns: decay, uploads and writes resume.
    std::fs::remove_file(&filler).unwrap();
    let tick = inst.force_tick();
    assert_eq!(tick["failed"], 0, "{tick}");
    assert!(
        tick["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == "/keep/a.bin"),
        "the large file moves on once space is back: {tick}"
    );
    for (rel, bytes) in &stored[..1] {
        assert_eq!(
            &std::fs::read(inst.path(rel)).unwrap(),
            bytes,
            "{rel} (compressed) reads back whole"
        );
    }
    let notes = std::fs::read(inst.path("keep/notes.txt")).unwrap();
    assert!(
        notes.len() < stored[2].1.len(),
        "the text is summarised now"
    );
    assert_eq!(inst.object("keep/a.bin").unwrap()["stage"], 1);
    let (status, body) = upload(&inst, "/up/after.bin", &compressible(1 << 20, 6));
    assert_eq!(status, 201, "upload once space is back: {body}");
    std::fs::write(&new_file, &big).unwrap();
    assert_eq!(std::fs::read(&new_file).unwrap(), big);

    inst.stop();
    let (code, report) = inst.fsck();
    assert_eq!(code, 0, "fsck after the full-disk run:\n{report}");
    drop(small);
    figure(&format!(
        "full disk: a {} MiB tmpfs filled with {} KiB beside the storage; mount write and append ENOSPC, upload 507, forced tick took no step; with 256 KiB free the large file's rewrite failed for space with no failure counted; after freeing, tick, upload and write succeeded, fsck clean",
        SMALL_FS_BYTES >> 20,
        filled >> 10
    ));
}
