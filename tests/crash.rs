//! Crashes at any moment lose nothing. Three tests, all against a real `rustdb up` and mount:
//! - a SIGKILL in the middle of a forced tick over the corpus (real image and document
//!   transforms);
//! - a crash injected exactly at each step of the write and rewrite paths (`--features
//!   failpoints`, which the README's test command turns on);
//! - a workload of copy-ins, writes with fsync, renames, deletes, uploads, forced ticks and
//!   restores, killed with SIGKILL at a random moment and restarted, for 200 fixed seeds (1,000
//!   or more with `RUSTDB_CRASH_ITERATIONS`).
//!
//! After every crash `rustdb fsck` must find no damage in what the dead process left (only
//! leftovers that the next start clears), and after the restart every file must read back as a
//! reference model allows: an acknowledged or fsynced write is there whole; an operation that
//! was in flight shows its old or its new state (a write in flight may have written a prefix);
//! a decayed file's original hash is one the model allows. Needs root and /dev/fuse; says
//! SKIPPED otherwise.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{copy_corpus_in, figure, xattr, Instance, Rng};

/// Fixed delays (ms) after the tick starts at which the process is killed.
const KILL_AFTER_MS: [u64; 4] = [5, 40, 120, 400];

#[test]
fn crash_sigkill_during_forced_tick_loses_nothing() {
    require_mount!();
    let mut inst = Instance::start(&[]);
    let files = copy_corpus_in(&inst);
    let mut past_stage_zero = Vec::new();
    for (round, delay) in KILL_AFTER_MS.iter().enumerate() {
        let port = inst.port;
        let ticker = std::thread::spawn(move || {
            common::request(
                port,
                "POST",
                "/rot/run",
                Some(serde_json::json!({"force": true, "limit": 1000})),
            )
        });
        std::thread::sleep(Duration::from_millis(*delay));
        inst.kill();
        let _ = ticker.join();
        inst.spawn();

        let mut live_keys = BTreeSet::new();
        for (rel, original) in &files {
            let Some(obj) = inst.object(rel) else {
                panic!("{rel} vanished from the catalog")
            };
            if obj["deleted"] == true {
                continue;
            }
            let id = obj["id"].as_u64().unwrap();
            let stage = obj["stage"].as_u64().unwrap();
            let path = inst.path(rel);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("round {round}: {rel} unreadable: {e}"));
            assert_eq!(
                bytes.len() as u64,
                obj["size"].as_u64().unwrap(),
                "round {round}: {rel} size"
            );
            assert_eq!(
                xattr(&path, "user.rustdb.stage"),
                Some(stage.to_string()),
                "round {round}: {rel}"
            );
            let lossless = stage == 0 || (rel.starts_with("binary/") && stage == 1);
            if lossless {
                assert_eq!(
                    &bytes, original,
                    "round {round}: {rel} at stage {stage} is not the original"
                );
            } else {
                assert!(
                    !bytes.is_empty(),
                    "round {round}: {rel} empty at stage {stage}"
                );
            }
            let state = inst.get(&format!("/rot/state/{id}"));
            live_keys.insert(format!("objects/{id}.{}", state["generation"]));
        }
        past_stage_zero.push(
            files
                .iter()
                .filter(|(rel, _)| inst.object(rel).unwrap()["stage"] != 0)
                .count(),
        );

        // Nothing orphaned: the storage holds exactly the artifacts the catalog names.
        let mut on_disk = BTreeSet::new();
        for dir in ["objects", "originals", "tmp"] {
            for e in std::fs::read_dir(inst.storage.join(dir)).unwrap() {
                on_disk.insert(format!(
                    "{dir}/{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
        assert_eq!(
            on_disk, live_keys,
            "round {round}: storage and catalog disagree"
        );
    }
    eprintln!(
        "crash test: {} kills at {KILL_AFTER_MS:?} ms into a forced tick; objects past stage 0 after each restart: {past_stage_zero:?} of {}",
        KILL_AFTER_MS.len(),
        files.len()
    );
    // The engine carries on after the crashes.
    let report = inst.force_tick();
    assert_eq!(report["failed"], 0, "{report}");
    inst.stop();
}

// ---------------------------------------------------------------------------------------------
// The reference model and the workload shared by the fault-point and random-kill tests.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// What a path may hold after a crash.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Absent,
    Exact(Vec<u8>),
    /// `base` followed by any prefix of `data`: a write that was in flight.
    Growing {
        base: Vec<u8>,
        data: Vec<u8>,
    },
}

impl State {
    fn allows(&self, bytes: &[u8]) -> bool {
        match self {
            State::Absent => false,
            State::Exact(c) => c == bytes,
            State::Growing { base, data } => {
                bytes.starts_with(base) && data.starts_with(&bytes[base.len()..])
            }
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every path the workload touched, with the states it may be in (one when settled).
#[derive(Debug, Default)]
struct Model {
    paths: BTreeMap<String, Vec<State>>,
    next_name: u64,
    /// Ids of uploaded objects, for restores.
    uploaded: Vec<u64>,
}

impl Model {
    /// Settled paths that hold a file.
    fn files(&self) -> Vec<(String, Vec<u8>)> {
        self.paths
            .iter()
            .filter_map(|(p, s)| match s.as_slice() {
                [State::Exact(c)] => Some((p.clone(), c.clone())),
                _ => None,
            })
            .collect()
    }
    fn begin(&mut self, path: &str, next: State) {
        self.paths
            .entry(path.to_string())
            .or_insert_with(|| vec![State::Absent])
            .push(next);
    }
    fn ack(&mut self, path: &str, now: State) {
        self.paths.insert(path.to_string(), vec![now]);
    }
    fn fresh(&mut self, dir: &str, ext: &str) -> String {
        self.next_name += 1;
        format!("/{dir}/f{}.{ext}", self.next_name)
    }
}

fn content(rng: &mut Rng) -> (Vec<u8>, &'static str) {
    let n = 200 + rng.below(30_000) as usize;
    if rng.below(2) == 0 {
        let mut text = String::new();
        while text.len() < n {
            text += &format!(
                "line {} of a file that decays: {}\n",
                text.len(),
                rng.next()
            );
        }
        (text.into_bytes(), "txt")
    } else {
        let mut bytes = Vec::with_capacity(n);
        while bytes.len() < n {
            // Half compressible, half noise: zstd has something to do.
            let word = rng.next();
            bytes.extend_from_slice(&word.to_le_bytes()[..4]);
            bytes.extend_from_slice(&[0u8; 4]);
        }
        (bytes, "bin")
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    CopyIn,
    Append,
    Overwrite,
    Rename,
    Unlink,
    Upload,
    Tick,
    Restore,
}

const OPS: [Op; 8] = [
    Op::CopyIn,
    Op::Append,
    Op::Overwrite,
    Op::Rename,
    Op::Unlink,
    Op::Upload,
    Op::Tick,
    Op::Restore,
];

/// Runs one operation, recording in the model what it may leave before it starts and what it
/// left once acknowledged. Errors are returned, not judged: the caller knows whether the
/// process was being killed.
fn run_op(
    op: Op,
    rng: &mut Rng,
    model: &Mutex<Model>,
    mount: &std::path::Path,
    port: u16,
) -> Result<(), String> {
    let on_disk = |p: &str| mount.join(&p[1..]);
    let pick = |rng: &mut Rng| {
        let files = model.lock().unwrap().files();
        (!files.is_empty()).then(|| files[rng.below(files.len() as u64) as usize].clone())
    };
    let e = |what: &str, err: std::io::Error| format!("{what}: {err}");
    match op {
        Op::CopyIn => {
            let (data, ext) = content(rng);
            let dir = if rng.below(2) == 0 { "w" } else { "w/sub" };
            let path = model.lock().unwrap().fresh(dir, ext);
            model.lock().unwrap().begin(
                &path,
                State::Growing {
                    base: Vec::new(),
                    data: data.clone(),
                },
            );
            std::fs::create_dir_all(on_disk(&path).parent().unwrap()).map_err(|x| e("mkdir", x))?;
            let mut f = std::fs::File::create(on_disk(&path)).map_err(|x| e("create", x))?;
            f.write_all(&data).map_err(|x| e("write", x))?;
            f.sync_all().map_err(|x| e("fsync", x))?;
            drop(f);
            model.lock().unwrap().ack(&path, State::Exact(data));
        }
        Op::Append | Op::Overwrite => {
            let Some((path, _)) = pick(rng) else {
                return Ok(());
            };
            // A write to a decayed file starts from what it serves now.
            let served = std::fs::read(on_disk(&path)).map_err(|x| e("read", x))?;
            let data = format!("written at {}\n", rng.next()).into_bytes();
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(on_disk(&path))
                .map_err(|x| e("open", x))?;
            // What the file serves once opened for writing (a compressed binary is decoded).
            let mut now = Vec::new();
            f.read_to_end(&mut now).map_err(|x| e("read", x))?;
            let now = if now.is_empty() { served } else { now };
            let result = if matches!(op, Op::Append) {
                let mut after = now.clone();
                after.extend_from_slice(&data);
                model.lock().unwrap().begin(
                    &path,
                    State::Growing {
                        base: now.clone(),
                        data: data.clone(),
                    },
                );
                f.seek(SeekFrom::End(0)).map_err(|x| e("seek", x))?;
                after
            } else {
                let mut after = now.clone();
                let n = data.len().min(after.len());
                after[..n].copy_from_slice(&data[..n]);
                if after.len() < data.len() {
                    after.extend_from_slice(&data[n..]);
                }
                let mut st = model.lock().unwrap();
                st.begin(&path, State::Exact(now.clone()));
                st.begin(&path, State::Exact(after.clone()));
                drop(st);
                f.seek(SeekFrom::Start(0)).map_err(|x| e("seek", x))?;
                after
            };
            f.write_all(&data).map_err(|x| e("write", x))?;
            f.sync_all().map_err(|x| e("fsync", x))?;
            drop(f);
            model.lock().unwrap().ack(&path, State::Exact(result));
        }
        Op::Rename => {
            let Some((from, bytes)) = pick(rng) else {
                return Ok(());
            };
            let ext = from.rsplit('.').next().unwrap_or("bin").to_string();
            let to = model.lock().unwrap().fresh("w", &ext);
            {
                let mut st = model.lock().unwrap();
                st.begin(&from, State::Absent);
                st.begin(&to, State::Exact(bytes.clone()));
            }
            std::fs::create_dir_all(on_disk(&to).parent().unwrap()).map_err(|x| e("mkdir", x))?;
            std::fs::rename(on_disk(&from), on_disk(&to)).map_err(|x| e("rename", x))?;
            let mut st = model.lock().unwrap();
            st.ack(&from, State::Absent);
            st.ack(&to, State::Exact(bytes));
        }
        Op::Unlink => {
            let Some((path, _)) = pick(rng) else {
                return Ok(());
            };
            model.lock().unwrap().begin(&path, State::Absent);
            std::fs::remove_file(on_disk(&path)).map_err(|x| e("unlink", x))?;
            model.lock().unwrap().ack(&path, State::Absent);
        }
        Op::Upload => {
            let (data, _) = content(rng);
            let text = String::from_utf8_lossy(&data).into_owned();
            let path = model.lock().unwrap().fresh("u", "txt");
            model
                .lock()
                .unwrap()
                .begin(&path, State::Exact(text.clone().into_bytes()));
            let (status, body) = common::request(
                port,
                "POST",
                "/upload",
                Some(serde_json::json!({"path": path, "content": text})),
            )
            .map_err(|x| e("upload", x))?;
            if status != 200 && status != 201 {
                return Err(format!("upload answered {status}: {body}"));
            }
            let mut st = model.lock().unwrap();
            st.ack(&path, State::Exact(text.into_bytes()));
            if let Some(id) = body["id"].as_u64() {
                st.uploaded.push(id);
            }
        }
        Op::Tick => {
            let (status, body) = common::request(
                port,
                "POST",
                "/rot/run",
                Some(serde_json::json!({"force": true})),
            )
            .map_err(|x| e("tick", x))?;
            if status != 200 {
                return Err(format!("tick answered {status}: {body}"));
            }
            // Decay's last stage removes files: they leave the model too.
            let mut st = model.lock().unwrap();
            for change in body["changes"].as_array().into_iter().flatten() {
                if change["to_stage"] == 4 {
                    st.ack(change["path"].as_str().unwrap_or(""), State::Absent);
                }
            }
        }
        Op::Restore => {
            let id = {
                let st = model.lock().unwrap();
                if st.uploaded.is_empty() {
                    return Ok(());
                }
                st.uploaded[rng.below(st.uploaded.len() as u64) as usize]
            };
            let (status, body) = common::request(port, "POST", &format!("/rot/restore/{id}"), None)
                .map_err(|x| e("restore", x))?;
            // 404: renamed away or deleted; 409: nothing left to restore from.
            if ![200, 404, 409].contains(&status) {
                return Err(format!("restore answered {status}: {body}"));
            }
        }
    }
    Ok(())
}

/// `rustdb fsck --json` on the storage a dead process left: nothing may be damaged.
fn assert_no_damage(inst: &Instance, when: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rustdb"))
        .args(["fsck", "--json", "--storage-dir"])
        .arg(&inst.storage)
        .env("RUSTDB_LOG", "warn")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{when}: fsck gave no report: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let damage: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "damage")
        .collect();
    if !damage.is_empty() {
        // What the dead process logged about the damaged objects.
        let log = inst.log();
        let ids: Vec<String> = damage.iter().map(|f| f["object"].to_string()).collect();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                ids.iter().any(|id| {
                    l.contains(&format!("object={id}")) || l.contains(&format!("ino={id} "))
                })
            })
            .collect();
        let lines = &lines[lines.len().saturating_sub(60)..];
        panic!(
            "{when}: fsck found damage: {damage:#?}\nlog about it:\n{}",
            lines.join("\n")
        );
    }
}

/// After a restart: every path reads as the model allows; the model settles on what is there.
fn verify(inst: &Instance, model: &Mutex<Model>, when: &str) {
    let list = inst.get("/objects?limit=10000");
    let live: BTreeMap<String, serde_json::Value> = list["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["path"].as_str().unwrap().to_string(), o.clone()))
        .collect();
    let mut st = model.lock().unwrap();
    let paths: Vec<String> = st.paths.keys().cloned().collect();
    for path in paths {
        let states = st.paths[&path].clone();
        let on_disk = inst.mount.join(&path[1..]);
        match std::fs::read(&on_disk) {
            Ok(bytes) => {
                let obj = live
                    .get(&path)
                    .unwrap_or_else(|| panic!("{when}: {path} is in the mount, not in the API"));
                let stage = obj["stage"].as_u64().unwrap();
                let original = obj["sha256"].as_str().unwrap();
                let settled = if stage == 0 {
                    assert_eq!(sha256_hex(&bytes), original, "{when}: {path} hash");
                    states
                        .iter()
                        .find(|s| s.allows(&bytes))
                        .map(|_| State::Exact(bytes.clone()))
                } else {
                    assert_eq!(
                        bytes.len() as u64,
                        obj["size"].as_u64().unwrap(),
                        "{when}: {path} size at stage {stage}"
                    );
                    states
                        .iter()
                        .find(|s| matches!(s, State::Exact(c) if sha256_hex(c) == original))
                        .cloned()
                };
                let Some(settled) = settled else {
                    panic!(
                        "{when}: {path} at stage {stage} holds {} bytes that no allowed state has \
                         ({} states: {:?})",
                        bytes.len(),
                        states.len(),
                        states
                            .iter()
                            .map(|s| match s {
                                State::Absent => "absent".to_string(),
                                State::Exact(c) => format!("exact {} bytes", c.len()),
                                State::Growing { base, data } =>
                                    format!("{} bytes + prefix of {}", base.len(), data.len()),
                            })
                            .collect::<Vec<_>>()
                    )
                };
                st.ack(&path, settled);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                // Absent is allowed when the model allows it, or when decay purged the file (a
                // forced tick that was in flight, or whose answer was lost to the kill).
                let gone = inst.get(&format!(
                    "/objects?only_deleted=true&limit=10000&path={path}"
                ));
                let records: Vec<&serde_json::Value> = gone["objects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|o| o["path"] == path.as_str())
                    .collect();
                let purged = records.last().is_some_and(|o| o["stage"] == 4);
                assert!(
                    states.contains(&State::Absent) || purged,
                    "{when}: {path} is gone; allowed: {} states; its records: {records:#?}",
                    states.len()
                );
                // Settled as gone: a file that comes back later is one nobody made.
                st.paths.remove(&path);
            }
            Err(err) => panic!("{when}: {path} unreadable: {err}"),
        }
    }
    // Nothing the model does not know about (no resurrected or duplicated file).
    for path in live.keys() {
        assert!(
            st.paths.contains_key(path),
            "{when}: {path} exists but the workload never made it"
        );
    }
}

/// Runs the workload on a thread until `stop` is set; errors before then fail the test.
fn workload(
    seed: u64,
    model: Arc<Mutex<Model>>,
    mount: std::path::PathBuf,
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut done = 0;
        while !stop.load(Ordering::Acquire) {
            let op = OPS[rng.below(OPS.len() as u64) as usize];
            // Ticks are slow; copy-ins keep the model fed.
            let op = match (op, rng.below(3)) {
                (Op::Tick, 0) => Op::Tick,
                (Op::Tick, _) => Op::CopyIn,
                (op, _) => op,
            };
            if let Err(e) = run_op(op, &mut rng, &model, &mount, port) {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                return Err(format!("{op:?} failed before any kill: {e}"));
            }
            done += 1;
        }
        Ok(done)
    })
}

fn crash_iterations() -> u64 {
    std::env::var("RUSTDB_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[test]
fn crash_sigkill_at_random_moments_loses_nothing() {
    require_mount!();
    let iterations = crash_iterations();
    let mut inst = Instance::start(&[]);
    let model = Arc::new(Mutex::new(Model::default()));
    let started = std::time::Instant::now();
    let (mut ops, mut checked) = (0, 0);
    for seed in 1..=iterations {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = workload(
            seed,
            model.clone(),
            inst.mount.clone(),
            inst.port,
            stop.clone(),
        );
        let mut rng = Rng(seed | 0x5151);
        std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
        stop.store(true, Ordering::Release);
        inst.kill();
        match worker.join().unwrap() {
            Ok(n) => ops += n,
            Err(e) => panic!("seed {seed}: {e}\nlog:\n{}", tail(&inst.log())),
        }
        assert_no_damage(&inst, &format!("seed {seed}, after the kill"));
        inst.spawn();
        checked += model.lock().unwrap().paths.len();
        verify(&inst, &model, &format!("seed {seed}, after the restart"));
    }
    inst.stop();
    let (code, report) = inst.fsck();
    assert_eq!(code, 0, "after a clean stop the storage is clean: {report}");
    figure(&format!(
        "crash harness: {iterations} SIGKILLs at random moments (seeds 1..={iterations}), {ops} operations, {checked} path checks after the restarts, fsck clean at the end ({:.0} s)",
        started.elapsed().as_secs_f64()
    ));
}

#[test]
fn crash_at_every_fault_point_loses_nothing() {
    require_mount!();
    if !cfg!(feature = "failpoints") {
        eprintln!("SKIPPED fault points: build with --features failpoints (the README's test command does)");
        return;
    }
    let mut crashed = Vec::new();
    for point in rustdb::faults::POINTS {
        let mut inst = Instance::start(&[("FAILPOINTS", &format!("{point}=return(crash)"))]);
        let model = Mutex::new(Model::default());
        let mut rng = Rng(7);
        // A sequence that passes every point: copy-ins, writes to an existing file, uploads,
        // forced ticks (rewrites, kept originals), restores.
        let plan = [
            Op::CopyIn,
            Op::CopyIn,
            Op::Append,
            Op::Upload,
            Op::Tick,
            Op::Upload,
            Op::Tick,
            Op::Restore,
            Op::Restore,
            Op::Append,
            Op::Tick,
        ];
        for op in plan {
            if run_op(op, &mut rng, &model, &inst.mount, inst.port).is_err() {
                break;
            }
        }
        let status = inst.wait_for_exit(Duration::from_secs(10));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(libc::SIGKILL),
            "{point}: the workload never reached it; log:\n{}",
            tail(&inst.log())
        );
        let log = inst.log();
        assert!(
            log.contains("injected crash") && log.contains(point),
            "{point}: killed, but not by the fault point"
        );
        crashed.push(point);
        assert_no_damage(&inst, &format!("crash at {point}"));
        inst.remove_env("FAILPOINTS");
        inst.spawn();
        verify(&inst, &model, &format!("after a crash at {point}"));
        // The engine carries on: a tick after the restart succeeds and fsck is clean.
        let report = inst.force_tick();
        assert_eq!(report["failed"], 0, "{point}: {report}");
        inst.stop();
        let (code, report) = inst.fsck();
        assert_eq!(code, 0, "{point}: {report}");
    }
    figure(&format!(
        "fault points: a crash at each of {} steps of the write and rewrite paths lost nothing",
        crashed.len()
    ));
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
