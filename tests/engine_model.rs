//! A property test of the engine against a small reference model: random create, open, write,
//! clock advance, tick, forced tick, pin, speed, keep-original, restore and restart. After every
//! step the model and the engine agree on each object's stage and on the bytes a reader sees.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use proptest::prelude::*;

use rustdb::clock::ManualClock;
use rustdb::engine::{
    Engine, EngineConfig, EngineError, ObjectFilter, OpenedArtifact, TickOptions,
};
use rustdb::policy::{Policy, PolicySet};

const T: [i64; 5] = [0, 100, 200, 300, 400];
const WINDOW: i64 = 150;
const TENANT: &str = "default";
/// Opens by this process name are not accesses (it is on the engine's ignore list).
const SCANNER: &str = "updatedb";

fn policy() -> Policy {
    Policy {
        stage_one_after_sec: T[1],
        stage_two_after_sec: T[2],
        stub_after_sec: T[3],
        delete_after_sec: T[4],
        min_retention_sec: 0,
        grace_delete_sec: 0,
        access_cooldown_sec: 0,
        restore_window_sec: WINDOW,
        keep_original: false,
        heat_half_life_sec: 100,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create { binary: bool, seed: u64 },
    Open(usize),
    Write(usize, u64),
    Advance(i64),
    Tick,
    ForcedTick,
    Pin(usize, bool),
    Speed(usize, f64),
    KeepOriginal(usize),
    Restore(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<bool>(), any::<u64>()).prop_map(|(binary, seed)| Op::Create { binary, seed }),
        2 => (0..8usize).prop_map(Op::Open),
        1 => (0..8usize, any::<u64>()).prop_map(|(i, s)| Op::Write(i, s)),
        3 => (0..260i64).prop_map(Op::Advance),
        3 => Just(Op::Tick),
        3 => Just(Op::ForcedTick),
        1 => (0..8usize, any::<bool>()).prop_map(|(i, p)| Op::Pin(i, p)),
        1 => (0..8usize, prop_oneof![Just(0.5), Just(1.0), Just(2.0)]).prop_map(|(i, s)| Op::Speed(i, s)),
        1 => (0..8usize).prop_map(Op::KeepOriginal),
        2 => (0..8usize).prop_map(Op::Restore),
        1 => Just(Op::Restart),
    ]
}

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Texts big enough that every summary is smaller; binaries that compress to more than a stub.
fn content(binary: bool, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    if binary {
        let incompressible = seed.is_multiple_of(3);
        (0..65_536)
            .map(|_| {
                let r = xorshift(&mut s) as u8;
                if incompressible {
                    r
                } else {
                    r & 0x0f
                }
            })
            .collect()
    } else {
        const WORDS: [&str; 16] = [
            "river", "engine", "copper", "quiet", "ledger", "harbor", "signal", "maple", "orbit",
            "canvas", "timber", "velvet", "lantern", "meadow", "pixel", "summit",
        ];
        let mut out = String::new();
        while out.len() < 9_000 {
            let n = 5 + xorshift(&mut s) % 9;
            let words: Vec<&str> = (0..n)
                .map(|_| WORDS[(xorshift(&mut s) % 16) as usize])
                .collect();
            out.push_str(&words.join(" "));
            out.push_str(". ");
        }
        out.into_bytes()
    }
}

#[derive(Clone)]
struct ModelFile {
    id: u64,
    binary: bool,
    content: Vec<u8>,
    stage: u8,
    last_access: i64,
    speed: f64,
    progress: f64,
    pinned: bool,
    keep: bool,
    original_until: Option<i64>,
    purged: bool,
}

impl std::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFile")
            .field("id", &self.id)
            .field("binary", &self.binary)
            .field("content_len", &self.content.len())
            .field("stage", &self.stage)
            .field("last_access", &self.last_access)
            .field("speed", &self.speed)
            .field("progress", &self.progress)
            .field("pinned", &self.pinned)
            .field("keep", &self.keep)
            .field("original_until", &self.original_until)
            .field("purged", &self.purged)
            .finish()
    }
}

impl ModelFile {
    fn lossless(&self) -> bool {
        self.stage == 0 || (self.binary && self.stage == 1)
    }

