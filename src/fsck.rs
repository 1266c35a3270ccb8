//! `rustdb fsck`: checks the catalog against the backing files, offline. Every live object must
//! have its artifact (and its kept original) on disk with the size and SHA-256 the catalog
//! recorded; every file on disk must be one the catalog refers to. `--repair` runs the startup
//! recovery (which clears what a crash leaves behind) and then mends objects: an artifact is
//! rebuilt from a kept original when there is one, a kept original that is gone is forgotten,
//! and an object whose bytes are lost becomes a tombstone. Nothing that can still be read is
//! deleted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, ObjectRow};
use crate::clock::SystemClock;
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// What a crash leaves behind and the next start (or `--repair`) clears: temporary files,
    /// unreferenced generations, writes whose content is not yet recorded.
    Leftover,
    /// Bytes missing or not what the catalog recorded.
    Damage,
    /// Something fsck could not verify; not an error.
    Note,
}

/// What `--repair` does (or did) about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// The startup recovery clears it.
    Recovery,
    RebuildFromOriginal,
    DropOriginal,
    MarkLost,
    RecordHash,
    /// Nothing safe can be done automatically.
    None,
}

impl Repair {
    fn words(&self) -> &'static str {
        match self {
            Repair::Recovery => "cleared by the startup recovery",
            Repair::RebuildFromOriginal => "rebuilt from its kept original",
            Repair::DropOriginal => "the kept original is forgotten (no restore from it)",
            Repair::MarkLost => "the object becomes a tombstone (its bytes are lost)",
            Repair::RecordHash => "the hash is recorded",
            Repair::None => "no automatic repair; restore the file from a backup",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub object: Option<u64>,
    pub path: Option<String>,
    pub problem: String,
    pub repair: Repair,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub storage: String,
    pub objects: u64,
    pub files: u64,
    pub bytes_hashed: u64,
    pub findings: Vec<Finding>,
    /// With `--repair`: what the first pass found (the findings above are the check after).
    pub repaired: Vec<Finding>,
}

impl Report {
    /// Problems: damage and leftovers (notes are not problems).
    pub fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity != Severity::Note)
            .count()
    }

    /// 0: nothing wrong; 1: problems were found and all repaired; 2: problems remain.
    pub fn exit_code(&self) -> u8 {
        match (self.problems(), self.repaired.is_empty()) {
            (0, true) => 0,
            (0, false) => 1,
            _ => 2,
        }
    }

    /// The report in plain words, one finding per line.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "rustdb fsck {}: {} objects, {} backing files, {} bytes hashed",
            self.storage, self.objects, self.files, self.bytes_hashed
        );
        for f in &self.repaired {
            let _ = writeln!(out, "repaired: {}", line(f));
        }
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{}: {}",
                match f.severity {
                    Severity::Damage => "DAMAGE",
                    Severity::Leftover => "leftover",
                    Severity::Note => "note",
                },
                line(f)
            );
        }
        let damage = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Damage)
            .count();
        let problems = |n: usize| match n {
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        };
        let mendable = self
            .findings
            .iter()
            .any(|f| f.severity != Severity::Note && f.repair != Repair::None);
        let _ = match (self.problems(), self.repaired.is_empty()) {
            (0, true) => writeln!(out, "clean: every object matches the catalog"),
            (0, false) => writeln!(
                out,
                "repaired {}; the storage is now clean",
                problems(self.repaired.len())
            ),
            (n, true) if mendable => writeln!(
                out,
                "{} ({damage} damaged); `rustdb fsck --repair` mends what can be mended",
                problems(n)
            ),
            (n, _) => writeln!(
                out,
                "{} ({damage} damaged) that cannot be mended automatically",
                problems(n)
            ),
        };
        out
    }
}

fn line(f: &Finding) -> String {
    let what = match (&f.object, &f.path) {
        (Some(id), Some(p)) => format!("object {id} ({p}): "),
        (Some(id), None) => format!("object {id}: "),
        _ => String::new(),
    };
    format!("{what}{} [{}]", f.problem, f.repair.words())
}

