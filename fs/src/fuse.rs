//! The fuser `Filesystem` impl: a thin adapter. Each callback decodes the node id, calls the
//! backend, and replies; no catalog or policy logic lives here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BackingId, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::nodeid::NodeIds;
use crate::{
    Accessor, Attr, Backend, FsError, NodeKind, OpenData, OpenMode, Opened, ReadAt, SetAttr,
    SetTime, XattrMode,
};

/// Entries and attributes may be cached long: every change goes through RustDB, and changes the
/// kernel did not make itself (engine rewrites, purges) are invalidated explicitly.
const TTL: Duration = Duration::from_secs(60);

enum HandleData {
    File(Arc<std::fs::File>),
    Reader(Arc<dyn ReadAt>),
}

struct Handle {
    ino: u64,
    node: u64,
    data: HandleData,
    writable: bool,
    wrote: AtomicBool,
    passthrough: bool,
}

/// One backing registration per kernel node, shared by all its passthrough handles.
struct Backing {
    id: Arc<BackingId>,
    opens: usize,
}

pub struct RustFs<B: Backend> {
    backend: Arc<B>,
    ids: NodeIds,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    backings: Mutex<HashMap<u64, Backing>>,
    next_fh: AtomicU64,
    /// The last known attributes of every open file, by catalog ino: taken just before its
    /// open, refreshed just before one of its names goes. Once the file has no name left (an
    /// unlink, or a purge by the engine), `fstat` on its handles still answers from here, with
    /// no links, as on any file system. Lock order: `handles` before this.
    open_attrs: Mutex<HashMap<u64, Attr>>,
    passthrough_wanted: bool,
    passthrough: AtomicBool,
}

impl<B: Backend> RustFs<B> {
    pub fn new(backend: Arc<B>, passthrough_wanted: bool) -> Self {
        let ids = NodeIds::new(backend.root());
        RustFs {
            backend,
            ids,
            handles: Mutex::new(HashMap::new()),
            backings: Mutex::new(HashMap::new()),
            open_attrs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            passthrough_wanted,
            passthrough: AtomicBool::new(false),
        }
    }

