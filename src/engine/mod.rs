//! The engine: one catalog, one store, the decay rules and the transforms, behind plain methods
//! that the FUSE adapter, the API and the scheduler call. It knows nothing of FUSE or HTTP.

mod generations;
mod lifecycle;
mod namespace;
mod objects;
mod policies;
mod query;
mod repair;
mod xattr;

pub(crate) use namespace::sha256_file;

pub use lifecycle::{TickChange, TickOptions, TickReport};
pub use namespace::{LiveStat, NodeView, OpenedArtifact, SetAttrs, TimeSet};
pub use objects::Import;
pub use policies::Seed;
pub use query::{
    EventBatch, EventSelection, ObjectFilter, ObjectInfo, ObjectStateInfo, TenantTotals,
};

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tracing::info;

use crate::catalog::{Catalog, CatalogError, NodeRow, NodeType, ObjectRow};
use crate::clock::Clock;
use crate::decay::{self, DecayState};
use crate::heat::HeatBuffer;
use crate::policy::{Policy, PolicySet, PolicyVersion};
use crate::store::{Store, StoreError};
use crate::transform::{Kind, Limits, TransformError};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub storage_dir: PathBuf,
    pub policies: PolicySet,
    /// Report what ticks would change, change nothing.
    pub shadow: bool,
    /// Process names (as in /proc/<pid>/comm) whose opens are not accesses.
    pub ignored_processes: Vec<String>,
    pub limits: Limits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            storage_dir: PathBuf::from("rustdb_storage"),
            policies: PolicySet::default(),
            shadow: false,
            ignored_processes: [
                "updatedb",
                "updatedb.mlocat",
                "plocate",
                "locate",
                "tracker-miner-f",
                "tracker-extract",
                "baloo_file",
                "baloo_file_extr",
                "clamscan",
                "clamd",
            ]
            .map(String::from)
            .to_vec(),
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("object {0} not found")]
    NotFound(u64),
    #[error("no such file or directory")]
    NoEntry,
    #[error("entry exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid: {0}")]
    Invalid(String),
    /// A name component longer than `MAX_NAME` bytes.
    #[error("name too long")]
    NameTooLong,
    /// A value the caller gave breaks a rule; `field` names it (e.g. `text.stub_after_sec`).
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("{0}")]
    NotPermitted(String),
    #[error("the artifact changed since this node was looked up")]
    Stale,
    #[error("no such attribute")]
    NoAttr,
    #[error("attribute namespace not supported")]
    Unsupported,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("transform: {0}")]
    Transform(#[from] TransformError),
}

