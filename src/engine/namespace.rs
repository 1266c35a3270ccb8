//! What the mount calls: the namespace (lookup, create, rename, unlink ...) and the data path
//! (open and release). Every open through here is an access unless the opener is ignored.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{reschedule, Engine, EngineError, Result};
use crate::catalog::{Encoding, Event, HistoryRow, NodeRow, NodeType, ObjectRow, Tx};
use crate::faults::fault_point;
use crate::transform::binary::ChunkedReader;
use crate::transform::detect::detect;
use crate::transform::Detected;

/// A node with its object, when it is a file.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub node: NodeRow,
    pub object: Option<ObjectRow>,
    /// Read from the backing file while a writer has it open.
    pub live: Option<LiveStat>,
    /// Names of a file (hard links count), or 2 plus the subdirectories of a directory. Listings
    /// do not count them and say 1.
    pub nlink: u32,
}

impl NodeView {
    pub fn size(&self) -> u64 {
        match (&self.live, &self.object, &self.node.target) {
            (Some(live), _, _) => live.size,
            (None, Some(o), _) => o.size,
            (None, None, Some(t)) => t.len() as u64,
            _ => 0,
        }
    }
    pub fn generation(&self) -> u64 {
        self.object.as_ref().map(|o| o.generation).unwrap_or(0)
    }
    pub fn mtime_ns(&self) -> i64 {
        self.live.map(|l| l.mtime_ns).unwrap_or(self.node.mtime_ns)
    }
    /// Writes change the ctime too: a file being written shows its backing file's when newer.
    pub fn ctime_ns(&self) -> i64 {
        self.live
            .map_or(self.node.ctime_ns, |l| l.ctime_ns.max(self.node.ctime_ns))
    }
}

/// What a file being written looks like now: its backing file's size and times.
#[derive(Debug, Clone, Copy)]
pub struct LiveStat {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl LiveStat {
    pub(super) fn of(meta: &std::fs::Metadata) -> LiveStat {
        use std::os::unix::fs::MetadataExt;
        LiveStat {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

pub enum OpenedArtifact {
    /// The plain backing file, opened read-write.
    File(File),
    /// A compressed container, decoded on read.
    Chunked(Arc<ChunkedReader>),
}

#[derive(Debug, Clone, Copy)]
pub enum TimeSet {
    Now,
    AtNs(i64),
}

#[derive(Debug, Clone, Default)]
pub struct SetAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
}

const MAX_NAME: usize = 255;

/// The history reason of content written through the mount.
const WRITTEN: &str = "written: new original content";

/// A name that may be made: not empty, not `.` or `..`, no `/`, not too long.
fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(EngineError::Invalid("bad file name".into()));
    }
    check_name_len(name)
}

fn check_name_len(name: &[u8]) -> Result<()> {
    if name.len() > MAX_NAME {
        return Err(EngineError::NameTooLong);
    }
    Ok(())
}

pub(crate) fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub(crate) fn read_head(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(8192);
    File::open(path)?.take(8192).read_to_end(&mut head)?;
    Ok(head)
}

impl Engine {
    fn view(&self, node: NodeRow) -> Result<NodeView> {
        let object = match node.node_type {
            NodeType::File => self.catalog.lock().read().object(node.ino)?,
            _ => None,
        };
        let live = match &object {
            // While writers are open: the backing file's size and times, once a write changed
            // them since the open (or the last recorded flush); until then the catalog's.
            Some(o) => match self.opens.lock().get(&o.id).copied() {
                Some(e) if e.writers > 0 => {
                    let live =
                        LiveStat::of(&std::fs::metadata(self.store.artifact(o.id, o.generation))?);
                    (e.baseline != Some((live.size, live.mtime_ns))).then_some(live)
                }
                _ => None,
            },
            _ => None,
        };
        let nlink = {
            let cat = self.catalog.lock();
            let r = cat.read();
            match node.node_type {
                NodeType::Dir => 2 + r.subdirectories(node.ino)?,
                _ => 1 + r.links_of(node.ino)?.len() as u64,
            }
        };
        Ok(NodeView {
            node,
            object,
            live,
            nlink: u32::try_from(nlink).unwrap_or(u32::MAX),
        })
    }

    pub(super) fn node(&self, ino: u64) -> Result<NodeRow> {
        self.catalog
            .lock()
            .read()
            .node(ino)?
            .ok_or(EngineError::NoEntry)
    }