    /// Moves to `target`, keeping the original when leaving the lossless stages with keep set.
    fn go(&mut self, target: u8, now: i64) {
        let lossy = !(target == 0 || (self.binary && target == 1));
        if target >= 4 {
            self.purged = true;
            self.original_until = None;
        } else if self.lossless() && lossy && self.keep && self.original_until.is_none() {
            self.original_until = Some(now + WINDOW);
        }
        self.stage = target;
    }
}

struct World {
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
    engine: Option<Engine>,
    root: u64,
    files: Vec<ModelFile>,
    now: i64,
    names: u64,
}

impl World {
    fn new() -> World {
        let clock = Arc::new(ManualClock::at(1_000_000));
        let dir = tempfile::tempdir().unwrap();
        let mut w = World {
            clock,
            dir,
            engine: None,
            root: 0,
            files: Vec::new(),
            now: 1_000_000,
            names: 0,
        };
        w.load();
        w
    }

    fn load(&mut self) {
        let cfg = EngineConfig {
            storage_dir: self.dir.path().to_path_buf(),
            policies: PolicySet::uniform(policy()),
            ..EngineConfig::default()
        };
        let engine = Engine::load(cfg, self.clock.clone()).unwrap();
        self.root = engine.tenant_root(TENANT).unwrap();
        self.engine = Some(engine);
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    fn write_through(&self, id: u64, bytes: &[u8]) {
        let e = self.engine();
        // Like the kernel: a compressed file is decoded for writers, who then open again.
        let opened = match e.open(id, None, true, true, Some(SCANNER)) {
            Err(EngineError::Stale) => e.open(id, None, true, true, Some(SCANNER)).unwrap(),
            other => other.unwrap(),
        };
        let OpenedArtifact::File(mut f) = opened else {
            panic!("writers get plain files");
        };
        f.write_all(bytes).unwrap();
        drop(f);
        e.release(id, true, true);
    }

    fn live(&mut self, i: usize) -> Option<&mut ModelFile> {
        let n = self.files.len();
        if n == 0 {
            return None;
        }
        let f = &mut self.files[i % n];
        (!f.purged).then_some(f)
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Create { binary, seed } => {
                self.names += 1;
                let bytes = content(*binary, *seed);
                let name = format!("f{}.{}", self.names, if *binary { "bin" } else { "txt" });
                let (view, mut file) = self
                    .engine()
                    .create(self.root, name.as_bytes(), 0o644, 0, 0)
                    .unwrap();
                file.write_all(&bytes).unwrap();
                drop(file);
                let id = view.node.ino;
                self.engine().release(id, true, true);
                self.files.push(ModelFile {
                    id,
                    binary: *binary,
                    content: bytes,
                    stage: 0,
                    last_access: now,
                    speed: 1.0,
                    progress: 0.0,
                    pinned: false,
                    keep: false,
                    original_until: None,
                    purged: false,
                });
            }
            Op::Open(i) => {
                let Some(f) = self.live(*i) else { return };
                f.last_access = now;
                f.progress = 0.0;
                let id = f.id;
                let opened = self
                    .engine()
                    .open(id, None, false, false, Some("cat"))
                    .unwrap();
                drop(opened);
                self.engine().release(id, false, false);
            }
            Op::Write(i, seed) => {
                let Some(f) = self.live(*i) else { return };
                let bytes = content(f.binary, *seed);
                f.content = bytes.clone();
                f.stage = 0;
                f.last_access = now;
                f.progress = 0.0;
                f.original_until = None;
                let id = f.id;
                self.write_through(id, &bytes);
            }
            Op::Advance(secs) => {
                self.now += secs;
                self.clock.set(self.now);
            }
            Op::Tick => {
                for f in self.files.iter_mut().filter(|f| !f.purged) {
                    if f.original_until.is_some_and(|u| u <= now) {
                        f.original_until = None;
                    }
                }
                for f in self.files.iter_mut().filter(|f| !f.purged && !f.pinned) {
                    let due = |k: usize| f.last_access + (T[k] as f64 / f.speed).ceil() as i64;
                    let mut target = f.stage;
                    while target < 4 && now >= due(target as usize + 1) {
                        // A purge needs the stub to have existed: no jump from below 3 to 4.
                        if target + 1 == 4 && f.stage < 3 {
                            break;
                        }
                        target += 1;
                    }
                    if target != f.stage {
                        f.go(target, now);
                    }
                }
                self.engine()
                    .tick(Some(TENANT), TickOptions::default())
                    .unwrap();
            }
            Op::ForcedTick => {
                for f in self.files.iter_mut().filter(|f| !f.purged && !f.pinned) {
                    let total = f.progress + f.speed;
                    let whole = (total + 1e-9).floor();
                    let target = (f.stage as f64 + whole).min(4.0) as u8;
                    f.progress = if target == 4 { 0.0 } else { total - whole };
                    if target != f.stage {
                        f.go(target, now);
                    }
                }
                let r = self
                    .engine()
                    .tick(
                        Some(TENANT),
                        TickOptions {
                            force: true,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                assert_eq!(r.failed, 0, "{r:?}");
            }
            Op::Pin(i, on) => {
                let Some(f) = self.live(*i) else { return };
                f.pinned = *on;
                let id = f.id;
                self.engine()
                    .control(id, Some(*on), None, None, None)
                    .unwrap();
            }
            Op::Speed(i, s) => {
                let Some(f) = self.live(*i) else { return };
                f.speed = *s;
                let id = f.id;
                self.engine()
                    .control(id, None, None, Some(*s), None)
                    .unwrap();
            }
            Op::KeepOriginal(i) => {
                let Some(f) = self.live(*i) else { return };
                f.keep = true;
                let id = f.id;
                self.engine()
                    .control(id, None, None, None, Some(true))
                    .unwrap();
            }
            Op::Restore(i) => {
                let Some(f) = self.live(*i) else { return };
                let possible =
                    f.stage == 0 || f.lossless() || f.original_until.is_some_and(|u| u > now);
                let id = f.id;
                if possible && f.stage > 0 {
                    f.stage = 0;
                    f.last_access = now;
                    f.progress = 0.0;
                    f.original_until = None;
                }
                let got = self.engine().restore(id);
                match (possible, got) {
                    (true, Ok(_)) => {}
                    (false, Err(EngineError::Conflict(_))) => {}
                    (p, other) => {
                        panic!("restore of {id}: model says possible={p}, engine {other:?}")
                    }
                }
            }
            Op::Restart => {
                self.engine().flush_heat().unwrap();
                self.engine = None;
                self.load();
            }
        }
    }

    fn check(&self) {
        let e = self.engine();
        let listed: BTreeMap<u64, _> = e
            .list_objects(
                TENANT,
                &ObjectFilter {
                    include_deleted: true,
                    ..Default::default()
                },
            )
            .unwrap()
            .into_iter()
            .map(|i| (i.object.id, i.object))
            .collect();
        for f in &self.files {
            let o = &listed[&f.id];
            if f.purged {
                assert!(
                    o.deleted_at.is_some() && o.stage == 4,
                    "{} should be purged: {o:?}",
                    f.id
                );
                continue;
            }
            assert_eq!(
                o.stage,
                f.stage,
                "stage of {} ({}): model {f:?}",
                f.id,
                if f.binary { "binary" } else { "text" }
            );
            let bytes = common::read_artifact(e, f.id, Some(SCANNER));
            if f.lossless() {
                assert_eq!(bytes.len(), f.content.len(), "size of lossless {}", f.id);
                assert!(bytes == f.content, "bytes of lossless {} differ", f.id);
            } else {
                assert!(!bytes.is_empty(), "{} is empty at stage {}", f.id, f.stage);
                assert!(
                    bytes.len() < f.content.len(),
                    "{} did not shrink at stage {}",
                    f.id,
                    f.stage
                );
            }
            assert_eq!(o.size, bytes.len() as u64, "recorded size of {}", f.id);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_reference_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
            world.check();
        }
    }
}

/// Found by the property test: a binary that skips from stage 0 to 3 on the wall clock must get
/// its stub, not keep its original bytes.
#[test]
fn regression_binary_skipping_to_stage_three_gets_a_stub() {
    let mut world = World::new();
    for op in [
        Op::Create {
            binary: true,
            seed: 0,
        },
        Op::Speed(0, 0.5),
        Op::Advance(600),
        Op::Tick,
    ] {
        world.apply(&op);
        world.check();
    }
    assert_eq!(world.files[0].stage, 3);
}

/// Policy versions: a change is a new version that reschedules every object; a dry run stores
/// nothing and reports what a wall-clock tick under the proposed version would change now; each
/// decay names the version that decided it.
#[test]
fn policy_versions_reschedule_preview_and_are_named_in_history() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_000_000));
    let cfg = EngineConfig {
        storage_dir: dir.path().to_path_buf(),
        ..EngineConfig::default()
    };
    let engine = Engine::load(cfg, clock.clone()).unwrap();
    let root = engine.tenant_root(TENANT).unwrap();
    let defaults = engine.config().policies.clone();
    let seeded = engine
        .seed_policies(
            TENANT,
            &defaults,
            "built-in defaults",
            rustdb::engine::Seed::IfNone,
        )
        .unwrap();
    assert_eq!(seeded.unwrap().version, 1);
    // Seeding again does nothing.
    assert!(engine
        .seed_policies(TENANT, &defaults, "again", rustdb::engine::Seed::IfNone)
        .unwrap()
        .is_none());
    let (view, mut file) = engine.create(root, b"notes.txt", 0o644, 0, 0).unwrap();
    file.write_all("a line of text\n".repeat(400).as_bytes())
        .unwrap();
    drop(file);
    let id = view.node.ino;
    engine.release(id, true, true);
    clock.advance(120);

    // Under the defaults (one day) nothing is due after two minutes.
    let patch = serde_json::json!({"text": {"stage_one_after_sec": 60}});
    let (proposed, report) = engine.set_policies(TENANT, &patch, None, true).unwrap();
    assert_eq!(proposed.version, 2);
    let report = report.unwrap();
    assert_eq!(report.changed, 1, "{report:?}");
    assert_eq!(
        engine.tenant_policy(TENANT).version,
        1,
        "a dry run stored a version"
    );
    let tick = engine.tick(Some(TENANT), Default::default()).unwrap();
    assert_eq!(tick.changed, 0);

    // Stored, the new version reschedules the file, and the decay names it.
    let (stored, _) = engine
        .set_policies(TENANT, &patch, Some("faster"), false)
        .unwrap();
    assert_eq!((stored.version, stored.note.as_str()), (2, "faster"));
    let tick = engine.tick(Some(TENANT), Default::default()).unwrap();
    assert_eq!(tick.changed, 1);
    let state = engine.object_state(TENANT, id).unwrap();
    let last = &state.history.last().unwrap().history;
    assert_eq!(last.policy_version, Some(2));
    assert_eq!(engine.policy_history(TENANT).unwrap().len(), 2);

    // A bad value names its field and stores nothing.
    let bad = serde_json::json!({"text": {"stub_after_sec": 1}});
    match engine.set_policies(TENANT, &bad, None, false) {
        Err(EngineError::InvalidField { field, .. }) => assert_eq!(field, "text.stub_after_sec"),
        other => panic!("expected a field error, got {other:?}"),
    }
    assert_eq!(engine.tenant_policy(TENANT).version, 2);
}

