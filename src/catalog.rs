//! The catalog: SQLite in WAL mode, the single commit point. The only SQL in the project.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("catalog {path} is damaged ({detail}); restore it from a backup or move it away to start empty")]
    Corrupt { path: String, detail: String },
}

impl CatalogError {
    /// SQLite could not grow the catalog: the storage file system is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, CatalogError::Sql(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DiskFull)
    }
}

pub type Result<T> = std::result::Result<T, CatalogError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDevice = 6,
    BlockDevice = 7,
}

impl NodeType {
    fn from_i64(v: i64) -> NodeType {
        match v {
            2 => NodeType::Dir,
            3 => NodeType::Symlink,
            4 => NodeType::Fifo,
            5 => NodeType::Socket,
            6 => NodeType::CharDevice,
            7 => NodeType::BlockDevice,
            _ => NodeType::File,
        }
    }
}

/// A namespace entry: directory, file, symlink or special file. `parent` and `name` are the
/// node's first name; further names of a hard-linked node are rows of `links`. A row read through
/// a lookup or a listing carries the name it was found under.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub ino: u64,
    pub tenant: String,
    pub parent: u64,
    pub name: Vec<u8>,
    pub node_type: NodeType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub crtime_ns: i64,
    pub target: Option<Vec<u8>>,
    /// Device number of a character or block device node.
    pub rdev: u64,
}

/// How an artifact file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The backing file holds the bytes readers see.
    Plain = 0,
    /// The backing file is a chunked compressed container of the bytes readers see.
    Chunked = 1,
}

impl Encoding {
    fn from_i64(v: i64) -> Encoding {
        if v == 1 {
            Encoding::Chunked
        } else {
            Encoding::Plain
        }
    }
}

/// The lifecycle state of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRow {
    pub id: u64,
    pub tenant: String,
    pub stage: u8,
    pub kind: String,
    pub format: String,
    pub generation: u64,
    pub encoding: Encoding,
    /// Bytes readers see now.
    pub size: u64,
    /// Bytes the artifact takes on disk.
    pub stored_size: u64,
    pub original_size: u64,
    /// SHA-256 of the original content.
    pub sha256: String,
    /// SHA-256 of the artifact file as stored (None in rows from before schema 3, until fsck
    /// records it).
    pub artifact_sha256: Option<String>,
    /// SHA-256 of the kept original's file as stored.
    pub original_sha256: Option<String>,
    /// A writer had the file open and its bytes are not yet recorded: set before the first write
    /// is allowed, cleared when the last writer's close records the content. Startup records the
    /// content of every object still marked (the process died while it was written).
    pub writing: bool,
    /// Whether the artifact decodes to the original bytes.
    pub lossless: bool,
    pub heat: f64,
    pub heat_at: i64,
    pub last_access_at: i64,
    pub created_at: i64,
    pub stage_since: i64,
    pub next_decay_at: Option<i64>,
    pub progress: f64,
    pub pinned: bool,
    pub hold: bool,
    pub keep_original: Option<bool>,
    pub speed: f64,
    /// Generation of the kept original, and how it is stored.
    pub original_gen: Option<u64>,
    pub original_encoding: Encoding,
    pub original_stored_size: u64,
    pub restore_until: Option<i64>,
    pub fail_count: u32,
    pub deleted_at: Option<i64>,
    pub deleted_path: Option<String>,
    pub purge_reason: Option<String>,
}

impl ObjectRow {
    /// Back at stage 0 with `size` plain bytes that are the original (restored, written or
    /// decoded): no kept original is needed any more, and the forced-tick progress restarts.
    /// Returns the kept original's generation, whose file the caller deletes.
    pub fn back_to_original(&mut self, now: i64, size: u64) -> Option<u64> {
        self.stage = 0;
        self.stage_since = now;
        self.encoding = Encoding::Plain;
        self.size = size;
        self.stored_size = size;
        self.lossless = true;
        self.restore_until = None;
        self.original_stored_size = 0;
        self.progress = 0.0;
        self.fail_count = 0;
        self.artifact_sha256 = Some(self.sha256.clone());
        self.original_sha256 = None;
        self.original_gen.take()
    }

    /// The row that stays when the file leaves the namespace: what it was, where, and why.
    pub fn tombstone(&self, now: i64, path: &str, reason: &str) -> ObjectRow {
        ObjectRow {
            deleted_at: Some(now),
            deleted_path: Some(path.to_string()),
            purge_reason: Some(reason.to_string()),
            next_decay_at: None,
            restore_until: None,
            original_gen: None,
            original_sha256: None,
            writing: false,
            stored_size: 0,
            original_stored_size: 0,
            ..self.clone()
        }
    }
}

/// What happened to an object: the event type of a history row (and of `GET /events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Created,
    /// Moved to a later stage by the decay engine.
    Decayed,
    Restored,
    Purged,
    /// New original content (a write through the mount, an upload over an existing file).
    Written,
    Renamed,
    /// Removed by a user (unlink, API delete, replaced by a rename).
    Deleted,
    /// A transform failed; the object stays at its stage and retries later.
    Failed,
    /// A kept original outlived its restore window and was deleted.
    Expired,
    /// A compressed artifact was decoded back to the original for a writer.
    Thawed,
}