    fn dir(&self, ino: u64) -> Result<NodeRow> {
        let n = self.node(ino)?;
        if n.node_type != NodeType::Dir {
            return Err(EngineError::NotDir);
        }
        Ok(n)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<NodeView> {
        check_name_len(name)?;
        let node = self
            .catalog
            .lock()
            .read()
            .lookup(parent, name)?
            .ok_or(EngineError::NoEntry)?;
        self.view(node)
    }

    pub fn getattr(&self, ino: u64) -> Result<NodeView> {
        let node = self.node(ino)?;
        self.view(node)
    }

    pub fn readdir(&self, ino: u64) -> Result<Vec<NodeView>> {
        self.dir(ino)?;
        let children = self.catalog.lock().read().children(ino)?;
        children
            .into_iter()
            .map(|node| {
                let object = match node.node_type {
                    NodeType::File => self.catalog.lock().read().object(node.ino)?,
                    _ => None,
                };
                Ok(NodeView {
                    node,
                    object,
                    live: None,
                    nlink: 1,
                })
            })
            .collect()
    }

    /// A stage-0 object whose artifact is generation 1, `size` plain bytes hashing to `sha256`.
    pub(super) fn new_object(
        &self,
        id: u64,
        tenant: &str,
        detected: &Detected,
        size: u64,
        sha256: &str,
        now: i64,
    ) -> ObjectRow {
        ObjectRow {
            id,
            tenant: tenant.to_owned(),
            stage: 0,
            kind: detected.kind.as_str().to_string(),
            format: detected.format.clone(),
            generation: 1,
            encoding: Encoding::Plain,
            size,
            stored_size: size,
            original_size: size,
            sha256: sha256.to_owned(),
            artifact_sha256: Some(sha256.to_owned()),
            original_sha256: None,
            writing: false,
            lossless: true,
            heat: 1.0,
            heat_at: now,
            last_access_at: now,
            created_at: now,
            stage_since: now,
            next_decay_at: None,
            progress: 0.0,
            pinned: false,
            hold: false,
            keep_original: None,
            speed: 1.0,
            original_gen: None,
            original_encoding: Encoding::Plain,
            original_stored_size: 0,
            restore_until: None,
            fail_count: 0,
            deleted_at: None,
            deleted_path: None,
            purge_reason: None,
        }
    }

    pub(super) fn new_node(
        &self,
        parent: &NodeRow,
        name: &[u8],
        t: NodeType,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> NodeRow {
        let now = self.clock.now_ns();
        NodeRow {
            ino: 0,
            tenant: parent.tenant.clone(),
            parent: parent.ino,
            name: name.to_vec(),
            node_type: t,
            mode: mode & 0o7777,
            uid,
            gid,
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
            crtime_ns: now,
            target: None,
            rdev: 0,
        }
    }

    pub fn mkdir(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<NodeView> {
        check_name(name)?;
        let dir = self.dir(parent)?;
        let node = self.new_node(&dir, name, NodeType::Dir, mode, uid, gid);
        self.insert_entry(parent, &node)
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<NodeView> {
        check_name(name)?;
        if target.is_empty() || target.len() > 4096 {
            return Err(EngineError::Invalid("bad symlink target".into()));
        }
        let dir = self.dir(parent)?;
        let mut node = self.new_node(&dir, name, NodeType::Symlink, 0o777, uid, gid);
        node.target = Some(target.to_vec());
        self.insert_entry(parent, &node)
    }

    /// Inserts a node without an object (directory, symlink, special file) and touches its
    /// directory; `Exists` when the name is taken.
    fn insert_entry(&self, parent: u64, node: &NodeRow) -> Result<NodeView> {
        let ino = self.catalog.lock().atomically(|tx| {
            if tx.lookup(parent, &node.name)?.is_some() {
                return Ok(None);
            }
            let ino = tx.insert_node(node)?;
            tx.touch_node(parent, node.ctime_ns, node.ctime_ns)?;
            Ok::<_, EngineError>(Some(ino))
        })?;
        self.getattr(ino.ok_or(EngineError::Exists)?)
    }

    /// Makes a FIFO, socket or device node; a regular file is created empty and closed.
    #[allow(clippy::too_many_arguments)]
    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        node_type: NodeType,
        mode: u32,
        rdev: u64,
        uid: u32,
        gid: u32,
    ) -> Result<NodeView> {
        check_name(name)?;
        match node_type {
            NodeType::File => {
                let (view, _file) = self.create(parent, name, mode, uid, gid)?;
                self.release(view.node.ino, true, false);
                self.getattr(view.node.ino)
            }
            NodeType::Dir | NodeType::Symlink => Err(EngineError::Invalid(
                "mknod makes files and special files".into(),
            )),
            _ => {
                let dir = self.dir(parent)?;
                let mut node = self.new_node(&dir, name, node_type, mode, uid, gid);
                if matches!(node_type, NodeType::CharDevice | NodeType::BlockDevice) {
                    node.rdev = rdev;
                }
                self.insert_entry(parent, &node)
            }
        }
    }

    /// A further name for a node that is not a directory (a hard link).
    pub fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<NodeView> {
        check_name(new_name)?;
        let node = self.node(ino)?;
        if node.node_type == NodeType::Dir {
            return Err(EngineError::NotPermitted(
                "directories cannot be hard-linked".into(),
            ));
        }
        self.dir(new_parent)?;
        let now = self.clock.now_ns();
        self.catalog.lock().atomically(|tx| {
            if tx.node(ino)?.is_none() {
                return Err(EngineError::NoEntry);
            }
            if tx.lookup(new_parent, new_name)?.is_some() {
                return Err(EngineError::Exists);
            }
            tx.add_link(ino, new_parent, new_name)?;
            tx.set_ctime(ino, now)?;
            tx.touch_node(new_parent, now, now)?;
            Ok(())
        })?;
        self.getattr(ino)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        self.node(ino)?
            .target
            .ok_or_else(|| EngineError::Invalid("not a symlink".into()))
    }

    /// Creates an empty file at stage 0 and opens it for writing (a writer is registered).
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(NodeView, File)> {
        check_name(name)?;
        let dir = self.dir(parent)?;
        let node = self.new_node(&dir, name, NodeType::File, mode, uid, gid);
        let now = self.clock.now();
        let detected = detect(&String::from_utf8_lossy(name), b"");
        let mut cat = self.catalog.lock();
        let mut created = None;
        let tx_result = cat.atomically(|tx| {
            if tx.lookup(parent, name)?.is_some() {
                return Ok(None);
            }
            let id = tx.insert_node(&node)?;
            let empty_hash = hex::encode(Sha256::digest(b""));
            let mut object = self.new_object(id, &dir.tenant, &detected, 0, &empty_hash, now);
            // Opened for writing at once: marked so that a crash records what was written.
            object.writing = true;
            let policy = self.policy(&object.tenant, &object.kind);
            reschedule(&mut object, &policy);
            tx.insert_object(&object)?;
            tx.add_history(&object, &HistoryRow::created(now, "created", 0, None))?;
            tx.touch_node(parent, node.ctime_ns, node.ctime_ns)?;
            // The file is created inside the transaction: a crash before the commit leaves an
            // unreferenced file that the startup sweep removes.
            let path = self.store.artifact(id, 1);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            created = Some(path);
            crate::store::sync_dir(&self.store.root().join("objects"))?;
            fault_point!("write.after_create");
            Ok::<_, EngineError>(Some((id, file)))
        });
        drop(cat);
        if let (Err(_), Some(path)) = (&tx_result, &created) {
            // The row was not committed (a full disk, say): neither is the file.
            self.store.remove(path);
        }
        let (id, file) = tx_result?.ok_or(EngineError::Exists)?;
        let stamp = self.artifact_stamp(id);
        {
            let mut opens = self.opens.lock();
            let entry = opens.entry(id).or_default();
            entry.writers += 1;
            entry.dirty = true;
            entry.baseline = stamp;
        }
        Ok((self.getattr(id)?, file))
    }

    /// Opens the artifact of generation `generation` (compared modulo 2^16, as node ids carry it).
    pub fn open(
        &self,
        ino: u64,
        generation: Option<u64>,
        write: bool,
        truncate: bool,
        opener: Option<&str>,
    ) -> Result<OpenedArtifact> {
        if write {
            self.opens.lock().entry(ino).or_default().writers += 1;
        }
        let result = self.open_registered(ino, generation, write, truncate, opener);
        let stamp = match (&result, write) {
            (Ok(_), true) => self.artifact_stamp(ino),
            _ => None,
        };
        let mut opens = self.opens.lock();
        let entry = opens.entry(ino).or_default();
        match &result {
            Ok(_) if !write => entry.readers += 1,
            Ok(_) => {
                entry.dirty |= truncate;
                if entry.baseline.is_none() {
                    entry.baseline = stamp;
                }
            }
            Err(_) if write => entry.writers -= 1,
            Err(_) => {}
        }
        if entry.readers == 0 && entry.writers == 0 && !entry.dirty {
            opens.remove(&ino);
        }
        result
    }

    fn open_registered(
        &self,
        ino: u64,
        generation: Option<u64>,
        write: bool,
        truncate: bool,
        opener: Option<&str>,
    ) -> Result<OpenedArtifact> {
        let mut object = self.live_object(ino)?.ok_or(EngineError::NoEntry)?;
        let mut attempts = 0;
        while write && object.encoding == Encoding::Chunked {
            // Writers need plain bytes: decode to a new generation, then have the kernel look
            // the name up again so the writer opens that generation. A stale node decodes too,
            // so its one retry is not spent on a second ESTALE; so does a decode that lost a
            // race with a tick.
            match self.thaw(&object) {
                Ok(_) => {
                    self.expect_writer(ino);
                    return Err(EngineError::Stale);
                }
                Err(EngineError::Stale) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e),
            }
            object = self.live_object(ino)?.ok_or(EngineError::NoEntry)?;
        }
        if generation.is_some_and(|g| g & 0xffff != object.generation & 0xffff) {
            return Err(EngineError::Stale);
        }
        let ignored = opener.is_some_and(|c| self.cfg.ignored_processes.iter().any(|p| p == c));
        if !ignored {
            self.heat.record(ino, self.clock.now());
        }
        self.count(&object.tenant, |c| {
            if ignored {
                c.accesses_ignored += 1;
            } else {
                c.accesses_counted += 1;
            }
        });
        let path = self.store.artifact(object.id, object.generation);
        match object.encoding {
            Encoding::Plain => {
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                if write {
                    self.mark_writing(object.id)?;
                    self.writer_arrived(object.id);
                }
                if truncate {
                    file.set_len(0)?;
                }
                Ok(OpenedArtifact::File(file))
            }
            Encoding::Chunked => {
                let reader = ChunkedReader::open(File::open(&path)?)?;
                Ok(OpenedArtifact::Chunked(Arc::new(reader)))
            }
        }
    }

    /// A writer's descriptor was closed (FUSE flush, which close(2) waits for; every close of
    /// a duplicate flushes too). What the file holds now is recorded as its content; the
    /// writer stays registered, and the file marked as being written, until its release.
    /// Writes through passthrough never reach RustDB, so the file's hash decides whether
    /// anything changed (`finalize_write`).
    pub fn flush_writer(&self, ino: u64, wrote: bool) {
        let stamp = self.artifact_stamp(ino);
        let seen_changed = {
            let mut opens = self.opens.lock();
            let entry = opens.entry(ino).or_default();
            entry.dirty |= wrote || (entry.baseline.is_some() && entry.baseline != stamp);
            entry.dirty
        };
        match self.finalize_write(ino, WRITTEN, seen_changed, true) {
            Ok(()) => {
                let mut opens = self.opens.lock();
                let entry = opens.entry(ino).or_default();
                entry.dirty = false;
                entry.baseline = stamp;
                entry.recorded = stamp;
            }
            Err(e) => tracing::error!(object = ino, error = %e, "could not record written content"),
        }
    }

    /// The end of one open. The last writer's release records what a flush did not see (and
    /// clears the writing mark); the object stays marked dirty until that is committed, so no
    /// tick rewrites it meanwhile.
    pub fn release(&self, ino: u64, writable: bool, wrote: bool) {
        let stamp = if writable {
            self.artifact_stamp(ino)
        } else {
            None
        };
        let finalize = {
            let mut opens = self.opens.lock();
            let entry = opens.entry(ino).or_default();
            if writable {
                entry.writers = entry.writers.saturating_sub(1);
                let changed = entry.baseline.is_some() && entry.baseline != stamp;
                entry.dirty |= wrote || changed;
            } else {
                entry.readers = entry.readers.saturating_sub(1);
            }
            // Nothing changed since a flush recorded the content: only the mark goes.
            let finalize = (writable && entry.writers == 0).then(|| {
                (
                    entry.dirty,
                    entry.recorded.is_some() && entry.recorded == stamp,
                )
            });
            if finalize.is_some() {
                entry.dirty = true;
                entry.baseline = None;
                entry.recorded = None;
            }
            if entry.readers == 0 && entry.writers == 0 && !entry.dirty {
                opens.remove(&ino);
            }
            finalize
        };
        if let Some((seen_changed, recorded)) = finalize {
            let done = if recorded {
                self.catalog
                    .lock()
                    .atomically(|tx| tx.set_writing(ino, false))
                    .map_err(EngineError::from)
            } else {
                self.finalize_write(ino, WRITTEN, seen_changed, false)
            };
            if let Err(e) = done {
                tracing::error!(object = ino, error = %e, "could not record written content");
            }
            let mut opens = self.opens.lock();
            if let Some(entry) = opens.get_mut(&ino) {
                if entry.writers == 0 {
                    entry.dirty = false;
                }
                if entry.readers == 0 && entry.writers == 0 && !entry.dirty {
                    opens.remove(&ino);
                }
            }
        }
    }

    /// (size, mtime in ns) of the current backing file of `ino`.
    fn artifact_stamp(&self, ino: u64) -> Option<(u64, i64)> {
        let o = self.catalog.lock().read().object(ino).ok()??;
        let meta = std::fs::metadata(self.store.artifact(o.id, o.generation)).ok()?;
        let live = LiveStat::of(&meta);
        Some((live.size, live.mtime_ns))
    }

    pub fn setattr(&self, ino: u64, set: &SetAttrs) -> Result<NodeView> {
        let now = self.clock.now_ns();
        if let Some(size) = set.size {
            let node = self.node(ino)?;
            let object = self.live_object(ino)?.ok_or(match node.node_type {
                NodeType::File => EngineError::NoEntry,
                _ => EngineError::IsDir,
            })?;
            let object = if object.encoding == Encoding::Chunked {
                self.thaw(&object)?
            } else {
                object
            };
            self.mark_writing(object.id)?;
            let file = OpenOptions::new()
                .write(true)
                .open(self.store.artifact(object.id, object.generation))?;
            file.set_len(size)?;
            file.sync_all()?;
            let writers = {
                let mut opens = self.opens.lock();
                let entry = opens.entry(ino).or_default();
                entry.dirty = true;
                entry.writers
            };
            if writers == 0 {
                self.finalize_write(ino, WRITTEN, true, false)?;
                let mut opens = self.opens.lock();
                if opens
                    .get(&ino)
                    .is_some_and(|e| e.writers == 0 && e.readers == 0)
                {
                    opens.remove(&ino);
                } else if let Some(e) = opens.get_mut(&ino) {
                    e.dirty = e.writers > 0 && e.dirty;
                }
            }
        }
        if let Some(t) = set.mtime {
            // While writers are open the backing file's mtime is the file's mtime: keep them equal.
            if let Some(o) = self.catalog.lock().read().object(ino)? {
                if o.deleted_at.is_none() && o.encoding == crate::catalog::Encoding::Plain {
                    let at = match t {
                        TimeSet::Now => std::time::SystemTime::now(),
                        TimeSet::AtNs(ns) => {
                            std::time::UNIX_EPOCH
                                + std::time::Duration::from_nanos(ns.max(0) as u64)
                        }
                    };
                    let backing = OpenOptions::new()
                        .write(true)
                        .open(self.store.artifact(o.id, o.generation))?;
                    backing.set_times(std::fs::FileTimes::new().set_modified(at))?;
                }
            }
        }
        let mut cat = self.catalog.lock();
        cat.atomically(|tx| {
            let Some(mut node) = tx.node(ino)? else {
                return Ok(());
            };
            if let Some(mode) = set.mode {
                node.mode = mode & 0o7777;
            }
            if let Some(uid) = set.uid {
                node.uid = uid;
            }
            if let Some(gid) = set.gid {
                node.gid = gid;
            }
            let at = |t: TimeSet| match t {
                TimeSet::Now => now,
                TimeSet::AtNs(ns) => ns,
            };
            if let Some(t) = set.atime {
                node.atime_ns = at(t);
            }
            if let Some(t) = set.mtime {
                node.mtime_ns = at(t);
            }
            if set.size.is_some() && set.mtime.is_none() {
                node.mtime_ns = now;
            }
            node.ctime_ns = now;
            tx.update_node(&node)?;
            Ok::<_, EngineError>(())
        })?;
        drop(cat);
        self.getattr(ino)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        let (now, now_ns) = (self.clock.now(), self.clock.now_ns());
        let gone = self.catalog.lock().atomically(|tx| {
            let entry = tx.lookup(parent, name)?.ok_or(EngineError::NoEntry)?;
            if entry.node_type == NodeType::Dir {
                return Err(EngineError::IsDir);
            }
            remove_name(tx, &entry, "unlinked", now, now_ns)
        })?;
        self.delete_files(gone);
        Ok(())
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        let now = self.clock.now_ns();
        let mut cat = self.catalog.lock();
        let node = cat
            .read()
            .lookup(parent, name)?
            .ok_or(EngineError::NoEntry)?;
        if node.node_type != NodeType::Dir {
            return Err(EngineError::NotDir);
        }
        if cat.read().has_children(node.ino)? {
            return Err(EngineError::NotEmpty);
        }
        cat.atomically(|tx| {
            tx.delete_node(node.ino)?;
            tx.touch_node(parent, now, now)
        })?;
        Ok(())
    }

    /// Removes a file from the namespace under every name it has; its object becomes a
    /// tombstone. Returns the names it had, (directory, name).
    pub(super) fn remove_object(&self, ino: u64, reason: &str) -> Result<Vec<(u64, Vec<u8>)>> {
        let (now, now_ns) = (self.clock.now(), self.clock.now_ns());
        let mut names = Vec::new();
        let gone = self.catalog.lock().atomically(|tx| {
            let first = tx.node(ino)?.ok_or(EngineError::NoEntry)?;
            names.push((first.parent, first.name.clone()));
            names.extend(tx.links_of(ino)?);
            for (dir, _) in &names {
                tx.touch_node(*dir, now_ns, now_ns)?;
            }
            delete_last_name(tx, &first, reason, now)
        })?;
        self.delete_files(gone);
        Ok(names)
    }

    /// Deletes the backing files of an object that just became a tombstone. Open handles keep
    /// their file descriptors; the names go now.
    fn delete_files(&self, tombstoned: Option<ObjectRow>) {
        if let Some(o) = tombstoned {
            self.store.remove(&self.store.artifact(o.id, o.generation));
            if let Some(og) = o.original_gen {
                self.store.remove(&self.store.original(o.id, og));
            }
        }
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        noreplace: bool,
    ) -> Result<()> {
        check_name(new_name)?;
        let (at, now) = (self.clock.now(), self.clock.now_ns());
        // One transaction: a crash leaves the old names or the new ones, never a half.
        let gone = self.catalog.lock().atomically(|tx| {
            let entry = tx.lookup(parent, name)?.ok_or(EngineError::NoEntry)?;
            let np = tx.node(new_parent)?.ok_or(EngineError::NoEntry)?;
            if np.node_type != NodeType::Dir {
                return Err(EngineError::NotDir);
            }
            // A directory may not move below itself.
            if entry.node_type == NodeType::Dir {
                let mut cur = np.clone();
                loop {
                    if cur.ino == entry.ino {
                        return Err(EngineError::Invalid(
                            "cannot move a directory into itself".into(),
                        ));
                    }
                    if cur.parent == 0 {
                        break;
                    }
                    cur = tx.node(cur.parent)?.ok_or(EngineError::NoEntry)?;
                }
            }
            let mut gone = None;
            if let Some(t) = tx.lookup(new_parent, new_name)? {
                // Two names of one file: POSIX says the rename does nothing.
                if t.ino == entry.ino {
                    return Ok(None);
                }
                if noreplace {
                    return Err(EngineError::Exists);
                }
                match (
                    entry.node_type == NodeType::Dir,
                    t.node_type == NodeType::Dir,
                ) {
                    (true, false) => return Err(EngineError::NotDir),
                    (false, true) => return Err(EngineError::IsDir),
                    (true, true) => {
                        if tx.has_children(t.ino)? {
                            return Err(EngineError::NotEmpty);
                        }
                        tx.delete_node(t.ino)?;
                    }
                    (false, false) => gone = remove_name(tx, &t, "replaced by rename", at, now)?,
                }
            }
            let old_path = tx.path_of(entry.ino)?.unwrap_or_default();
            tx.move_entry(entry.ino, (parent, name), (new_parent, new_name))?;
            tx.set_ctime(entry.ino, now)?;
            for dir in [parent, new_parent] {
                tx.touch_node(dir, now, now)?;
            }
            // A file's rename is an event; a directory's moves its files without one each.
            record_path_change(tx, entry.ino, &old_path, at, "")?;
            Ok::<_, EngineError>(gone)
        })?;
        self.delete_files(gone);
        Ok(())
    }

    pub fn statfs(&self) -> Result<nix::sys::statvfs::Statvfs> {
        nix::sys::statvfs::statvfs(self.store.root()).map_err(|e| EngineError::Io(e.into()))
    }
}

/// Removes one name of a node inside `tx`. The last name removes the node, and a file's object
/// becomes a tombstone, returned so that its files are deleted after the commit.
fn remove_name(
    tx: &Tx<'_>,
    entry: &NodeRow,
    reason: &str,
    now: i64,
    now_ns: i64,
) -> Result<Option<ObjectRow>> {
    let first = tx.node(entry.ino)?.ok_or(EngineError::NoEntry)?;
    tx.touch_node(entry.parent, now_ns, now_ns)?;
    let Some((link_dir, link_name)) = tx.links_of(entry.ino)?.into_iter().next() else {
        return delete_last_name(tx, &first, reason, now);
    };
    if first.parent == entry.parent && first.name == entry.name {
        // The first name goes: the oldest link becomes the first name (and the object's path).
        let old_path = tx.path_of(entry.ino)?.unwrap_or_default();
        tx.remove_link(link_dir, &link_name)?;
        tx.move_entry(
            entry.ino,
            (entry.parent, &entry.name),
            (link_dir, &link_name),
        )?;
        record_path_change(tx, entry.ino, &old_path, now, " (that name was removed)")?;
    } else {
        tx.remove_link(entry.parent, &entry.name)?;
    }
    tx.set_ctime(entry.ino, now_ns)?;
    Ok(None)
}

/// Deletes a node that has no other name; a file's object becomes a tombstone (refused while
/// it is under legal hold).
fn delete_last_name(
    tx: &Tx<'_>,
    first: &NodeRow,
    reason: &str,
    now: i64,
) -> Result<Option<ObjectRow>> {
    let object = tx.object(first.ino)?.filter(|o| o.deleted_at.is_none());
    if object.as_ref().is_some_and(|o| o.hold) {
        return Err(EngineError::NotPermitted(
            "the file is under legal hold; lift the hold first".into(),
        ));
    }
    let path = tx.path_of(first.ino)?.unwrap_or_default();
    tx.delete_node(first.ino)?;
    let Some(o) = object else {
        return Ok(None);
    };
    record_deletion(tx, &o, &path, reason, now)?;
    Ok(Some(o))
}

/// Makes `o` a tombstone that was at `path`, with a `deleted` event saying why.
pub(super) fn record_deletion(
    tx: &Tx<'_>,
    o: &ObjectRow,
    path: &str,
    reason: &str,
    now: i64,
) -> Result<()> {
    let tombstone = o.tombstone(now, path, reason);
    tx.update_object(&tombstone)?;
    tx.add_history(
        &tombstone,
        &HistoryRow {
            at: now,
            event: Event::Deleted,
            from_stage: o.stage,
            to_stage: o.stage,
            reason: reason.to_string(),
            bytes_before: o.stored_size + o.original_stored_size,
            bytes_after: 0,
            path: Some(path.to_owned()),
            policy_version: None,
        },
    )?;
    Ok(())
}

/// Records a `renamed` event when a live file's path (its first name) is no longer `old_path`.
fn record_path_change(tx: &Tx<'_>, ino: u64, old_path: &str, at: i64, why: &str) -> Result<()> {
    let Some(o) = tx.object(ino)?.filter(|o| o.deleted_at.is_none()) else {
        return Ok(());
    };
    let new_path = tx.path_of(ino)?.unwrap_or_default();
    if new_path == old_path {
        return Ok(());
    }
    tx.add_history(
        &o,
        &HistoryRow {
            at,
            event: Event::Renamed,
            from_stage: o.stage,
            to_stage: o.stage,
            reason: format!("renamed from {old_path}{why}"),
            bytes_before: o.stored_size,
            bytes_after: o.stored_size,
            path: Some(new_path),
            policy_version: None,
        },
    )?;
    Ok(())
}