    /// Whether the kernel accepted passthrough at init.
    pub fn passthrough_active(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    pub(crate) fn node_ids(&self) -> NodeIds {
        self.ids
    }

    fn file_attr(&self, attr: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(self.ids.encode(attr.ino, attr.generation)),
            size: attr.size,
            blocks: attr.blocks,
            atime: attr.atime,
            mtime: attr.mtime,
            ctime: attr.ctime,
            crtime: attr.crtime,
            kind: file_type(attr.kind),
            perm: attr.perm,
            nlink: attr.nlink,
            uid: attr.uid,
            gid: attr.gid,
            rdev: attr.rdev,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Attributes as seen through kernel node `node`. A node stands for one generation: when the
    /// file has moved on, the node keeps its identity and, while handles are open on it, the
    /// size of the bytes those handles read (the kernel cuts reads at the size it knows).
    fn node_attr(&self, node: u64, mut attr: Attr) -> FileAttr {
        let (_, node_gen) = self.ids.decode(node);
        if attr.kind == NodeKind::File && attr.generation & 0xffff != node_gen {
            attr.generation = node_gen;
            if let Some(size) = self.open_size(node) {
                attr.size = size;
                attr.blocks = size.div_ceil(512);
            }
        }
        self.file_attr(&attr)
    }

    /// Answers a lookup or a call that made a name with the node's attributes.
    fn reply_entry(&self, reply: ReplyEntry, found: Result<Attr, FsError>) {
        match found {
            Ok(attr) => reply.entry(&TTL, &self.file_attr(&attr), Generation(0)),
            Err(e) => reply.error(e.errno()),
        }
    }

    /// The size of the bytes an open handle of `node` reads, if one is open.
    fn open_size(&self, node: u64) -> Option<u64> {
        let handles = self.handles.lock();
        let h = handles.values().find(|h| h.node == node)?;
        match &h.data {
            HandleData::File(f) => f.metadata().ok().map(|m| m.len()),
            HandleData::Reader(r) => Some(r.len()),
        }
    }

    fn ino(&self, node: INodeNo) -> u64 {
        self.ids.decode(node.0).0
    }

    fn handle(&self, fh: FileHandle) -> Option<Arc<Handle>> {
        self.handles.lock().get(&fh.0).cloned()
    }

    /// The plain file behind a handle open for writing, which is about to be written through
    /// RustDB (`wrote` is set); None for any other handle.
    fn file_to_write(&self, fh: FileHandle) -> Option<Arc<std::fs::File>> {
        let h = self.handle(fh)?;
        let (HandleData::File(f), true) = (&h.data, h.writable) else {
            return None;
        };
        h.wrote.store(true, Ordering::Relaxed);
        Some(f.clone())
    }

    /// Registers the handle and answers the kernel, with passthrough when possible.
    fn install(
        &self,
        node: u64,
        ino: u64,
        writable: bool,
        opened: Opened,
        attr_at_open: Option<Attr>,
    ) -> Installed {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let (data, backing) = match opened.data {
            OpenData::File(file) => {
                let backing = if self.passthrough_active() {
                    self.backing_for(node, &file)
                } else {
                    BackingPlan::None
                };
                (HandleData::File(Arc::new(file)), backing)
            }
            OpenData::Reader(reader) => (HandleData::Reader(reader), BackingPlan::None),
        };
        let passthrough = !matches!(backing, BackingPlan::None);
        let mut handles = self.handles.lock();
        if let Some(attr) = attr_at_open {
            self.open_attrs.lock().insert(ino, attr);
        }
        handles.insert(
            fh,
            Arc::new(Handle {
                ino,
                node,
                data,
                writable,
                wrote: AtomicBool::new(false),
                passthrough,
            }),
        );
        Installed { fh, backing }
    }

    fn backing_for(&self, node: u64, file: &std::fs::File) -> BackingPlan {
        let backings = self.backings.lock();
        match backings.get(&node) {
            Some(b) => BackingPlan::Existing(b.id.clone()),
            None => BackingPlan::New(file.try_clone().ok()),
        }
    }

    fn remember_backing(&self, node: u64, id: Arc<BackingId>) -> Arc<BackingId> {
        let mut backings = self.backings.lock();
        let entry = backings.entry(node).or_insert(Backing { id, opens: 0 });
        entry.opens += 1;
        entry.id.clone()
    }

    /// Before the name `name` in `parent` goes: refreshes the attributes kept for it if it is
    /// open (see `open_attrs`).
    fn keep_if_open(&self, parent: u64, name: &OsStr) {
        if self.handles.lock().is_empty() {
            return;
        }
        let Ok(attr) = self.backend.lookup(parent, name) else {
            return;
        };
        let handles = self.handles.lock();
        if handles.values().any(|h| h.ino == attr.ino) {
            self.open_attrs.lock().insert(attr.ino, attr);
        }
    }

    /// Attributes of an open file that has no name left (the backend no longer knows it).
    fn unlinked_attr(&self, node: u64) -> Option<FileAttr> {
        let mut attr = self
            .open_attrs
            .lock()
            .get(&self.ids.decode(node).0)?
            .clone();
        attr.nlink = 0;
        if let Some(size) = self.open_size(node) {
            attr.size = size;
            attr.blocks = size.div_ceil(512);
        }
        Some(self.file_attr(&attr))
    }

    fn forget_handle(&self, fh: u64) -> Option<Arc<Handle>> {
        let handle = {
            let mut handles = self.handles.lock();
            let handle = handles.remove(&fh)?;
            if !handles.values().any(|h| h.ino == handle.ino) {
                self.open_attrs.lock().remove(&handle.ino);
            }
            handle
        };
        if handle.passthrough {
            let mut backings = self.backings.lock();
            if let Some(b) = backings.get_mut(&handle.node) {
                b.opens = b.opens.saturating_sub(1);
                if b.opens == 0 {
                    backings.remove(&handle.node);
                }
            }
        }
        Some(handle)
    }

    /// Registers the handle and answers an open or a create, through passthrough when possible.
    fn answer_open<R: OpenAnswer>(
        &self,
        reply: R,
        node: u64,
        ino: u64,
        writable: bool,
        opened: Opened,
        attr_at_open: Option<Attr>,
    ) {
        let installed = self.install(node, ino, writable, opened, attr_at_open);
        let fh = FileHandle(installed.fh);
        match installed.backing {
            BackingPlan::None => reply.plain(fh),
            BackingPlan::Existing(id) => {
                let id = self.remember_backing(node, id);
                reply.passthrough(fh, &id)
            }
            BackingPlan::New(file) => match file.map(|f| reply.open_backing(&f)) {
                Some(Ok(id)) => {
                    let id = self.remember_backing(node, Arc::new(id));
                    reply.passthrough(fh, &id)
                }
                other => {
                    if let Some(Err(e)) = other {
                        warn!(ino, error = %e, "passthrough registration failed; serving reads");
                    }
                    self.demote(installed.fh);
                    reply.plain(fh)
                }
            },
        }
    }

    /// A handle that could not get a backing id is served by reads instead.
    fn demote(&self, fh: u64) {
        let mut handles = self.handles.lock();
        if let Some(h) = handles.get(&fh) {
            let h = Handle {
                ino: h.ino,
                node: h.node,
                data: match &h.data {
                    HandleData::File(f) => HandleData::File(f.clone()),
                    HandleData::Reader(r) => HandleData::Reader(r.clone()),
                },
                writable: h.writable,
                wrote: AtomicBool::new(h.wrote.load(Ordering::Relaxed)),
                passthrough: false,
            };
            handles.insert(fh, Arc::new(h));
        }
    }
}

struct Installed {
    fh: u64,
    backing: BackingPlan,
}

enum BackingPlan {
    None,
    Existing(Arc<BackingId>),
    New(Option<std::fs::File>),
}

/// `open` and `create` answer alike: plainly (served by reads) or through a backing file.
trait OpenAnswer {
    fn open_backing(&self, file: &std::fs::File) -> std::io::Result<BackingId>;
    fn plain(self, fh: FileHandle);
    fn passthrough(self, fh: FileHandle, id: &BackingId);
}

impl OpenAnswer for ReplyOpen {
    fn open_backing(&self, file: &std::fs::File) -> std::io::Result<BackingId> {
        ReplyOpen::open_backing(self, file)
    }
    fn plain(self, fh: FileHandle) {
        self.opened(fh, FopenFlags::FOPEN_KEEP_CACHE)
    }
    fn passthrough(self, fh: FileHandle, id: &BackingId) {
        self.opened_passthrough(fh, FopenFlags::empty(), id)
    }
}

struct Created {
    reply: ReplyCreate,
    attr: FileAttr,
}

impl OpenAnswer for Created {
    fn open_backing(&self, file: &std::fs::File) -> std::io::Result<BackingId> {
        self.reply.open_backing(file)
    }
    fn plain(self, fh: FileHandle) {
        self.reply.created(
            &TTL,
            &self.attr,
            Generation(0),
            fh,
            FopenFlags::FOPEN_KEEP_CACHE,
        )
    }
    fn passthrough(self, fh: FileHandle, id: &BackingId) {
        self.reply
            .created_passthrough(&TTL, &self.attr, Generation(0), fh, FopenFlags::empty(), id)
    }
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::Socket => FileType::Socket,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
    }
}

/// The node kind of a `mknod` mode (its `S_IFMT` bits); None for kinds mknod does not make.
fn mknod_kind(mode: u32) -> Option<NodeKind> {
    match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Some(NodeKind::File),
        libc::S_IFIFO => Some(NodeKind::Fifo),
        libc::S_IFSOCK => Some(NodeKind::Socket),
        libc::S_IFCHR => Some(NodeKind::CharDevice),
        libc::S_IFBLK => Some(NodeKind::BlockDevice),
        _ => None,
    }
}

