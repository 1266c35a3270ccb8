//! Readers and writers during decay: several threads of random file operations on a real mount
//! while forced ticks run back to back, every read checked against a reference model of what
//! each file may hold.
//!
//! Each worker owns a directory, so its model is exact except for what the engine does: a file
//! it wrote holds that original (at stage 0, or compressed at stage 1, which reads back the
//! same), or the stub naming the original's SHA-256 (stage 2 and 3), or is gone (stage 4). The
//! ticks bound how far that may have gone: each tick moves an object one stage at most, so a
//! stub needs one tick to have ended since the write began (and the one running), a purge three.
//! A read that sees a stub pins the file there: a later open showing the original would be a
//! stale page cache. Every read also compares `fstat` on its descriptor with the bytes it got.
//!
//! `RUSTDB_STRESS_SECONDS` sets the run time of each of the two runs (passthrough and not).

mod common;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{compressible, figure, Instance, Rng};
use sha2::{Digest, Sha256};

const WORKERS: usize = 4;
/// Every file the workers write starts with this, so it is always detected as a binary.
const HEADER: &[u8] = b"\x00\xffRUSTDB-STRESS\x00";

/// Binary bytes that stage 1 really rewrites, between 64 bytes and `max` more.
fn content(rng: &mut Rng, max: u64) -> Vec<u8> {
    let n = 64 + rng.below(max) as usize;
    compressible(rng, HEADER, n)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ticks that have ended; the tick thread counts them.
struct Ticks {
    ended: AtomicU64,
    stop: AtomicBool,
}

impl Ticks {
    fn now(&self) -> u64 {
        self.ended.load(Ordering::SeqCst)
    }

    /// Waits until `n` more ticks have ended (or a few seconds passed).
    fn wait_for(&self, n: u64) {
        let target = self.now() + n;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.now() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What the model knows of one path's file.
#[derive(Clone)]
struct FileModel {
    original: Vec<u8>,
    sha256: String,
    /// Ticks ended when the write of `original` began: stages may only have moved since.
    born: u64,
    /// A read has seen the stub: the original must not show again.
    stubbed: bool,
}

impl FileModel {
    fn new(original: Vec<u8>, born: u64) -> FileModel {
        FileModel {
            sha256: sha256_hex(&original),
            original,
            born,
            stubbed: false,
        }
    }

    /// The most stages the engine can have moved this file by, with `ended` ticks ended.
    fn max_stages(&self, ended: u64) -> u64 {
        // The ticks ended since the write began, plus one that may be running now.
        ended.saturating_sub(self.born) + 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Original,
    Stub,
}

/// Whether `bytes` (one whole read) is something the file may hold; `ended` was read after it.
fn classify(bytes: &[u8], model: &FileModel, ended: u64) -> Result<Seen, String> {
    if bytes == model.original {
        if model.stubbed {
            return Err("the original again after a read saw its stub (stale cache)".into());
        }
        return Ok(Seen::Original);
    }
    let text = String::from_utf8_lossy(bytes);
    if text.starts_with("rustdb-stub: 1\n")
        && text.contains(&format!("\nsha256: {}\n", model.sha256))
        && text.contains(&format!("\noriginal_size: {}\n", model.original.len()))
    {
        if model.max_stages(ended) < 2 {
            return Err(format!(
                "a stub after at most {} stage(s) since the write",
                model.max_stages(ended)
            ));
        }
        return Ok(Seen::Stub);
    }
    Err(format!(
        "{} bytes that are neither the original ({} bytes) nor its stub; head {:?}",
        bytes.len(),
        model.original.len(),
        String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
    ))
}

/// A path that answered ENOENT must have had time to be purged.
fn check_purge(model: &FileModel, ended: u64, what: &str) -> Result<(), String> {
    if model.max_stages(ended) < 4 {
        return Err(format!(
            "{what}: ENOENT after at most {} stage(s) since the write (a purge needs 4)",
            model.max_stages(ended)
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    ops: u64,
    reads: u64,
    stubs_seen: u64,
    purges_seen: u64,
    held_writers: u64,
}

struct Worker {
    root: std::path::PathBuf,
    rng: Rng,
    files: BTreeMap<String, FileModel>,
    next_name: u64,
    ticks: Arc<Ticks>,
    counts: Counts,
    /// What each worker did, for the failure message: (op number, what).
    journal: Vec<(u64, String)>,
    /// Every content the worker wrote, by SHA-256, to name what a wrong read holds.
    written: BTreeMap<String, String>,
}

impl Worker {
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.root.join(rel)
    }

    fn note(&mut self, what: String) {
        self.journal.push((self.counts.ops, what));
    }

    fn remember(&mut self, rel: &str, bytes: &[u8], how: &str) {
        let what = format!(
            "{how} {rel} at op {} ({} bytes)",
            self.counts.ops,
            bytes.len()
        );
        self.written.insert(sha256_hex(bytes), what);
    }

    /// The journal lines about `rel` and what the wrong bytes were, for a failure message.
    fn explain(&self, rel: &str, bytes: &[u8]) -> String {
        let mut out = match self.written.get(&sha256_hex(bytes)) {
            Some(w) => format!("\n  the bytes read are what was written by: {w}"),
            None => "\n  the bytes read were never written by this worker".into(),
        };
        for (op, what) in &self.journal {
            if what.split(' ').any(|w| w == rel) {
                out += &format!("\n  op {op}: {what}");
            }
        }
        out
    }

    fn pick(&mut self) -> Option<String> {
        if self.files.is_empty() {
            return None;
        }
        let i = self.rng.below(self.files.len() as u64) as usize;
        self.files.keys().nth(i).cloned()
    }

    fn fresh_name(&mut self) -> String {
        self.next_name += 1;
        let dir = if self.rng.below(3) == 0 { "sub/" } else { "" };
        format!("{dir}f{}.bin", self.next_name)
    }

    /// Opens `rel` with `options`; None when a tick purged the file (legitimately: the model
    /// is checked, then forgets the file).
    fn open(
        &mut self,
        rel: &str,
        options: &OpenOptions,
        what: &str,
    ) -> Result<Option<File>, String> {
        match options.open(self.path(rel)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let model = self.files.remove(rel).ok_or("no model")?;
                check_purge(&model, self.ticks.now(), &format!("{what} {rel}"))?;
                self.note(format!("{what} {rel} found it purged"));
                self.counts.purges_seen += 1;
                Ok(None)
            }
            Err(e) => Err(format!("{what} {rel}: {e}")),
        }
    }

    /// Reads `rel` whole through a new open, slowly when asked (a tick may end in between),
    /// checks it against the model and `fstat`, and updates the model.
    fn read(&mut self, rel: &str, slow: bool) -> Result<(), String> {
        let model = self.files.get(rel).cloned().ok_or("no model")?;
        let Some(mut file) = self.open(rel, OpenOptions::new().read(true), "open")? else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        let fail =
            |e: std::io::Error, what: &str| format!("{what} {rel}: {e}{}", self.explain(rel, &[]));
        if slow {
            let mut head = vec![0u8; 4096];
            let n = file.read(&mut head).map_err(|e| fail(e, "read"))?;
            bytes.extend_from_slice(&head[..n]);
            self.ticks.wait_for(1);
        }
        file.read_to_end(&mut bytes).map_err(|e| fail(e, "read"))?;
        let size = file.metadata().map_err(|e| fail(e, "fstat"))?.len();
        if size != bytes.len() as u64 {
            return Err(format!(
                "{rel}: fstat says {size} bytes, the descriptor read {}{}",
                bytes.len(),
                self.explain(rel, &bytes)
            ));
        }
        let seen = classify(&bytes, &model, self.ticks.now())
            .map_err(|e| format!("{rel}: {e}{}", self.explain(rel, &bytes)))?;
        self.note(format!("read {rel} saw {seen:?} ({} bytes)", bytes.len()));
        self.counts.reads += 1;
        if seen == Seen::Stub && !model.stubbed {
            self.counts.stubs_seen += 1;
            self.files.get_mut(rel).unwrap().stubbed = true;
        }
        Ok(())
    }

    fn create(&mut self) -> Result<(), String> {
        let rel = self.fresh_name();
        let bytes = content(&mut self.rng, 96 * 1024);
        let born = self.ticks.now();
        let mut f = File::create(self.path(&rel)).map_err(|e| format!("create {rel}: {e}"))?;
        f.write_all(&bytes)
            .map_err(|e| format!("write {rel}: {e}"))?;
        if self.rng.below(2) == 0 {
            f.sync_all().map_err(|e| format!("fsync {rel}: {e}"))?;
        }
        drop(f);
        self.remember(&rel, &bytes, "create");
        self.note(format!("create {rel} ({} bytes)", bytes.len()));
        self.files.insert(rel, FileModel::new(bytes, born));
        Ok(())
    }

    /// Replaces a file's bytes (O_TRUNC; O_CREAT in case a tick purged it).
    fn overwrite(&mut self, rel: &str) -> Result<(), String> {
        let bytes = content(&mut self.rng, 96 * 1024);
        let born = self.ticks.now();
        std::fs::write(self.path(rel), &bytes).map_err(|e| format!("overwrite {rel}: {e}"))?;
        self.remember(rel, &bytes, "overwrite");
        self.note(format!("overwrite {rel} ({} bytes)", bytes.len()));
        self.files
            .insert(rel.to_string(), FileModel::new(bytes, born));
        Ok(())
    }

    /// Opens for writing and holds the descriptor across two ticks: the file must not be
    /// rewritten meanwhile. Then appends (or replaces a stub, which would not stay binary).
    fn hold_writer(&mut self, rel: &str) -> Result<(), String> {
        let model = self.files.get(rel).cloned().ok_or("no model")?;
        let born = self.ticks.now();
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        let Some(file) = self.open(rel, &options, "open for writing")? else {
            return Ok(());
        };
        let at_open = read_all_at(&file).map_err(|e| format!("pread {rel}: {e}"))?;
        let seen = classify(&at_open, &model, self.ticks.now())
            .map_err(|e| format!("{rel} open for writing: {e}{}", self.explain(rel, &at_open)))?;
        self.ticks.wait_for(2);
        let later = std::fs::read(self.path(rel)).map_err(|e| format!("reopen {rel}: {e}"))?;
        if later != at_open {
            return Err(format!(
                "{rel} changed while open for writing: {} bytes at open, {} now{}",
                at_open.len(),
                later.len(),
                self.explain(rel, &later)
            ));
        }
        let next = if seen == Seen::Stub {
            let fresh = content(&mut self.rng, 32 * 1024);
            file.set_len(0)
                .map_err(|e| format!("ftruncate {rel}: {e}"))?;
            file.write_all_at(&fresh, 0)
                .map_err(|e| format!("pwrite {rel}: {e}"))?;
            fresh
        } else {
            let tail = content(&mut self.rng, 8 * 1024);
            file.write_all_at(&tail, at_open.len() as u64)
                .map_err(|e| format!("pwrite {rel}: {e}"))?;
            [at_open, tail].concat()
        };
        let written = read_all_at(&file).map_err(|e| format!("pread {rel}: {e}"))?;
        if written != next {
            return Err(format!(
                "{rel}: the writer reads back other bytes than it wrote"
            ));
        }
        drop(file);
        self.remember(rel, &next, "held writer");
        self.note(format!(
            "held writer {rel} ({} bytes at open, {} at close)",
            later.len(),
            next.len()
        ));
        self.counts.held_writers += 1;
        self.files
            .insert(rel.to_string(), FileModel::new(next, born));
        Ok(())
    }

    /// Appends through O_APPEND: the new bytes land after what the file served at the open.
    fn append(&mut self, rel: &str) -> Result<(), String> {
        let model = self.files.get(rel).cloned().ok_or("no model")?;
        let born = self.ticks.now();
        let mut options = OpenOptions::new();
        options.read(true).append(true);
        let Some(mut file) = self.open(rel, &options, "open to append")? else {
            return Ok(());
        };
        let before = read_all_at(&file).map_err(|e| format!("pread {rel}: {e}"))?;
        if classify(&before, &model, self.ticks.now())
            .map_err(|e| format!("{rel} open to append: {e}{}", self.explain(rel, &before)))?
            == Seen::Stub
        {
            // Appending to a stub would make a text file; leave it to decay.
            self.counts.stubs_seen += u64::from(!model.stubbed);
            self.files.get_mut(rel).unwrap().stubbed = true;
            return Ok(());
        }
        let tail = content(&mut self.rng, 4 * 1024);
        file.write_all(&tail)
            .map_err(|e| format!("append {rel}: {e}"))?;
        let after = read_all_at(&file).map_err(|e| format!("pread {rel}: {e}"))?;
        let expected = [before, tail].concat();
        if after != expected {
            return Err(format!(
                "{rel}: after an append {} bytes, expected {}",
                after.len(),
                expected.len()
            ));
        }
        drop(file);
        self.remember(rel, &expected, "append");
        self.note(format!("append to {rel} ({} bytes after)", expected.len()));
        self.files
            .insert(rel.to_string(), FileModel::new(expected, born));
        Ok(())
    }

    fn rename(&mut self, from: &str) -> Result<(), String> {
        let to = if self.rng.below(3) == 0 {
            self.pick().unwrap()
        } else {
            self.fresh_name()
        };
        if to == from {
            return Ok(());
        }
        let model = self.files.get(from).cloned().ok_or("no model")?;
        match std::fs::rename(self.path(from), self.path(&to)) {
            Ok(()) => {
                self.note(format!("rename {from} -> {to}"));
                self.files.remove(from);
                self.files.insert(to, model);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                check_purge(&model, self.ticks.now(), &format!("rename {from}"))?;
                self.files.remove(from);
                self.counts.purges_seen += 1;
                Ok(())
            }
            Err(e) => Err(format!("rename {from} -> {to}: {e}")),
        }
    }

    fn unlink(&mut self, rel: &str) -> Result<(), String> {
        let model = self.files.remove(rel).ok_or("no model")?;
        match std::fs::remove_file(self.path(rel)) {
            Ok(()) => {
                self.note(format!("unlink {rel}"));
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                check_purge(&model, self.ticks.now(), &format!("unlink {rel}"))
            }
            Err(e) => Err(format!("unlink {rel}: {e}")),
        }
    }

    /// The directory listing: only the model's names, and a missing one must be purgeable.
    fn list(&mut self) -> Result<(), String> {
        let mut listed = Vec::new();
        for dir in ["", "sub/"] {
            for entry in std::fs::read_dir(self.path(dir)).map_err(|e| format!("ls: {e}"))? {
                let entry = entry.map_err(|e| format!("ls: {e}"))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name != "sub" {
                    listed.push(format!("{dir}{name}"));
                }
            }
        }
        for name in &listed {
            if !self.files.contains_key(name) {
                return Err(format!("ls shows {name}, which the model does not have"));
            }
        }
        let missing: Vec<String> = self
            .files
            .keys()
            .filter(|k| !listed.contains(k))
            .cloned()
            .collect();
        for name in missing {
            check_purge(&self.files[&name], self.ticks.now(), &format!("ls {name}"))?;
            self.files.remove(&name);
            self.counts.purges_seen += 1;
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.counts.ops += 1;
        let Some(rel) = self.pick().filter(|_| self.files.len() >= 3) else {
            return self.create();
        };
        match self.rng.below(100) {
            0..=14 => self.create(),
            15..=44 => self.read(&rel, false),
            45..=54 => self.read(&rel, true),
            55..=62 => self.overwrite(&rel),
            63..=69 => self.append(&rel),
            70..=74 => self.hold_writer(&rel),
            75..=84 => self.rename(&rel),
            85..=91 => self.unlink(&rel),
            _ => self.list(),
        }
    }
}

fn read_all_at(file: &File) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read_at(&mut buf, out.len() as u64)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn stress_seconds() -> u64 {
    std::env::var("RUSTDB_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

fn stress(env: &[(&str, &str)], label: &str) {
    let mut inst = Instance::start(env);
    let ticks = Arc::new(Ticks {
        ended: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let ticker = {
        let ticks = ticks.clone();
        let port = inst.port;
        std::thread::spawn(move || {
            let mut changed = 0u64;
            let mut failed = Vec::new();
            while !ticks.stop.load(Ordering::SeqCst) {
                let (status, body) = common::request(
                    port,
                    "POST",
                    "/rot/run",
                    Some(serde_json::json!({"force": true})),
                )
                .expect("tick request");
                if status != 200 || body["failed"] != 0 {
                    failed.push(format!("tick {}: {status} {body}", ticks.now() + 1));
                }
                changed += body["changed"].as_u64().unwrap_or(0);
                ticks.ended.fetch_add(1, Ordering::SeqCst);
            }
            (changed, failed)
        })
    };

    let started = Instant::now();
    let run_for = Duration::from_secs(stress_seconds());
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let root = inst.path(&format!("w{i}"));
            std::fs::create_dir_all(root.join("sub")).unwrap();
            let ticks = ticks.clone();
            std::thread::spawn(move || {
                let mut w = Worker {
                    root,
                    rng: Rng(0x9e37_79b9_7f4a_7c15 ^ ((i as u64 + 1) * 0x1234_5678_9abc)),
                    files: BTreeMap::new(),
                    next_name: 0,
                    ticks,
                    counts: Counts::default(),
                    journal: Vec::new(),
                    written: BTreeMap::new(),
                };
                while started.elapsed() < run_for {
                    if let Err(e) = w.step() {
                        let recent: Vec<String> = w.journal[w.journal.len().saturating_sub(12)..]
                            .iter()
                            .map(|(op, what)| format!("\n    op {op}: {what}"))
                            .collect();
                        return Err(format!(
                            "worker {i}, op {}: {e}\n  its last operations:{}",
                            w.counts.ops,
                            recent.concat()
                        ));
                    }
                }
                Ok(w)
            })
        })
        .collect();
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for h in workers {
        match h.join().expect("worker panicked") {
            Ok(w) => done.push(w),
            Err(e) => failures.push(e),
        }
    }
    ticks.stop.store(true, Ordering::SeqCst);
    let (changed, failed_ticks) = ticker.join().expect("tick thread panicked");
    failures.extend(failed_ticks);
    assert!(
        failures.is_empty(),
        "{label}: {}\nwarnings in the log:\n{}",
        failures.join("\n"),
        warnings(&inst.log())
    );

    // At rest: every file reads as its model allows, and the API lists exactly the files the
    // mount shows.
    let mut on_mount = Vec::new();
    for w in &mut done {
        w.list().unwrap();
        for rel in w.files.keys().cloned().collect::<Vec<_>>() {
            w.read(&rel, false).unwrap();
            if w.files.contains_key(&rel) {
                let rel_to_mount = w.path(&rel).strip_prefix(&inst.mount).unwrap().to_owned();
                on_mount.push(format!("/{}", rel_to_mount.display()));
            }
        }
    }
    on_mount.sort();
    let mut in_api: Vec<String> = inst.get("/objects?limit=10000")["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap().to_string())
        .collect();
    in_api.sort();
    assert_eq!(in_api, on_mount, "the API and the mount disagree");

    inst.stop();
    let (code, report) = inst.fsck();
    assert_eq!(code, 0, "fsck after the stress run:\n{report}");

    let total = |f: fn(&Counts) -> u64| done.iter().map(|w| f(&w.counts)).sum::<u64>();
    figure(&format!(
        "stress ({label}): {WORKERS} workers, {} operations ({} whole-file reads checked, {} held writers) during {} forced ticks with {changed} stage changes; {} stubs and {} purges seen; 0 failures ({:.0} s)",
        total(|c| c.ops),
        total(|c| c.reads),
        total(|c| c.held_writers),
        ticks.now(),
        total(|c| c.stubs_seen),
        total(|c| c.purges_seen),
        started.elapsed().as_secs_f64()
    ));
}

/// The log's warnings and errors, for a failure message.
fn warnings(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn stress_random_operations_during_forced_ticks_read_what_the_model_allows() {
    require_mount!();
    stress(&[], "passthrough");
}

#[test]
fn stress_random_operations_during_forced_ticks_without_passthrough() {
    require_mount!();
    stress(&[("RUSTDB_NO_PASSTHROUGH", "true")], "no passthrough");
}
