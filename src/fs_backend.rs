//! The engine seen through the FUSE adapter's `Backend` trait, for one tenant.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustdb_fs::{
    Accessor, Attr, Backend, DirEntry, FsError, Ino, NodeKind, OpenData, OpenMode, Opened, ReadAt,
    SetAttr, SetTime, StatFs, XattrMode,
};

use crate::catalog::NodeType;
use crate::engine::{Engine, EngineError, NodeView, OpenedArtifact, SetAttrs, TimeSet};
use crate::transform::binary::ChunkedReader;

pub struct MountBackend {
    engine: Arc<Engine>,
    root: u64,
}

impl MountBackend {
    pub fn new(engine: Arc<Engine>, tenant: &str) -> Result<Self, EngineError> {
        let root = engine.tenant_root(tenant)?;
        Ok(MountBackend { engine, root })
    }
}

/// The one place engine errors become filesystem errors.
fn fs_error(e: EngineError) -> FsError {
    match e {
        e if e.is_no_space() => FsError::NoSpace,
        EngineError::NotFound(_) | EngineError::NoEntry => FsError::NotFound,
        EngineError::Exists => FsError::Exists,
        EngineError::NotDir => FsError::NotDir,
        EngineError::IsDir => FsError::IsDir,
        EngineError::NotEmpty => FsError::NotEmpty,
        EngineError::NameTooLong => FsError::NameTooLong,
        EngineError::Invalid(m) => FsError::Invalid(m),
        EngineError::NotPermitted(m) => FsError::NotPermitted(m),
        EngineError::Stale => FsError::Stale,
        EngineError::NoAttr => FsError::NoAttr,
        EngineError::Unsupported => FsError::NotSupported,
        EngineError::Conflict(m) => FsError::Busy(m),
        EngineError::Io(e) => FsError::Io(e),
        other => {
            tracing::error!(error = %other, "engine failure behind a filesystem call");
            FsError::Io(std::io::Error::other(other.to_string()))
        }
    }
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH
    }
}

fn attr(v: &NodeView) -> Attr {
    let kind = match v.node.node_type {
        NodeType::File => NodeKind::File,
        NodeType::Dir => NodeKind::Dir,
        NodeType::Symlink => NodeKind::Symlink,
        NodeType::Fifo => NodeKind::Fifo,
        NodeType::Socket => NodeKind::Socket,
        NodeType::CharDevice => NodeKind::CharDevice,
        NodeType::BlockDevice => NodeKind::BlockDevice,
    };
    let stored = match (&v.live, &v.object) {
        (Some(live), _) => live.size,
        (None, Some(o)) => o.stored_size,
        _ => v.size(),
    };
    Attr {
        ino: v.node.ino,
        generation: v.generation(),
        kind,
        size: v.size(),
        blocks: stored.div_ceil(512),
        atime: time(v.node.atime_ns),
        mtime: time(v.mtime_ns()),
        ctime: time(v.ctime_ns()),
        crtime: time(v.node.crtime_ns),
        perm: (v.node.mode & 0o7777) as u16,
        nlink: v.nlink,
        uid: v.node.uid,
        gid: v.node.gid,
        rdev: v.node.rdev as u32,
    }
}

struct Chunked(Arc<ChunkedReader>);

impl ReadAt for Chunked {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read_at(offset, buf)
    }
    fn len(&self) -> u64 {
        self.0.len()
    }
}

fn opened(generation: u64, a: OpenedArtifact) -> Opened {
    Opened {
        generation,
        data: match a {
            OpenedArtifact::File(f) => OpenData::File(f),
            OpenedArtifact::Chunked(r) => OpenData::Reader(Arc::new(Chunked(r))),
        },
    }
}

fn time_set(t: Option<SetTime>) -> Option<TimeSet> {
    t.map(|t| match t {
        SetTime::Now => TimeSet::Now,
        SetTime::At(at) => TimeSet::AtNs(
            at.duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0),
        ),
    })
}

impl Backend for MountBackend {
    fn root(&self) -> Ino {
        self.root
    }

    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, FsError> {
        self.engine
            .lookup(parent, name.as_bytes())
            .map(|v| attr(&v))
            .map_err(fs_error)
    }

    fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        self.engine.getattr(ino).map(|v| attr(&v)).map_err(fs_error)
    }

    fn setattr(&self, ino: Ino, c: &SetAttr) -> Result<Attr, FsError> {
        let set = SetAttrs {
            mode: c.mode,
            uid: c.uid,
            gid: c.gid,
            size: c.size,
            atime: time_set(c.atime),
            mtime: time_set(c.mtime),
        };
        self.engine
            .setattr(ino, &set)
            .map(|v| attr(&v))
            .map_err(fs_error)
    }

    fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, FsError> {
        let children = self.engine.readdir(ino).map_err(fs_error)?;
        Ok(children
            .iter()
            .map(|v| {
                let a = attr(v);
                DirEntry {
                    ino: a.ino,
                    generation: a.generation,
                    kind: a.kind,
                    name: OsString::from_vec(v.node.name.clone()),
                }
            })
            .collect())
    }

    fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, who: &Accessor) -> Result<Attr, FsError> {
        self.engine
            .mkdir(parent, name.as_bytes(), mode, who.uid, who.gid)
            .map(|v| attr(&v))
            .map_err(fs_error)
    }

    fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &Path,
        who: &Accessor,
    ) -> Result<Attr, FsError> {
        self.engine
            .symlink(
                parent,
                name.as_bytes(),
                target.as_os_str().as_bytes(),
                who.uid,
                who.gid,
            )
            .map(|v| attr(&v))
            .map_err(fs_error)
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        self.engine.readlink(ino).map_err(fs_error)
    }

    fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        kind: NodeKind,
        mode: u32,
        rdev: u32,
        who: &Accessor,
    ) -> Result<Attr, FsError> {
        let node_type = match kind {
            NodeKind::File => NodeType::File,
            NodeKind::Fifo => NodeType::Fifo,
            NodeKind::Socket => NodeType::Socket,
            NodeKind::CharDevice => NodeType::CharDevice,
            NodeKind::BlockDevice => NodeType::BlockDevice,
            NodeKind::Dir | NodeKind::Symlink => {
                return Err(FsError::Invalid("mknod file type".into()))
            }
        };
        self.engine
            .mknod(
                parent,
                name.as_bytes(),
                node_type,
                mode,
                u64::from(rdev),
                who.uid,
                who.gid,
            )
            .map(|v| attr(&v))
            .map_err(fs_error)
    }

    fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Attr, FsError> {
        self.engine
            .link(ino, new_parent, new_name.as_bytes())
            .map(|v| attr(&v))
            .map_err(fs_error)
    }

    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.engine
            .unlink(parent, name.as_bytes())
            .map_err(fs_error)
    }

    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        self.engine.rmdir(parent, name.as_bytes()).map_err(fs_error)
    }

    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Result<(), FsError> {
        self.engine
            .rename(
                parent,
                name.as_bytes(),
                new_parent,
                new_name.as_bytes(),
                noreplace,
            )
            .map_err(fs_error)
    }

    fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        who: &Accessor,
    ) -> Result<(Attr, Opened), FsError> {
        let (view, file) = self
            .engine
            .create(parent, name.as_bytes(), mode, who.uid, who.gid)
            .map_err(fs_error)?;
        let a = attr(&view);
        let generation = a.generation;
        Ok((a, opened(generation, OpenedArtifact::File(file))))
    }

    fn open(
        &self,
        ino: Ino,
        generation: u64,
        mode: OpenMode,
        who: &Accessor,
    ) -> Result<Opened, FsError> {
        self.engine
            .open(
                ino,
                Some(generation),
                mode.write,
                mode.truncate,
                who.comm.as_deref(),
            )
            .map(|a| opened(generation, a))
            .map_err(fs_error)
    }

    fn release(&self, ino: Ino, writable: bool, wrote: bool) {
        self.engine.release(ino, writable, wrote)
    }

    fn flush(&self, ino: Ino, wrote: bool) {
        self.engine.flush_writer(ino, wrote)
    }

    fn statfs(&self) -> Result<StatFs, FsError> {
        let s = self.engine.statfs().map_err(fs_error)?;
        Ok(StatFs {
            blocks: s.blocks(),
            bfree: s.blocks_free(),
            bavail: s.blocks_available(),
            files: s.files(),
            ffree: s.files_free(),
            bsize: s.block_size() as u32,
            namelen: 255,
            frsize: s.fragment_size() as u32,
        })
    }

    fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>, FsError> {
        self.engine.getxattr(ino, name.as_bytes()).map_err(fs_error)
    }

    fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        mode: XattrMode,
    ) -> Result<(), FsError> {
        self.engine
            .setxattr(
                ino,
                name.as_bytes(),
                value,
                mode == XattrMode::Create,
                mode == XattrMode::Replace,
            )
            .map_err(fs_error)
    }

    fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>, FsError> {
        self.engine
            .listxattr(ino)
            .map(|names| names.into_iter().map(OsString::from_vec).collect())
            .map_err(fs_error)
    }

    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError> {
        self.engine
            .removexattr(ino, name.as_bytes())
            .map_err(fs_error)
    }
}