fn accessor(req: &Request) -> Accessor {
    let pid = req.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string());
    Accessor {
        pid,
        uid: req.uid(),
        gid: req.gid(),
        comm,
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(at) => SetTime::At(at),
    })
}

fn open_mode(flags: i32) -> OpenMode {
    let acc = flags & libc::O_ACCMODE;
    OpenMode {
        write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
        truncate: flags & libc::O_TRUNC != 0,
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(FsError::Range.errno());
    } else {
        reply.data(value);
    }
}

impl<B: Backend> Filesystem for RustFs<B> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.passthrough_wanted {
            let ok = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(2).is_ok();
            self.passthrough.store(ok, Ordering::Relaxed);
        }
        info!(
            passthrough = self.passthrough_active(),
            "fuse session initialised; data served {}",
            if self.passthrough_active() {
                "through kernel passthrough"
            } else {
                "by reads"
            }
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.backend.lookup(self.ino(parent), name);
        debug!(
            parent = parent.0,
            ?name,
            generation = found.as_ref().ok().map(|a| a.generation),
            "lookup"
        );
        self.reply_entry(reply, found);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.backend.getattr(self.ino(ino)) {
            Ok(attr) => reply.attr(&TTL, &self.node_attr(ino.0, attr)),
            Err(FsError::NotFound) => match self.unlinked_attr(ino.0) {
                Some(attr) => reply.attr(&Duration::ZERO, &attr),
                None => reply.error(FsError::NotFound.node_errno()),
            },
            Err(e) => reply.error(e.node_errno()),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
        };
        if size.is_some() {
            if let Some(h) = fh.and_then(|fh| self.handle(fh)) {
                h.wrote.store(true, Ordering::Relaxed);
            }
        }
        match self.backend.setattr(self.ino(ino), &changes) {
            Ok(attr) => reply.attr(&TTL, &self.node_attr(ino.0, attr)),
            Err(e) => {
                debug!(node = ino.0, error = %e, "setattr refused");
                reply.error(e.node_errno())
            }
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.backend.readlink(self.ino(ino)) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e.node_errno()),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let made = self
            .backend
            .mkdir(self.ino(parent), name, mode & !umask, &accessor(req));
        self.reply_entry(reply, made);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(kind) = mknod_kind(mode) else {
            reply.error(FsError::Invalid("mknod file type".into()).errno());
            return;
        };
        let perm = mode & !umask & 0o7777;
        let made = self
            .backend
            .mknod(self.ino(parent), name, kind, perm, rdev, &accessor(req));
        self.reply_entry(reply, made);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let made = self
            .backend
            .link(self.ino(ino), self.ino(newparent), newname);
        self.reply_entry(reply, made);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.keep_if_open(self.ino(parent), name);
        match self.backend.unlink(self.ino(parent), name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.backend.rmdir(self.ino(parent), name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let made = self
            .backend
            .symlink(self.ino(parent), link_name, target, &accessor(req));
        self.reply_entry(reply, made);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let bits = flags.bits();
        if bits & !libc::RENAME_NOREPLACE != 0 {
            reply.error(FsError::Invalid("rename flags".into()).errno());
            return;
        }
        let noreplace = bits & libc::RENAME_NOREPLACE != 0;
        self.keep_if_open(self.ino(newparent), newname);
        match self.backend.rename(
            self.ino(parent),
            name,
            self.ino(newparent),
            newname,
            noreplace,
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (cat_ino, generation) = self.ids.decode(ino.0);
        let mode = open_mode(flags.0);
        let writable = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        debug!(node = ino.0, ino = cat_ino, generation, writable, "open");
        // Taken before the open: a purge may take the file's name and row right after it.
        let attr_at_open = self.backend.getattr(cat_ino).ok();
        match self.backend.open(cat_ino, generation, mode, &accessor(req)) {
            Ok(opened) => {
                if writable && matches!(opened.data, OpenData::Reader(_)) {
                    self.backend.release(cat_ino, true, false);
                    let e = std::io::Error::other("writers are given plain files");
                    reply.error(FsError::Io(e).errno());
                    return;
                }
                self.answer_open(reply, ino.0, cat_ino, writable, opened, attr_at_open)
            }
            Err(e) => {
                debug!(ino = cat_ino, error = %e, "open refused");
                reply.error(e.node_errno())
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(h) = self.handle(fh) else {
            reply.error(FsError::BadHandle.errno());
            return;
        };
        let mut buf = vec![0u8; size as usize];
        let mut filled = 0usize;
        while filled < buf.len() {
            let n = match &h.data {
                HandleData::File(f) => f.read_at(&mut buf[filled..], offset + filled as u64),
                HandleData::Reader(r) => r.read_at(offset + filled as u64, &mut buf[filled..]),
            };
            match n {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    reply.error(FsError::Io(e).errno());
                    return;
                }
            }
        }
        reply.data(&buf[..filled]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(f) = self.file_to_write(fh) else {
            reply.error(FsError::BadHandle.errno());
            return;
        };
        match f.write_all_at(data, offset) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(FsError::Io(e).errno()),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let Some(f) = self.file_to_write(fh) else {
            reply.error(FsError::BadHandle.errno());
            return;
        };
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor belongs to `f`, which the handle keeps open during the call.
        let rc = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                mode,
                offset as libc::off_t,
                length as libc::off_t,
            )
        };
        if rc == 0 {
            reply.ok();
        } else {
            reply.error(FsError::Io(std::io::Error::last_os_error()).errno());
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) waits for flush (release comes later, asynchronously, once the last
        // descriptor of the open file is gone): written data is recorded before close returns.
        // Every close of a duplicate flushes too, so the handle stays a writer until release.
        if let Some(h) = self.handle(fh) {
            if h.writable {
                // `wrote` counts writes through RustDB since the last flush.
                self.backend
                    .flush(h.ino, h.wrote.swap(false, Ordering::AcqRel));
            }
        }
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(h) = self.forget_handle(fh.0) {
            debug!(ino = h.ino, writable = h.writable, "release");
            let wrote = h.wrote.load(Ordering::Acquire);
            self.backend.release(h.ino, h.writable, wrote);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some(h) = self.handle(fh) else {
            reply.error(FsError::BadHandle.errno());
            return;
        };
        let result = match &h.data {
            HandleData::File(f) if datasync => f.sync_data(),
            HandleData::File(f) => f.sync_all(),
            HandleData::Reader(_) => Ok(()),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(FsError::Io(e).errno()),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dir = self.ino(ino);
        let entries = match self.backend.readdir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                reply.error(e.errno());
                return;
            }
        };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (ino.0, FileType::Directory, OsStr::new("..")),
        ];
        let all = dots.into_iter().chain(entries.iter().map(|e| {
            (
                self.ids.encode(e.ino, e.generation),
                file_type(e.kind),
                e.name.as_os_str(),
            )
        }));
        for (i, (node, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(node), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ds: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.backend.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = if flags & libc::XATTR_CREATE != 0 {
            XattrMode::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrMode::Replace
        } else {
            XattrMode::Any
        };
        match self.backend.setxattr(self.ino(ino), name, value, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.node_errno()),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.backend.getxattr(self.ino(ino), name) {
            Ok(value) => xattr_reply(reply, size, &value),
            Err(e) => reply.error(e.node_errno()),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.backend.listxattr(self.ino(ino)) {
            Ok(names) => {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(n.as_encoded_bytes());
                    buf.push(0);
                }
                xattr_reply(reply, size, &buf)
            }
            Err(e) => reply.error(e.node_errno()),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.backend.removexattr(self.ino(ino), name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.node_errno()),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // No device controls here; tools probe with ioctls (isatty and the like) all the time.
        reply.error(FsError::NoIoctl.errno());
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (default_permissions).
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self
            .backend
            .create(self.ino(parent), name, mode & !umask, &accessor(req))
        {
            Ok((attr, opened)) => {
                let fattr = self.file_attr(&attr);
                // create registers a writer in the backend whatever the access mode.
                let _ = flags;
                self.answer_open(
                    Created { reply, attr: fattr },
                    fattr.ino.0,
                    attr.ino,
                    true,
                    opened,
                    Some(attr),
                )
            }
            Err(e) => reply.error(e.errno()),
        }
    }
}