#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error("{0} holds no catalog.db: is it a RustDB storage directory? (--storage-dir, RUSTDB_STORAGE_DIR)")]
    NoCatalog(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Progress of the hashing pass: bytes done of bytes to hash.
pub trait Progress {
    fn total(&self, bytes: u64);
    fn advance(&self, bytes: u64);
}

/// Progress nobody watches.
pub struct Quiet;

impl Progress for Quiet {
    fn total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// Checks `storage`; with `repair`, repairs and checks again.
pub fn run(storage: &Path, repair: bool, progress: &dyn Progress) -> Result<Report, FsckError> {
    if !crate::store::catalog_path_in(storage).is_file() {
        return Err(FsckError::NoCatalog(storage.display().to_string()));
    }
    let first = check(storage, progress)?;
    if !repair || first.findings.is_empty() {
        return Ok(first);
    }
    mend(storage, &first.findings)?;
    let mut after = check(storage, progress)?;
    // Repaired: what the first pass found that the second does not.
    let remains = |f: &Finding| {
        after
            .findings
            .iter()
            .any(|a| a.object == f.object && a.problem == f.problem)
    };
    after.repaired = first
        .findings
        .iter()
        .filter(|f| !remains(f))
        .cloned()
        .collect();
    Ok(after)
}

fn check(storage: &Path, progress: &dyn Progress) -> Result<Report, FsckError> {
    // Holding the store's lock keeps `rustdb up` away while fsck reads.
    let store = Store::open(storage)?;
    let catalog = Catalog::open(&store.catalog_path())?;
    let mut report = Report {
        storage: storage.display().to_string(),
        ..Report::default()
    };
    let integrity = catalog.integrity_check()?;
    if integrity != "ok" {
        report.findings.push(Finding {
            severity: Severity::Damage,
            object: None,
            path: None,
            problem: format!("the catalog fails SQLite's integrity check: {integrity}"),
            repair: Repair::None,
        });
    }
    let objects = catalog.read().all_live_objects()?;
    report.objects = objects.len() as u64;
    progress.total(
        objects
            .iter()
            .map(|o| o.stored_size + o.original_stored_size)
            .sum(),
    );
    let mut referenced = HashSet::new();
    for o in &objects {
        let path = catalog.read().path_of(o.id)?;
        if path.is_none() {
            report.findings.push(Finding {
                severity: Severity::Damage,
                object: Some(o.id),
                path: None,
                problem: "has no name in the namespace (its node or a parent is missing)".into(),
                repair: Repair::None,
            });
        }
        referenced.insert(store.artifact(o.id, o.generation));
        if let Some(og) = o.original_gen {
            referenced.insert(store.original(o.id, og));
            // A kept original not yet moved out of objects/ (reported with its object).
            referenced.insert(store.artifact(o.id, og));
        }
        check_object(&store, o, path, &mut report, progress)?;
    }
    for dir in ["tmp", "objects", "originals"] {
        for entry in std::fs::read_dir(storage.join(dir))? {
            let file = entry?.path();
            report.files += 1;
            if referenced.contains(&file) {
                continue;
            }
            let name = format!(
                "{dir}/{}",
                file.file_name().unwrap_or_default().to_string_lossy()
            );
            report.findings.push(Finding {
                severity: Severity::Leftover,
                object: None,
                path: None,
                problem: if dir == "tmp" {
                    format!("{name} is a temporary file of interrupted work")
                } else {
                    format!(
                        "{name} is not referenced by the catalog (an interrupted rewrite, upload or delete)"
                    )
                },
                repair: Repair::Recovery,
            });
        }
    }
    Ok(report)
}

fn check_object(
    store: &Store,
    o: &ObjectRow,
    path: Option<String>,
    report: &mut Report,
    progress: &dyn Progress,
) -> Result<(), FsckError> {
    let mut found = |severity, problem: String, repair| {
        report.findings.push(Finding {
            severity,
            object: Some(o.id),
            path: path.clone(),
            problem,
            repair,
        })
    };
    let mut hashed = 0;
    let artifact = store.artifact(o.id, o.generation);
    let original = o.original_gen.map(|og| store.original(o.id, og));
    // A kept original that verifies can stand in for a damaged artifact.
    let original_state = match &original {
        None => None,
        Some(p) => Some(verify(
            p,
            o.original_stored_size,
            o.original_sha256.as_deref(),
            progress,
            &mut hashed,
        )?),
    };
    let rebuildable = matches!(
        original_state,
        Some(FileState::Good | FileState::Unrecorded)
    ) && o.stage > 0;
    // Missing bytes: rebuilt, or the object is lost. Wrong bytes: rebuilt, or left for a human.
    let (missing, wrong) = if rebuildable {
        (Repair::RebuildFromOriginal, Repair::RebuildFromOriginal)
    } else {
        (Repair::MarkLost, Repair::None)
    };
    if o.writing && artifact.exists() {
        found(
            Severity::Leftover,
            "was open for writing when rustdb stopped; what its backing file holds becomes its content"
                .into(),
            Repair::Recovery,
        );
    } else {
        let state = verify(
            &artifact,
            o.stored_size,
            o.artifact_sha256.as_deref(),
            progress,
            &mut hashed,
        )?;
        match state {
            FileState::Good => {}
            FileState::Unrecorded => found(
                Severity::Note,
                "no SHA-256 recorded for its artifact (a catalog from before schema 3); size checked"
                    .into(),
                Repair::RecordHash,
            ),
            FileState::Missing | FileState::WrongSize(_) | FileState::WrongHash(_) => found(
                Severity::Damage,
                damage(&state, "its backing file", &artifact, o.stored_size),
                if matches!(state, FileState::Missing) {
                    missing
                } else {
                    wrong
                },
            ),
        }
    }
    if let (Some(og), Some(state)) = (o.original_gen, original_state) {
        let kept = store.original(o.id, og);
        match state {
            FileState::Good => {}
            FileState::Unrecorded => found(
                Severity::Note,
                "no SHA-256 recorded for its kept original (a catalog from before schema 3)".into(),
                Repair::RecordHash,
            ),
            // The catalog committed "kept" before the move into originals/: recovery moves it.
            FileState::Missing if store.artifact(o.id, og).exists() && og != o.generation => found(
                Severity::Leftover,
                format!("its kept original is still at objects/{}.{og}", o.id),
                Repair::Recovery,
            ),
            FileState::Missing | FileState::WrongSize(_) | FileState::WrongHash(_) => found(
                Severity::Damage,
                damage(&state, "its kept original", &kept, o.original_stored_size),
                Repair::DropOriginal,
            ),
        }
    }
    report.bytes_hashed += hashed;
    Ok(())
}

enum FileState {
    /// Size and hash as recorded.
    Good,
    /// Size as recorded; no hash recorded to compare with (a catalog from before schema 3).
    Unrecorded,
    Missing,
    WrongSize(u64),
    WrongHash(String),
}

/// The words for a backing file in a bad `state`: `what` is "its backing file" or "its kept
/// original", `recorded` the size the catalog recorded.
fn damage(state: &FileState, what: &str, path: &Path, recorded: u64) -> String {
    let path = short(path);
    match state {
        FileState::WrongSize(len) => {
            format!("{what} {path} has {len} bytes; the catalog recorded {recorded}")
        }
        FileState::WrongHash(h) => {
            format!("{what} {path} does not match its recorded SHA-256 (found {h})")
        }
        _ => format!("{what} {path} is missing"),
    }
}

/// Checks one backing file against its recorded size and hash; `hashed` counts the bytes read.
fn verify(
    path: &Path,
    size: u64,
    sha256: Option<&str>,
    progress: &dyn Progress,
    hashed: &mut u64,
) -> Result<FileState, FsckError> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(e.into()),
    };
    if len != size {
        progress.advance(size);
        return Ok(FileState::WrongSize(len));
    }
    let hash = crate::engine::sha256_file(path)?;
    *hashed += len;
    progress.advance(size);
    Ok(match sha256 {
        None => FileState::Unrecorded,
        Some(h) if h == hash => FileState::Good,
        Some(_) => FileState::WrongHash(hash),
    })
}

/// `objects/7.3` for a backing file path.
fn short(p: &Path) -> String {
    let parent = p
        .parent()
        .and_then(|d| d.file_name())
        .unwrap_or_default()
        .to_string_lossy();
    format!(
        "{parent}/{}",
        p.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Applies the repairs: opening the engine runs the startup recovery (leftovers), then each
/// damaged object is mended as its finding says.
fn mend(storage: &Path, findings: &[Finding]) -> Result<(), FsckError> {
    let engine = Engine::load(
        EngineConfig {
            storage_dir: PathBuf::from(storage),
            ..EngineConfig::default()
        },
        Arc::new(SystemClock),
    )?;
    let mut hashes_recorded = HashSet::new();
    for f in findings {
        let Some(id) = f.object else { continue };
        match f.repair {
            Repair::RebuildFromOriginal => engine.repair_from_original(id)?,
            Repair::MarkLost => engine.repair_lost(id, &f.problem)?,
            Repair::DropOriginal => engine.repair_drop_original(id, &f.problem)?,
            Repair::RecordHash if hashes_recorded.insert(id) => engine.repair_record_hashes(id)?,
            _ => {}
        }
    }
    Ok(())
}