/// A file opened for writing and closed without a write keeps its content and its decay: the
/// writing mark goes at the close. Before, the mark stayed, a tick rewrote the file anyway, and
/// the next start recorded the decayed artifact as the file's original (seen in the crash
/// harness as a stage-0 file holding bytes nobody wrote).
#[test]
fn an_open_for_writing_without_writes_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(1_000_000));
    let cfg = EngineConfig {
        storage_dir: dir.path().to_path_buf(),
        ..EngineConfig::default()
    };
    let force = TickOptions {
        force: true,
        ..Default::default()
    };
    let (id, original) = {
        let engine = Engine::load(cfg.clone(), clock.clone()).unwrap();
        let root = engine.tenant_root(TENANT).unwrap();
        let (view, mut file) = engine.create(root, b"notes.txt", 0o644, 0, 0).unwrap();
        file.write_all("a line of text\n".repeat(400).as_bytes())
            .unwrap();
        drop(file);
        let id = view.node.ino;
        engine.release(id, true, true);
        let original = engine.object_row(id).unwrap().sha256;
        // Opened for writing, closed without a write.
        engine.open(id, None, true, false, None).unwrap();
        engine.release(id, true, false);
        assert!(!engine.object_row(id).unwrap().writing);
        let report = engine.tick(Some(TENANT), force).unwrap();
        assert_eq!(report.changed, 1, "{report:?}");
        (id, original)
    };
    let engine = Engine::load(cfg, clock).unwrap();
    let o = engine.object_row(id).unwrap();
    assert_eq!(o.stage, 1, "the restart kept the decay");
    assert_eq!(o.sha256, original, "the original is still the original");
}