impl Event {
    pub const ALL: [Event; 10] = [
        Event::Created,
        Event::Decayed,
        Event::Restored,
        Event::Purged,
        Event::Written,
        Event::Renamed,
        Event::Deleted,
        Event::Failed,
        Event::Expired,
        Event::Thawed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Decayed => "decayed",
            Event::Restored => "restored",
            Event::Purged => "purged",
            Event::Written => "written",
            Event::Renamed => "renamed",
            Event::Deleted => "deleted",
            Event::Failed => "failed",
            Event::Expired => "expired",
            Event::Thawed => "thawed",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One entry of an object's history. `path` is where the object was when it happened (looked up
/// in the transaction when None); `policy_version` is the tenant policy version that decided a
/// decay, purge or failure.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub at: i64,
    pub event: Event,
    pub from_stage: u8,
    pub to_stage: u8,
    pub reason: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub path: Option<String>,
    pub policy_version: Option<u64>,
}

impl HistoryRow {
    /// The first row of an object: created at stage 0 with `size` bytes.
    pub fn created(at: i64, reason: &str, size: u64, path: Option<String>) -> HistoryRow {
        HistoryRow {
            at,
            event: Event::Created,
            from_stage: 0,
            to_stage: 0,
            reason: reason.to_owned(),
            bytes_before: 0,
            bytes_after: size,
            path,
            policy_version: None,
        }
    }
}

/// A history row with its sequence number and owner: one event of `GET /events`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Increases with every row of the catalog: the event id clients resume from.
    pub seq: u64,
    pub object: u64,
    pub tenant: String,
    pub kind: String,
    pub path: String,
    pub history: HistoryRow,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    /// Matches an event whose stage before or after is this one.
    pub stage: Option<u8>,
}

/// One tenant's stored policy version.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyVersionRow {
    pub version: u64,
    /// The policy set as JSON.
    pub body: String,
    pub created_at: i64,
    pub note: String,
}

/// An answer stored under an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotentAnswer {
    pub status: u16,
    pub body: String,
}

/// Counts of history events per (event, kind, from, to), for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCount {
    pub event: Event,
    pub kind: String,
    pub from_stage: u8,
    pub to_stage: u8,
    pub count: u64,
}

/// Aggregates for metrics, per (stage, kind).
#[derive(Debug, Clone, PartialEq)]
pub struct StageKindTotals {
    pub stage: u8,
    pub kind: String,
    pub objects: u64,
    pub logical_bytes: u64,
    pub physical_bytes: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nodes (
    ino INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    parent INTEGER NOT NULL,
    name BLOB NOT NULL,
    type INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    atime_ns INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    crtime_ns INTEGER NOT NULL,
    target BLOB,
    rdev INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, parent, name)
);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes (parent, name);
CREATE TABLE IF NOT EXISTS links (
    parent INTEGER NOT NULL,
    name BLOB NOT NULL,
    ino INTEGER NOT NULL,
    PRIMARY KEY (parent, name)
);
CREATE INDEX IF NOT EXISTS links_ino ON links (ino);
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    stage INTEGER NOT NULL,
    kind TEXT NOT NULL,
    format TEXT NOT NULL,
    generation INTEGER NOT NULL,
    encoding INTEGER NOT NULL,
    size INTEGER NOT NULL,
    stored_size INTEGER NOT NULL,
    original_size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    lossless INTEGER NOT NULL,
    heat REAL NOT NULL,
    heat_at INTEGER NOT NULL,
    last_access_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    stage_since INTEGER NOT NULL,
    next_decay_at INTEGER,
    progress REAL NOT NULL,
    pinned INTEGER NOT NULL,
    hold INTEGER NOT NULL,
    keep_original INTEGER,
    speed REAL NOT NULL,
    original_gen INTEGER,
    original_encoding INTEGER NOT NULL,
    original_stored_size INTEGER NOT NULL,
    restore_until INTEGER,
    fail_count INTEGER NOT NULL,
    deleted_at INTEGER,
    deleted_path TEXT,
    purge_reason TEXT,
    artifact_sha256 TEXT,
    original_sha256 TEXT,
    writing INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS objects_due ON objects (next_decay_at) WHERE next_decay_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS objects_restore ON objects (restore_until) WHERE restore_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS objects_tenant ON objects (tenant, deleted_at);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    object INTEGER NOT NULL,
    at INTEGER NOT NULL,
    from_stage INTEGER NOT NULL,
    to_stage INTEGER NOT NULL,
    reason TEXT NOT NULL,
    bytes_before INTEGER NOT NULL,
    bytes_after INTEGER NOT NULL,
    tenant TEXT NOT NULL DEFAULT '',
    event TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT '',
    policy_version INTEGER
);
CREATE INDEX IF NOT EXISTS history_object ON history (object, seq);
CREATE TABLE IF NOT EXISTS policy_versions (
    tenant TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (tenant, version)
);
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, route, key)
);
CREATE TABLE IF NOT EXISTS xattrs (
    ino INTEGER NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (ino, name)
);
";

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 3;

