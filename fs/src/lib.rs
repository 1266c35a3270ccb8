//! rustdb-fs: the FUSE adapter. It translates kernel requests into calls on [`Backend`] and back;
//! it holds no SQL and no decay policy. errno is chosen in exactly one place (`error.rs`).
mod error;
mod fuse;
mod mount;
mod nodeid;

pub use error::FsError;
pub use fuse::RustFs;
pub use mount::{
    check_live, mount, mount_at, preflight, Invalidator, MountConfig, MountEntry, MountError,
    MountHandle,
};

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// A catalog inode number, stable for the life of a file.
pub type Ino = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// Attributes of one node as the backend sees them.
#[derive(Debug, Clone)]
pub struct Attr {
    pub ino: Ino,
    /// Artifact generation for files (0 for directories and symlinks). Each generation is served
    /// under its own kernel node, so a rewrite never swaps the backing file under an open handle.
    pub generation: u64,
    pub kind: NodeKind,
    pub size: u64,
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number of a device node, else 0.
    pub rdev: u32,
}

#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: Ino,
    pub generation: u64,
    pub kind: NodeKind,
    pub name: OsString,
}

/// A time to set with `utimens`.
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    Now,
    At(SystemTime),
}

#[derive(Debug, Clone, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

/// Who is opening: used by the backend to decide whether an open counts as an access.
#[derive(Debug, Clone)]
pub struct Accessor {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// The process name (`/proc/<pid>/comm`), when it could be read.
    pub comm: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
}

/// Random-access bytes that are not a plain file (for example a compressed artifact).
pub trait ReadAt: Send + Sync {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an open hands to the adapter.
pub enum OpenData {
    /// A plain backing file, opened read-write so that every handle of a generation can share it
    /// (passthrough requires one backing file per kernel inode).
    File(std::fs::File),
    /// Decoded bytes served by reads (never passthrough). Always read-only.
    Reader(Arc<dyn ReadAt>),
}

pub struct Opened {
    pub generation: u64,
    pub data: OpenData,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// How an `setxattr` call may treat an existing attribute (XATTR_CREATE / XATTR_REPLACE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrMode {
    Any,
    Create,
    Replace,
}

/// What the adapter needs from the engine. Every method is synchronous and may block briefly.
pub trait Backend: Send + Sync + 'static {
    /// The tenant root directory, served as the mount's root.
    fn root(&self) -> Ino;
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, FsError>;
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError>;
    fn setattr(&self, ino: Ino, changes: &SetAttr) -> Result<Attr, FsError>;
    fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, FsError>;
    fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32, who: &Accessor) -> Result<Attr, FsError>;
    fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &Path,
        who: &Accessor,
    ) -> Result<Attr, FsError>;
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError>;
    /// Makes a regular file (empty, not left open), FIFO, socket or device node.
    fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        kind: NodeKind,
        mode: u32,
        rdev: u32,
        who: &Accessor,
    ) -> Result<Attr, FsError>;
    /// A further name (hard link) for `ino`.
    fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> Result<Attr, FsError>;
    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<(), FsError>;
    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<(), FsError>;
    /// `noreplace` is RENAME_NOREPLACE; other flags are refused by the adapter.
    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Result<(), FsError>;
    /// Creates and opens for writing. The returned handle must be released with `release`.
    fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        who: &Accessor,
    ) -> Result<(Attr, Opened), FsError>;
    /// Opens generation `generation` of `ino`. When that generation is no longer current, answers
    /// `FsError::Stale` so that the kernel looks the name up again and opens the current one.
    fn open(
        &self,
        ino: Ino,
        generation: u64,
        mode: OpenMode,
        who: &Accessor,
    ) -> Result<Opened, FsError>;
    /// A writer's descriptor was closed (each close of a duplicate too): record what the file
    /// holds now. `wrote` says whether writes went through RustDB (passthrough writes do not).
    fn flush(&self, ino: Ino, wrote: bool);
    /// Ends one open, once the last descriptor of it is gone. `writable` says how it was
    /// opened, `wrote` whether writes went through RustDB.
    fn release(&self, ino: Ino, writable: bool, wrote: bool);
    fn statfs(&self) -> Result<StatFs, FsError>;
    fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>, FsError>;
    fn setxattr(
        &self,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        mode: XattrMode,
    ) -> Result<(), FsError>;
    fn listxattr(&self, ino: Ino) -> Result<Vec<OsString>, FsError>;
    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<(), FsError>;
}