/// How long a file decoded for a writer is kept from rewrites while the kernel, told ESTALE,
/// looks the name up again and retries the open.
const WRITER_RETRY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl EngineError {
    /// The storage file system is full: a disk write failed with ENOSPC, or SQLite could not
    /// grow the catalog. Not the file's fault, and not the caller's.
    pub fn is_no_space(&self) -> bool {
        match self {
            EngineError::Io(e) | EngineError::Transform(TransformError::Io(e)) => {
                e.kind() == io::ErrorKind::StorageFull
            }
            EngineError::Catalog(e) => e.is_disk_full(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Told when a name starts to refer to another artifact or to nothing, so caches can be dropped.
pub trait ChangeListener: Send + Sync {
    fn entry_changed(&self, parent: u64, name: &OsStr);
}

#[derive(Debug, Default, Clone, Copy)]
struct Opens {
    readers: u32,
    writers: u32,
    /// A writer changed the data: the last writer's close makes it the new original.
    dirty: bool,
    /// (size, mtime) of the backing file when the first writer opened it: writes that bypass
    /// RustDB (kernel passthrough) show as a change against it.
    baseline: Option<(u64, i64)>,
    /// The stamp of the backing file when a flush last recorded its content.
    recorded: Option<(u64, i64)>,
}

/// Counters kept in memory since the process started, per tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveCounters {
    /// Opens (mount or API) that counted as accesses.
    pub accesses_counted: u64,
    /// Opens by ignored processes (indexers, scanners).
    pub accesses_ignored: u64,
    /// Ticks that examined this tenant's objects, and their total and longest duration.
    pub ticks: u64,
    pub tick_seconds_total: f64,
    pub tick_seconds_max: f64,
}

pub struct Engine {
    cfg: EngineConfig,
    clock: Arc<dyn Clock>,
    catalog: Mutex<Catalog>,
    store: Store,
    /// Lock order: `opens` before `catalog`.
    opens: Mutex<HashMap<u64, Opens>>,
    heat: HeatBuffer,
    listener: RwLock<Option<Arc<dyn ChangeListener>>>,
    tick_lock: Mutex<()>,
    generations: generations::Generations,
    /// Objects decoded for a writer whose open was answered ESTALE, with the time until which
    /// no rewrite may take them away again (`expect_writer`). A leaf lock.
    thawed_for_writer: Mutex<HashMap<u64, std::time::Instant>>,
    /// The current policy version of each tenant that has one stored.
    policies: RwLock<HashMap<String, Arc<PolicyVersion>>>,
    policy_change: Mutex<()>,
    counters: Mutex<HashMap<String, LiveCounters>>,
}

impl Engine {
    /// Opens the storage directory: catalog, backing files, and the startup sweep that removes
    /// whatever no row refers to.
    pub fn load(cfg: EngineConfig, clock: Arc<dyn Clock>) -> Result<Engine> {
        let store = Store::open(&cfg.storage_dir)?;
        let catalog = Catalog::open(&store.catalog_path())?;
        let refs = catalog.read().referenced_files()?;
        let swept = store.sweep(&refs)?;
        if swept != Default::default() {
            info!(?swept, "startup sweep cleaned the storage directory");
        }
        let mut policies = HashMap::new();
        for tenant in catalog.read().policy_tenants()? {
            if let Some(current) = stored_policies(&catalog, &tenant)?.pop() {
                policies.insert(tenant, Arc::new(current));
            }
        }
        let engine = Engine {
            cfg,
            clock,
            catalog: Mutex::new(catalog),
            store,
            opens: Mutex::new(HashMap::new()),
            heat: HeatBuffer::default(),
            listener: RwLock::new(None),
            tick_lock: Mutex::new(()),
            generations: Default::default(),
            thawed_for_writer: Mutex::new(HashMap::new()),
            policies: RwLock::new(policies),
            policy_change: Mutex::new(()),
            counters: Mutex::new(HashMap::new()),
        };
        engine.record_interrupted_writes()?;
        Ok(engine)
    }

    /// Files that were open for writing when the process stopped: what their backing files hold
    /// now (everything written, and at least everything fsynced) becomes their content.
    fn record_interrupted_writes(&self) -> Result<()> {
        let ids = self.catalog.lock().read().objects_being_written()?;
        for id in ids {
            // A start is never refused for one file: one that cannot be recorded (its backing
            // file is gone) stays marked, and `rustdb fsck` reports it.
            match self.finalize_write(
                id,
                "written: recorded at startup (the file was open for writing when rustdb stopped)",
                false,
                false,
            ) {
                Ok(()) => info!(object = id, "recorded the content of an interrupted write"),
                Err(e) => tracing::error!(
                    object = id,
                    error = %e,
                    "could not record an interrupted write; run rustdb fsck"
                ),
            }
        }
        Ok(())
    }

    /// Marks `id` as being written in the catalog before a writer may change its bytes, so that
    /// a crash while it is open is repaired at the next start.
    fn mark_writing(&self, id: u64) -> Result<()> {
        let mut cat = self.catalog.lock();
        if cat.read().object(id)?.is_some_and(|o| !o.writing) {
            cat.atomically(|tx| tx.set_writing(id, true))?;
            crate::faults::fault_point!("write.after_mark");
        }
        Ok(())
    }

    /// Follows the newest event id (see [`crate::catalog::Catalog::subscribe_events`]).
    pub fn subscribe_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.catalog.lock().subscribe_events()
    }

    /// In-memory counters of `tenant` since the process started.
    pub fn live_counters(&self, tenant: &str) -> LiveCounters {
        self.counters
            .lock()
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    fn count(&self, tenant: &str, f: impl FnOnce(&mut LiveCounters)) {
        f(self.counters.lock().entry(tenant.to_owned()).or_default());
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn set_listener(&self, listener: Option<Arc<dyn ChangeListener>>) {
        *self.listener.write() = listener;
    }

    /// The root directory of `tenant`, created on first use.
    pub fn tenant_root(&self, tenant: &str) -> Result<u64> {
        if tenant.is_empty() || tenant.contains('/') {
            return Err(EngineError::Invalid(format!("bad tenant name {tenant:?}")));
        }
        let now = self.clock.now_ns();
        let mut cat = self.catalog.lock();
        if let Some(root) = cat.read().tenant_root(tenant)? {
            return Ok(root);
        }
        let root = cat.atomically(|tx| {
            tx.insert_node(&NodeRow {
                ino: 0,
                tenant: tenant.to_string(),
                parent: 0,
                name: Vec::new(),
                node_type: NodeType::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                atime_ns: now,
                mtime_ns: now,
                ctime_ns: now,
                crtime_ns: now,
                target: None,
                rdev: 0,
            })
        })?;
        Ok(root)
    }

    /// The current policy version of `tenant`: the stored one, or the configured defaults as
    /// version 0 for a tenant that has none stored yet.
    pub fn tenant_policy(&self, tenant: &str) -> Arc<PolicyVersion> {
        if let Some(current) = self.policies.read().get(tenant) {
            return Arc::clone(current);
        }
        Arc::new(PolicyVersion {
            version: 0,
            created_at: 0,
            note: "configured defaults".to_owned(),
            set: self.cfg.policies.clone(),
        })
    }

    /// The current policy of `tenant` for objects of `kind`.
    pub fn policy(&self, tenant: &str, kind: &str) -> Policy {
        self.tenant_policy(tenant)
            .set
            .for_kind(Kind::parse(kind).unwrap_or(Kind::Binary))
            .clone()
    }

    /// `PRAGMA integrity_check` of the catalog ("ok" when whole).
    pub fn catalog_integrity(&self) -> Result<String> {
        Ok(self.catalog.lock().integrity_check()?)
    }

    fn notify(&self, parent: u64, name: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        if let Some(l) = self.listener.read().clone() {
            l.entry_changed(parent, OsStr::from_bytes(name));
        }
    }

    /// Every name of node `id`: (directory, name), its first name first.
    fn names_of(&self, id: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let cat = self.catalog.lock();
        let r = cat.read();
        let Some(first) = r.node(id)? else {
            return Ok(Vec::new());
        };
        let mut names = vec![(first.parent, first.name)];
        names.extend(r.links_of(id)?);
        Ok(names)
    }

    /// The object `id` unless it is missing or a tombstone.
    fn live_object(&self, id: u64) -> Result<Option<ObjectRow>> {
        Ok(self
            .catalog
            .lock()
            .read()
            .object(id)?
            .filter(|o| o.deleted_at.is_none()))
    }

    /// Open writers, counting a pending finalize of written data as one.
    fn writers(&self, id: u64) -> u32 {
        self.opens
            .lock()
            .get(&id)
            .map(|o| o.writers + u32::from(o.dirty))
            .unwrap_or(0)
    }

    /// `id` was decoded for a writer whose open was answered ESTALE: keep rewrites off it while
    /// the kernel retries the open.
    fn expect_writer(&self, id: u64) {
        let until = std::time::Instant::now() + WRITER_RETRY_GRACE;
        self.thawed_for_writer.lock().insert(id, until);
    }

    /// The expected writer has opened `id` (it now counts as an open writer).
    fn writer_arrived(&self, id: u64) {
        self.thawed_for_writer.lock().remove(&id);
    }

    /// Whether a writer is about to open `id` (see `expect_writer`).
    fn writer_expected(&self, id: u64) -> bool {
        let mut expected = self.thawed_for_writer.lock();
        let now = std::time::Instant::now();
        expected.retain(|_, until| *until > now);
        expected.contains_key(&id)
    }

    /// Open writers, after waiting briefly for writers that are closing. A writer whose
    /// descriptor was closed (its flush recorded the content) is released by the kernel a
    /// moment later, asynchronously; a tick right after `cp` should not skip the file for that.
    fn writers_settled(&self, id: u64) -> u32 {
        for _ in 0..40 {
            let (writers, closing) = match self.opens.lock().get(&id) {
                Some(o) => (
                    o.writers + u32::from(o.dirty),
                    o.recorded.is_some() || (o.writers == 0 && o.dirty),
                ),
                None => (0, false),
            };
            if writers == 0 || !closing {
                return writers;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.writers(id)
    }
}

/// Every stored policy version of `tenant`, oldest first.
fn stored_policies(catalog: &Catalog, tenant: &str) -> Result<Vec<PolicyVersion>> {
    catalog
        .read()
        .policy_versions(tenant)?
        .into_iter()
        .map(|row| {
            let set = serde_json::from_str(&row.body).map_err(|e| {
                EngineError::Invalid(format!(
                    "stored policy version {} of tenant {tenant:?} does not parse: {e}",
                    row.version
                ))
            })?;
            Ok(PolicyVersion {
                version: row.version,
                created_at: row.created_at,
                note: row.note,
                set,
            })
        })
        .collect()
}

fn decay_state(o: &ObjectRow) -> DecayState {
    DecayState {
        stage: o.stage,
        created_at: o.created_at,
        last_access_at: o.last_access_at,
        stage_since: o.stage_since,
        pinned: o.pinned,
        hold: o.hold,
        speed: o.speed,
        progress: o.progress,
    }
}

/// Recomputes the indexed `next_decay_at` after any change to the state it depends on.
fn reschedule(o: &mut ObjectRow, policy: &Policy) {
    o.next_decay_at = if o.deleted_at.is_some() {
        None
    } else {
        decay::next_decay_at(&decay_state(o), policy)
    };
}