/// Version 1 catalogs have a history without owner, event, path, kind and policy version:
/// add the columns and fill them from the objects and the reasons written then.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE history ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE history ADD COLUMN event TEXT NOT NULL DEFAULT '';
ALTER TABLE history ADD COLUMN path TEXT NOT NULL DEFAULT '';
ALTER TABLE history ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE history ADD COLUMN policy_version INTEGER;
UPDATE history SET
    tenant = COALESCE((SELECT tenant FROM objects WHERE objects.id = history.object), ''),
    kind = COALESCE((SELECT kind FROM objects WHERE objects.id = history.object), ''),
    event = CASE
        WHEN reason = 'created' THEN 'created'
        WHEN reason LIKE 'written%' THEN 'written'
        WHEN reason LIKE 'restored%' THEN 'restored'
        WHEN reason LIKE 'decompressed%' THEN 'thawed'
        WHEN reason LIKE 'restore window closed%' THEN 'expired'
        WHEN reason LIKE 'transform to stage%' THEN 'failed'
        WHEN to_stage = 4 THEN 'purged'
        WHEN reason IN ('unlinked', 'replaced by rename') THEN 'deleted'
        ELSE 'decayed' END;
";

/// Version 2 catalogs have no special files, hard links, per-generation hashes or write markers.
/// A plain stage-0 artifact is the original, so its hash is known; other hashes stay unknown
/// until `rustdb fsck --repair` records them.
const MIGRATE_2_TO_3: &str = "
ALTER TABLE nodes ADD COLUMN rdev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE objects ADD COLUMN artifact_sha256 TEXT;
ALTER TABLE objects ADD COLUMN original_sha256 TEXT;
ALTER TABLE objects ADD COLUMN writing INTEGER NOT NULL DEFAULT 0;
UPDATE objects SET artifact_sha256 = sha256 WHERE encoding = 0 AND lossless = 1;
UPDATE objects SET original_sha256 = sha256 WHERE original_gen IS NOT NULL AND original_encoding = 0;
";

/// Indexes on the columns version 2 added (after the migration, so old catalogs get them too).
const INDEXES_2: &str = "
CREATE INDEX IF NOT EXISTS history_tenant ON history (tenant, seq);
";

/// Due objects, through the partial index on `next_decay_at`.
const DUE_SQL: &str =
    "SELECT id FROM objects WHERE next_decay_at IS NOT NULL AND next_decay_at <= ?1
     ORDER BY next_decay_at LIMIT ?2";
/// Kept originals past their window, through the partial index on `restore_until`.
const EXPIRED_SQL: &str =
    "SELECT id FROM objects WHERE restore_until IS NOT NULL AND restore_until <= ?1
     ORDER BY restore_until LIMIT ?2";

const OBJECT_COLUMNS: &str =
    "id, tenant, stage, kind, format, generation, encoding, size, stored_size,
    original_size, sha256, lossless, heat, heat_at, last_access_at, created_at, stage_since,
    next_decay_at, progress, pinned, hold, keep_original, speed, original_gen, original_encoding,
    original_stored_size, restore_until, fail_count, deleted_at, deleted_path, purge_reason,
    artifact_sha256, original_sha256, writing";

const NODE_COLUMNS: &str =
    "ino, tenant, parent, name, type, mode, uid, gid, atime_ns, mtime_ns, ctime_ns, crtime_ns, target, rdev";

fn object_from_row(r: &Row<'_>) -> rusqlite::Result<ObjectRow> {
    Ok(ObjectRow {
        id: r.get::<_, i64>(0)? as u64,
        tenant: r.get(1)?,
        stage: r.get::<_, i64>(2)? as u8,
        kind: r.get(3)?,
        format: r.get(4)?,
        generation: r.get::<_, i64>(5)? as u64,
        encoding: Encoding::from_i64(r.get(6)?),
        size: r.get::<_, i64>(7)? as u64,
        stored_size: r.get::<_, i64>(8)? as u64,
        original_size: r.get::<_, i64>(9)? as u64,
        sha256: r.get(10)?,
        lossless: r.get(11)?,
        heat: r.get(12)?,
        heat_at: r.get(13)?,
        last_access_at: r.get(14)?,
        created_at: r.get(15)?,
        stage_since: r.get(16)?,
        next_decay_at: r.get(17)?,
        progress: r.get(18)?,
        pinned: r.get(19)?,
        hold: r.get(20)?,
        keep_original: r.get(21)?,
        speed: r.get(22)?,
        original_gen: r.get::<_, Option<i64>>(23)?.map(|g| g as u64),
        original_encoding: Encoding::from_i64(r.get(24)?),
        original_stored_size: r.get::<_, i64>(25)? as u64,
        restore_until: r.get(26)?,
        fail_count: r.get::<_, i64>(27)? as u32,
        deleted_at: r.get(28)?,
        deleted_path: r.get(29)?,
        purge_reason: r.get(30)?,
        artifact_sha256: r.get(31)?,
        original_sha256: r.get(32)?,
        writing: r.get(33)?,
    })
}

const EVENT_COLUMNS: &str = "seq, object, tenant, kind, path, at, event, from_stage, to_stage, \
    reason, bytes_before, bytes_after, policy_version";

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    let path: String = r.get(4)?;
    let event: String = r.get(6)?;
    Ok(EventRow {
        seq: r.get::<_, i64>(0)? as u64,
        object: r.get::<_, i64>(1)? as u64,
        tenant: r.get(2)?,
        kind: r.get(3)?,
        path: path.clone(),
        history: HistoryRow {
            at: r.get(5)?,
            // Rows of an unknown event type (written by a newer version) read as decays.
            event: Event::parse(&event).unwrap_or(Event::Decayed),
            from_stage: r.get::<_, i64>(7)? as u8,
            to_stage: r.get::<_, i64>(8)? as u8,
            reason: r.get(9)?,
            bytes_before: r.get::<_, i64>(10)? as u64,
            bytes_after: r.get::<_, i64>(11)? as u64,
            path: Some(path),
            policy_version: r.get::<_, Option<i64>>(12)?.map(|v| v as u64),
        },
    })
}

fn node_from_row(r: &Row<'_>) -> rusqlite::Result<NodeRow> {
    Ok(NodeRow {
        ino: r.get::<_, i64>(0)? as u64,
        tenant: r.get(1)?,
        parent: r.get::<_, i64>(2)? as u64,
        name: r.get(3)?,
        node_type: NodeType::from_i64(r.get(4)?),
        mode: r.get::<_, i64>(5)? as u32,
        uid: r.get::<_, i64>(6)? as u32,
        gid: r.get::<_, i64>(7)? as u32,
        atime_ns: r.get(8)?,
        mtime_ns: r.get(9)?,
        ctime_ns: r.get(10)?,
        crtime_ns: r.get(11)?,
        target: r.get(12)?,
        rdev: r.get::<_, i64>(13)? as u64,
    })
}

pub struct Catalog {
    conn: Connection,
    /// The newest committed history sequence number, for event followers.
    last_event: tokio::sync::watch::Sender<u64>,
}

impl Catalog {
    /// Opens (creating when missing) the catalog at `path`; a damaged file is refused.
    pub fn open(path: &Path) -> Result<Catalog> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let corrupt = |detail: String| CatalogError::Corrupt {
            path: path.display().to_string(),
            detail,
        };
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| corrupt(e.to_string()))?;
        if check != "ok" {
            return Err(corrupt(check));
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let had_history: bool = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'history'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(corrupt(format!(
                "schema version {version} is newer than this rustdb understands ({SCHEMA_VERSION}); \
                 run a newer rustdb"
            )));
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let migrated = (|| {
            if had_history && version < 2 {
                conn.execute_batch(MIGRATE_1_TO_2)?;
            }
            if had_history && version < 3 {
                conn.execute_batch(MIGRATE_2_TO_3)?;
            }
            conn.execute_batch(SCHEMA)?;
            conn.execute_batch(INDEXES_2)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = migrated {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        let last: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM history", [], |r| {
            r.get(0)
        })?;
        Ok(Catalog {
            conn,
            last_event: tokio::sync::watch::Sender::new(last as u64),
        })
    }

    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// Runs `f` in one transaction: everything or nothing.
    pub fn atomically<T, E: From<CatalogError>>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let tx = self.conn.transaction().map_err(CatalogError::from)?;
        let wrapped = Tx {
            tx: &tx,
            last_history: Cell::new(None),
        };
        let out = f(&wrapped)?;
        let added = wrapped.last_history.get();
        tx.commit().map_err(CatalogError::from)?;
        if let Some(seq) = added {
            self.last_event.send_replace(seq);
        }
        Ok(out)
    }

    /// Read-only access without a write transaction.
    pub fn read(&self) -> Tx<'_> {
        Tx {
            tx: &self.conn,
            last_history: Cell::new(None),
        }
    }

    /// Follows the newest committed event id: it changes after every commit that added history.
    pub fn subscribe_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.last_event.subscribe()
    }
}

/// Statements, usable inside or outside a transaction.
pub struct Tx<'c> {
    tx: &'c Connection,
    /// The last history row this transaction added.
    last_history: Cell<Option<u64>>,
}

impl Tx<'_> {
    pub fn tenant_root(&self, tenant: &str) -> Result<Option<u64>> {
        Ok(self
            .tx
            .query_row(
                "SELECT ino FROM nodes WHERE tenant = ?1 AND parent = 0 AND name = X''",
                params![tenant],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|i| i as u64))
    }

    pub fn tenants(&self) -> Result<Vec<String>> {
        let mut st = self
            .tx
            .prepare("SELECT tenant FROM nodes WHERE parent = 0 ORDER BY tenant")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn insert_node(&self, n: &NodeRow) -> Result<u64> {
        self.tx.execute(
            "INSERT INTO nodes (tenant, parent, name, type, mode, uid, gid, atime_ns, mtime_ns,
                ctime_ns, crtime_ns, target, rdev)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                n.tenant,
                n.parent as i64,
                n.name,
                n.node_type as i64,
                n.mode,
                n.uid,
                n.gid,
                n.atime_ns,
                n.mtime_ns,
                n.ctime_ns,
                n.crtime_ns,
                n.target,
                n.rdev as i64
            ],
        )?;
        Ok(self.tx.last_insert_rowid() as u64)
    }

    pub fn node(&self, ino: u64) -> Result<Option<NodeRow>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE ino = ?1"),
                params![ino as i64],
                node_from_row,
            )
            .optional()?)
    }

    /// The node named `name` in `parent`, under its first name or a hard link.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<NodeRow>> {
        let first = self
            .tx
            .query_row(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE parent = ?1 AND name = ?2"),
                params![parent as i64, name],
                node_from_row,
            )
            .optional()?;
        if first.is_some() {
            return Ok(first);
        }
        let linked = self
            .tx
            .query_row(
                "SELECT ino FROM links WHERE parent = ?1 AND name = ?2",
                params![parent as i64, name],
                |r| r.get::<_, i64>(0),
            )
            .optional()?;
        let Some(ino) = linked else {
            return Ok(None);
        };
        Ok(self.node(ino as u64)?.map(|n| NodeRow {
            parent,
            name: name.to_vec(),
            ..n
        }))
    }

    /// Every entry of a directory, by name: first names and hard links.
    pub fn children(&self, parent: u64) -> Result<Vec<NodeRow>> {
        let mut st = self.tx.prepare(&format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE parent = ?1
             UNION ALL
             SELECT n.ino, n.tenant, l.parent, l.name, n.type, n.mode, n.uid, n.gid, n.atime_ns,
                n.mtime_ns, n.ctime_ns, n.crtime_ns, n.target, n.rdev
             FROM links l JOIN nodes n ON n.ino = l.ino WHERE l.parent = ?1
             ORDER BY 4"
        ))?;
        let rows = st.query_map(params![parent as i64], node_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn has_children(&self, parent: u64) -> Result<bool> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM nodes WHERE parent = ?1
                 UNION ALL SELECT 1 FROM links WHERE parent = ?1 LIMIT 1",
                params![parent as i64],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Subdirectories of a directory (its link count is two more).
    pub fn subdirectories(&self, parent: u64) -> Result<u64> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM nodes WHERE parent = ?1 AND type = ?2",
            params![parent as i64, NodeType::Dir as i64],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// The names of a node besides its first: (parent, name), oldest first.
    pub fn links_of(&self, ino: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut st = self
            .tx
            .prepare_cached("SELECT parent, name FROM links WHERE ino = ?1 ORDER BY rowid")?;
        let rows = st.query_map(params![ino as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn add_link(&self, ino: u64, parent: u64, name: &[u8]) -> Result<()> {
        self.tx.execute(
            "INSERT INTO links (parent, name, ino) VALUES (?1, ?2, ?3)",
            params![parent as i64, name, ino as i64],
        )?;
        Ok(())
    }

    pub fn remove_link(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.tx.execute(
            "DELETE FROM links WHERE parent = ?1 AND name = ?2",
            params![parent as i64, name],
        )?;
        Ok(())
    }

    /// Moves the entry `(parent, name)` of node `ino`, its first name or a link, to a new name.
    pub fn move_entry(
        &self,
        ino: u64,
        (parent, name): (u64, &[u8]),
        (new_parent, new_name): (u64, &[u8]),
    ) -> Result<()> {
        let moved = self.tx.execute(
            "UPDATE nodes SET parent = ?4, name = ?5 WHERE ino = ?1 AND parent = ?2 AND name = ?3",
            params![ino as i64, parent as i64, name, new_parent as i64, new_name],
        )?;
        if moved == 0 {
            self.tx.execute(
                "UPDATE links SET parent = ?3, name = ?4 WHERE parent = ?1 AND name = ?2",
                params![parent as i64, name, new_parent as i64, new_name],
            )?;
        }
        Ok(())
    }

    /// Writes a node's attributes; its names change only through `move_entry` and the links.
    pub fn update_node(&self, n: &NodeRow) -> Result<()> {
        self.tx.execute(
            "UPDATE nodes SET mode = ?2, uid = ?3, gid = ?4, atime_ns = ?5,
                mtime_ns = ?6, ctime_ns = ?7 WHERE ino = ?1",
            params![
                n.ino as i64,
                n.mode,
                n.uid,
                n.gid,
                n.atime_ns,
                n.mtime_ns,
                n.ctime_ns
            ],
        )?;
        Ok(())
    }

    /// Sets a node's mtime and ctime and nothing else (a directory whose entries changed, a file
    /// whose content changed), so no stale copy of the rest of the row is written back.
    pub fn touch_node(&self, ino: u64, mtime_ns: i64, ctime_ns: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE nodes SET mtime_ns = ?2, ctime_ns = ?3 WHERE ino = ?1",
            params![ino as i64, mtime_ns, ctime_ns],
        )?;
        Ok(())
    }

    /// Sets a node's ctime alone (a name was added or removed).
    pub fn set_ctime(&self, ino: u64, ctime_ns: i64) -> Result<()> {
        self.tx.execute(
            "UPDATE nodes SET ctime_ns = ?2 WHERE ino = ?1",
            params![ino as i64, ctime_ns],
        )?;
        Ok(())
    }

    pub fn delete_node(&self, ino: u64) -> Result<()> {
        self.tx
            .execute("DELETE FROM nodes WHERE ino = ?1", params![ino as i64])?;
        self.tx
            .execute("DELETE FROM links WHERE ino = ?1", params![ino as i64])?;
        self.tx
            .execute("DELETE FROM xattrs WHERE ino = ?1", params![ino as i64])?;
        Ok(())
    }

    /// (parent, name) of every node of a tenant, for building paths.
    pub fn tree(&self, tenant: &str) -> Result<HashMap<u64, (u64, Vec<u8>)>> {
        let mut st = self
            .tx
            .prepare("SELECT ino, parent, name FROM nodes WHERE tenant = ?1")?;
        let rows = st.query_map(params![tenant], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                (r.get::<_, i64>(1)? as u64, r.get(2)?),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn insert_object(&self, o: &ObjectRow) -> Result<()> {
        self.write_object("INSERT INTO", o)
    }

    pub fn update_object(&self, o: &ObjectRow) -> Result<()> {
        self.write_object("REPLACE INTO", o)
    }

    fn write_object(&self, verb: &str, o: &ObjectRow) -> Result<()> {
        self.tx.execute(
            &format!(
                "{verb} objects ({OBJECT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,
                 ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26,
                 ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34)"
            ),
            params![
                o.id as i64,
                o.tenant,
                o.stage as i64,
                o.kind,
                o.format,
                o.generation as i64,
                o.encoding as i64,
                o.size as i64,
                o.stored_size as i64,
                o.original_size as i64,
                o.sha256,
                o.lossless,
                o.heat,
                o.heat_at,
                o.last_access_at,
                o.created_at,
                o.stage_since,
                o.next_decay_at,
                o.progress,
                o.pinned,
                o.hold,
                o.keep_original,
                o.speed,
                o.original_gen.map(|g| g as i64),
                o.original_encoding as i64,
                o.original_stored_size as i64,
                o.restore_until,
                o.fail_count as i64,
                o.deleted_at,
                o.deleted_path,
                o.purge_reason,
                o.artifact_sha256,
                o.original_sha256,
                o.writing
            ],
        )?;
        Ok(())
    }

    pub fn object(&self, id: u64) -> Result<Option<ObjectRow>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE id = ?1"),
                params![id as i64],
                object_from_row,
            )
            .optional()?)
    }

    /// Live objects whose next decay is due, oldest first: the index makes this O(due).
    pub fn due(&self, now: i64, limit: usize) -> Result<Vec<u64>> {
        self.ids(DUE_SQL, params![now, limit as i64])
    }

    /// Objects whose kept original has outlived its restore window.
    pub fn originals_expired(&self, now: i64, limit: usize) -> Result<Vec<u64>> {
        self.ids(EXPIRED_SQL, params![now, limit as i64])
    }

    /// Live objects of a tenant (all tenants when None), by id.
    pub fn live_objects(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<u64>> {
        match tenant {
            Some(t) => self.ids(
                "SELECT id FROM objects WHERE tenant = ?1 AND deleted_at IS NULL ORDER BY id LIMIT ?2",
                params![t, limit as i64],
            ),
            None => self.ids(
                "SELECT id FROM objects WHERE deleted_at IS NULL ORDER BY id LIMIT ?1",
                params![limit as i64],
            ),
        }
    }

    fn ids(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<u64>> {
        let mut st = self.tx.prepare_cached(sql)?;
        let rows = st.query_map(p, |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|r| r.map(|i| i as u64))
            .collect::<rusqlite::Result<_>>()?)
    }

    pub fn objects_of(&self, tenant: &str, include_deleted: bool) -> Result<Vec<ObjectRow>> {
        let sql = if include_deleted {
            format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE tenant = ?1 ORDER BY id")
        } else {
            format!(
                "SELECT {OBJECT_COLUMNS} FROM objects WHERE tenant = ?1 AND deleted_at IS NULL ORDER BY id"
            )
        };
        let mut st = self.tx.prepare(&sql)?;
        let rows = st.query_map(params![tenant], object_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every live object of every tenant, by id.
    pub fn all_live_objects(&self) -> Result<Vec<ObjectRow>> {
        let mut st = self.tx.prepare(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE deleted_at IS NULL ORDER BY id"
        ))?;
        let rows = st.query_map([], object_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Marks (or clears) that a writer has the file open and its content is not yet recorded.
    pub fn set_writing(&self, id: u64, writing: bool) -> Result<()> {
        self.tx.execute(
            "UPDATE objects SET writing = ?2 WHERE id = ?1",
            params![id as i64, writing],
        )?;
        Ok(())
    }

    /// Live objects still marked as being written: the process stopped before their writers
    /// closed them.
    pub fn objects_being_written(&self) -> Result<Vec<u64>> {
        self.ids(
            "SELECT id FROM objects WHERE writing = 1 AND deleted_at IS NULL ORDER BY id",
            [],
        )
    }

    /// Every backing file a live row refers to: (id, artifact generation, kept original generation).
    pub fn referenced_files(&self) -> Result<Vec<(u64, u64, Option<u64>)>> {
        let mut st = self
            .tx
            .prepare("SELECT id, generation, original_gen FROM objects WHERE deleted_at IS NULL")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, Option<i64>>(2)?.map(|g| g as u64),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The path of a node inside its tenant's namespace, e.g. "/docs/a.txt"; None when the node
    /// or one of its parents is missing.
    pub fn path_of(&self, ino: u64) -> Result<Option<String>> {
        let mut parts: Vec<String> = Vec::new();
        let mut cur = ino;
        // A tree deeper than this is a cycle: the catalog never builds one.
        for _ in 0..4096 {
            let Some((parent, name)) = self
                .tx
                .query_row(
                    "SELECT parent, name FROM nodes WHERE ino = ?1",
                    params![cur as i64],
                    |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)),
                )
                .optional()?
            else {
                return Ok(None);
            };
            if parent == 0 {
                parts.reverse();
                return Ok(Some(format!("/{}", parts.join("/"))));
            }
            parts.push(String::from_utf8_lossy(&name).into_owned());
            cur = parent;
        }
        Ok(None)
    }

    /// Appends one history row of `o` (its tenant and kind are recorded with it) and returns its
    /// sequence number, the event id.
    pub fn add_history(&self, o: &ObjectRow, h: &HistoryRow) -> Result<u64> {
        let path = match &h.path {
            Some(p) => p.clone(),
            None => self.path_of(o.id)?.unwrap_or_default(),
        };
        self.tx.execute(
            "INSERT INTO history (object, at, from_stage, to_stage, reason, bytes_before, bytes_after,
                tenant, event, path, kind, policy_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                o.id as i64,
                h.at,
                h.from_stage as i64,
                h.to_stage as i64,
                h.reason,
                h.bytes_before as i64,
                h.bytes_after as i64,
                o.tenant,
                h.event.as_str(),
                path,
                o.kind,
                h.policy_version.map(|v| v as i64),
            ],
        )?;
        let seq = self.tx.last_insert_rowid() as u64;
        self.last_history.set(Some(seq));
        Ok(seq)
    }

    /// The history of one object, oldest first, with the event ids.
    pub fn history(&self, object: u64) -> Result<Vec<EventRow>> {
        let mut st = self.tx.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM history WHERE object = ?1 ORDER BY seq"
        ))?;
        let rows = st.query_map(params![object as i64], event_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Events of `tenant` after `after` (a sequence number), oldest first, at most `limit`.
    pub fn events_after(
        &self,
        tenant: &str,
        after: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<EventRow>> {
        let mut st = self.tx.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM history
             WHERE tenant = ?1 AND seq > ?2
               AND (?3 IS NULL OR kind = ?3)
               AND (?4 IS NULL OR from_stage = ?4 OR to_stage = ?4)
             ORDER BY seq LIMIT ?5"
        ))?;
        let rows = st.query_map(
            params![
                tenant,
                after as i64,
                filter.kind,
                filter.stage.map(i64::from),
                limit as i64
            ],
            event_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The sequence number of the newest history row (0 when there is none).
    pub fn last_event(&self) -> Result<u64> {
        Ok(self
            .tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM history", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// History events of `tenant` counted per (event, kind, from, to).
    pub fn event_counts(&self, tenant: &str) -> Result<Vec<EventCount>> {
        let mut st = self.tx.prepare_cached(
            "SELECT event, kind, from_stage, to_stage, COUNT(*) FROM history WHERE tenant = ?1
             GROUP BY event, kind, from_stage, to_stage ORDER BY event, kind, from_stage, to_stage",
        )?;
        let rows = st.query_map(params![tenant], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)? as u8,
                r.get::<_, i64>(3)? as u8,
                r.get::<_, i64>(4)? as u64,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (event, kind, from_stage, to_stage, count) = row?;
            if let Some(event) = Event::parse(&event) {
                out.push(EventCount {
                    event,
                    kind,
                    from_stage,
                    to_stage,
                    count,
                });
            }
        }
        Ok(out)
    }

    pub fn policy_versions(&self, tenant: &str) -> Result<Vec<PolicyVersionRow>> {
        let mut st = self.tx.prepare_cached(
            "SELECT version, body, created_at, note FROM policy_versions WHERE tenant = ?1
             ORDER BY version",
        )?;
        let rows = st.query_map(params![tenant], |r| {
            Ok(PolicyVersionRow {
                version: r.get::<_, i64>(0)? as u64,
                body: r.get(1)?,
                created_at: r.get(2)?,
                note: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Tenants that have at least one stored policy version.
    pub fn policy_tenants(&self) -> Result<Vec<String>> {
        let mut st = self
            .tx
            .prepare("SELECT DISTINCT tenant FROM policy_versions ORDER BY tenant")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn add_policy_version(&self, tenant: &str, v: &PolicyVersionRow) -> Result<()> {
        self.tx.execute(
            "INSERT INTO policy_versions (tenant, version, body, created_at, note)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![tenant, v.version as i64, v.body, v.created_at, v.note],
        )?;
        Ok(())
    }

    /// The stored answer for (`tenant`, `route`, `key`) if it is newer than `since`.
    pub fn idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotentAnswer>> {
        Ok(self
            .tx
            .query_row(
                "SELECT status, body FROM idempotency
                 WHERE tenant = ?1 AND route = ?2 AND key = ?3 AND created_at >= ?4",
                params![tenant, route, key, since],
                |r| {
                    Ok(IdempotentAnswer {
                        status: r.get::<_, i64>(0)? as u16,
                        body: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Stores the answer for (`tenant`, `route`, `key`), replacing an expired one, and drops
    /// answers older than `expired_before`.
    pub fn store_idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        answer: &IdempotentAnswer,
        now: i64,
        expired_before: i64,
    ) -> Result<()> {
        self.tx.execute(
            "DELETE FROM idempotency WHERE created_at < ?1",
            params![expired_before],
        )?;
        self.tx.execute(
            "REPLACE INTO idempotency (tenant, route, key, status, body, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![tenant, route, key, answer.status as i64, answer.body, now],
        )?;
        Ok(())
    }

    pub fn totals(&self, tenant: &str) -> Result<Vec<StageKindTotals>> {
        let mut st = self.tx.prepare(
            "SELECT stage, kind, COUNT(*), SUM(original_size), SUM(stored_size + original_stored_size)
             FROM objects WHERE tenant = ?1 AND deleted_at IS NULL GROUP BY stage, kind ORDER BY stage, kind",
        )?;
        let rows = st.query_map(params![tenant], |r| {
            Ok(StageKindTotals {
                stage: r.get::<_, i64>(0)? as u8,
                kind: r.get(1)?,
                objects: r.get::<_, i64>(2)? as u64,
                logical_bytes: r.get::<_, i64>(3)? as u64,
                physical_bytes: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn xattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .tx
            .query_row(
                "SELECT value FROM xattrs WHERE ino = ?1 AND name = ?2",
                params![ino as i64, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_xattr(&self, ino: u64, name: &[u8], value: &[u8]) -> Result<()> {
        self.tx.execute(
            "REPLACE INTO xattrs (ino, name, value) VALUES (?1, ?2, ?3)",
            params![ino as i64, name, value],
        )?;
        Ok(())
    }

    pub fn remove_xattr(&self, ino: u64, name: &[u8]) -> Result<bool> {
        Ok(self.tx.execute(
            "DELETE FROM xattrs WHERE ino = ?1 AND name = ?2",
            params![ino as i64, name],
        )? > 0)
    }

    pub fn xattr_names(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        let mut st = self
            .tx
            .prepare("SELECT name FROM xattrs WHERE ino = ?1 ORDER BY name")?;
        let rows = st.query_map(params![ino as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog written before history had owners and event types opens, and its rows get them.
    #[test]
    fn version_one_catalogs_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            // Version 1 had neither the history columns of version 2 nor the additions of 3.
            let v1_schema = SCHEMA
                .split("CREATE TABLE IF NOT EXISTS history")
                .next()
                .unwrap()
                .replace("    rdev INTEGER NOT NULL DEFAULT 0,\n", "")
                .replace(
                    ",\n    artifact_sha256 TEXT,\n    original_sha256 TEXT,\n    writing INTEGER NOT NULL DEFAULT 0",
                    "",
                )
                + "CREATE TABLE history (seq INTEGER PRIMARY KEY AUTOINCREMENT, object INTEGER NOT NULL,
                    at INTEGER NOT NULL, from_stage INTEGER NOT NULL, to_stage INTEGER NOT NULL,
                    reason TEXT NOT NULL, bytes_before INTEGER NOT NULL, bytes_after INTEGER NOT NULL);";
            conn.execute_batch(&v1_schema).unwrap();
            conn.execute_batch(
                "INSERT INTO objects (id, tenant, stage, kind, format, generation, encoding, size,
                    stored_size, original_size, sha256, lossless, heat, heat_at, last_access_at,
                    created_at, stage_since, progress, pinned, hold, speed, original_encoding,
                    original_stored_size, fail_count)
                 VALUES (7, 'acme', 1, 'text', 'text/plain', 2, 0, 10, 10, 100, 'x', 0, 1.0, 0, 0,
                    0, 0, 0.0, 0, 0, 1.0, 0, 0, 0),
                    (8, 'acme', 0, 'text', 'text/plain', 1, 0, 10, 10, 10, 'y', 1, 1.0, 0, 0,
                    0, 0, 0.0, 0, 0, 1.0, 0, 0, 0);
                 INSERT INTO history (object, at, from_stage, to_stage, reason, bytes_before, bytes_after)
                 VALUES (7, 1, 0, 0, 'created', 0, 0), (7, 2, 0, 1, 'age since last access (x)', 100, 10),
                        (7, 3, 1, 1, 'unlinked', 10, 0);",
            )
            .unwrap();
        }
        let cat = Catalog::open(&path).unwrap();
        let events: Vec<(Event, String, String)> = cat
            .read()
            .history(7)
            .unwrap()
            .into_iter()
            .map(|e| (e.history.event, e.tenant, e.kind))
            .collect();
        let acme = || ("acme".to_owned(), "text".to_owned());
        assert_eq!(
            events,
            vec![
                (Event::Created, acme().0, acme().1),
                (Event::Decayed, acme().0, acme().1),
                (Event::Deleted, acme().0, acme().1),
            ]
        );
        let version: i64 = cat
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // A lossy stage-1 artifact's hash is not known until fsck records it.
        let o = cat.read().object(7).unwrap().unwrap();
        assert_eq!((o.artifact_sha256, o.writing), (None, false));
        // A plain stage-0 artifact is the original: its hash is the original's.
        let o = cat.read().object(8).unwrap().unwrap();
        assert_eq!(o.artifact_sha256.as_deref(), Some("y"));
        drop(cat);
        // Opening again is a no-op.
        Catalog::open(&path).unwrap();
    }

    /// Another connection holding the database (a backup, an sqlite3 shell) makes a commit
    /// wait, not fail.
    #[test]
    fn a_busy_catalog_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let mut cat = Catalog::open(&path).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        let started = std::time::Instant::now();
        cat.atomically(|tx| tx.set_writing(1, false)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250));
        holder.join().unwrap();
    }

    /// A wall-clock tick costs O(due objects): the due query walks the partial index.
    #[test]
    fn due_and_expiry_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.db")).unwrap();
        let plan = |sql: &str| -> String {
            let mut st = cat
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows = st
                .query_map(params![5, 10], |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let due = plan(DUE_SQL);
        assert!(due.contains("objects_due"), "{due}");
        let expiry = plan(EXPIRED_SQL);
        assert!(expiry.contains("objects_restore"), "{expiry}");
    }
}
