//! Mounting: checks that give one clear line when the machine is not ready, and the session.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config, MountOption, Notifier, SessionACL};
use tracing::warn;

use crate::nodeid::NodeIds;
use crate::{Backend, Ino, RustFs};

#[derive(Debug, Clone)]
pub struct MountConfig {
    pub mountpoint: PathBuf,
    /// Ask the kernel for FUSE passthrough (it also needs root and Linux 6.9+).
    pub passthrough: bool,
    /// Let other users use the mount (the kernel still checks permissions).
    pub allow_other: bool,
    pub threads: usize,
}

impl Default for MountConfig {
    fn default() -> Self {
        MountConfig {
            mountpoint: PathBuf::from("mnt"),
            passthrough: true,
            allow_other: true,
            threads: 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("/dev/fuse is missing: load the fuse module (modprobe fuse) or, in a container, run with --device /dev/fuse --cap-add SYS_ADMIN")]
    NoDevice,
    #[error("fusermount3 is missing and RustDB is not running as root: install fuse3 (apt-get install -y fuse3) or run as root")]
    NoFusermount,
    #[error("mount point {0} is busy: something is already mounted there; unmount it first (fusermount3 -u {0})")]
    Busy(String),
    #[error("mount point {0} has a dead FUSE mount (transport endpoint is not connected): run fusermount3 -u {0} (or umount -l {0}) and start again")]
    Stale(String),
    #[error("nothing of RustDB's is mounted at {0}")]
    NotMounted(String),
    #[error("the mount at {path} does not answer")]
    NotAnswering {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create mount point {path}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("mount point {0} exists and is not a directory")]
    NotDir(String),
    #[error("mounting {path} failed")]
    Mount {
        path: String,
        source: std::io::Error,
    },
    #[error("mounting {path} was not permitted: in a container, run with --cap-add SYS_ADMIN (and --security-opt apparmor=unconfined where AppArmor runs); as another user than root, check /etc/fuse.conf and the mode of /dev/fuse")]
    NotPermitted {
        path: String,
        source: std::io::Error,
    },
}

impl MountError {
    /// A failed mount; a refusal (EPERM, EACCES, or fusermount3 saying so) gets what to do.
    fn failed(path: &str, source: std::io::Error) -> MountError {
        let refused = matches!(source.raw_os_error(), Some(libc::EPERM | libc::EACCES))
            || source.to_string().contains("Operation not permitted")
            || source.to_string().contains("Permission denied");
        let path = path.to_owned();
        if refused {
            MountError::NotPermitted { path, source }
        } else {
            MountError::Mount { path, source }
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Checks the machine and the mount point; creates the mount point when it is missing.
///
/// A mount point that is itself a mount of another kind (a container's bind mount, a tmpfs) is
/// mounted over. A live FUSE mount there is refused. A dead RustDB mount there (what a killed
/// `rustdb up` leaves) is detached first, so a restart after a crash needs no operator.
pub fn preflight(mountpoint: &Path) -> Result<(), MountError> {
    let shown = mountpoint.display().to_string();
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::NoDevice);
    }
    if !is_root() && !on_path("fusermount3") && !on_path("fusermount") {
        return Err(MountError::NoFusermount);
    }
    // A FUSE mount already there: a live one is refused; a dead one of RustDB's is detached (a
    // few times over, should crashes have stacked them); anyone else's dead one is reported.
    for _ in 0..8 {
        let Some(top) = mount_at(mountpoint).filter(MountEntry::is_fuse) else {
            break;
        };
        match probe(mountpoint) {
            Ok(()) => return Err(MountError::Busy(shown)),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) && top.is_rustdb() => {
                warn!(mountpoint = %shown, "detaching the dead RustDB mount a stopped process left");
                detach(mountpoint);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                return Err(MountError::Stale(shown))
            }
            Err(_) => break,
        }
    }
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Err(MountError::Stale(shown)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(mountpoint).map_err(|source| MountError::Create {
                path: shown.clone(),
                source,
            })?;
        }
        Err(source) => {
            return Err(MountError::Create {
                path: shown,
                source,
            })
        }
        Ok(m) if !m.is_dir() => return Err(MountError::NotDir(shown)),
        Ok(_) => {}
    }
    if mount_at(mountpoint).is_some_and(|m| m.is_fuse()) {
        return Err(match probe(mountpoint) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => MountError::Stale(shown),
            _ => MountError::Busy(shown),
        });
    }
    Ok(())
}

/// Ok when RustDB's mount is on top at `mountpoint` and its server answers.
pub fn check_live(mountpoint: &Path) -> Result<(), MountError> {
    let shown = mountpoint.display().to_string();
    if !mount_at(mountpoint).is_some_and(|m| m.is_rustdb()) {
        return Err(MountError::NotMounted(shown));
    }
    match probe(mountpoint) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(MountError::Stale(shown)),
        Err(source) => Err(MountError::NotAnswering {
            path: shown,
            source,
        }),
    }
}

/// The name RustDB's mounts carry as their source (`MountOption::FSName`).
const FS_NAME: &str = "rustdb";

/// Asks the filesystem at `path` itself (statfs always reaches a FUSE server; a `stat` may be
/// answered from the kernel's attribute cache even after the server died).
fn probe(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c_path is NUL-terminated and outlives the call; buf is written by the kernel.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut buf) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What `/proc/self/mountinfo` says of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// RustDB's: `fuse` when mounted by root directly, `fuse.rustdb` through fusermount3.
    pub fs_type: String,
    pub source: String,
}

impl MountEntry {
    pub fn is_fuse(&self) -> bool {
        self.fs_type == "fuse" || self.fs_type == "fuseblk" || self.fs_type.starts_with("fuse.")
    }

    pub fn is_rustdb(&self) -> bool {
        self.is_fuse() && self.source == FS_NAME
    }
}

/// The topmost mount exactly at `path`, if there is one (a dead one too).
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    // The kernel lists a mount under its resolved path. A dead mount cannot be resolved itself,
    // so then only its parent is.
    let resolved = match std::fs::canonicalize(path) {
        Ok(resolved) => resolved,
        Err(_) => {
            let absolute = std::path::absolute(path).ok()?;
            match (absolute.parent(), absolute.file_name()) {
                (Some(parent), Some(name)) => std::fs::canonicalize(parent).ok()?.join(name),
                _ => absolute,
            }
        }
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    top_mount_in(&info, &resolved.to_string_lossy())
}

/// Lines are in mount order, so the last one for `path` is the mount on top.
fn top_mount_in(mountinfo: &str, path: &str) -> Option<MountEntry> {
    let wanted = path.replace(' ', "\\040");
    mountinfo
        .lines()
        .rev()
        .filter(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
        .find_map(|l| {
            let mut after = l.split(" - ").nth(1)?.split(' ');
            Some(MountEntry {
                fs_type: after.next()?.to_owned(),
                source: after.next()?.to_owned(),
            })
        })
}

/// Detaches the mount at `path` (lazily: nothing can be using a dead mount anyway).
fn detach(path: &Path) {
    if is_root() {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
        if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } != 0 {
            warn!(error = %std::io::Error::last_os_error(), "detaching the dead mount failed");
        }
    } else {
        let program = if on_path("fusermount3") {
            "fusermount3"
        } else {
            "fusermount"
        };
        match std::process::Command::new(program)
            .arg("-uz")
            .arg(path)
            .status()
        {
            Ok(status) if status.success() => {}
            Ok(status) => warn!(%status, "{program} -uz failed on the dead mount"),
            Err(e) => warn!(error = %e, "cannot run {program}"),
        }
    }
}

/// A live mount. Dropping it (or calling `unmount`) unmounts.
pub struct MountHandle {
    session: Option<fuser::BackgroundSession>,
    invalidator: Invalidator,
    pub passthrough: bool,
    pub mountpoint: PathBuf,
}

/// Drops kernel caches for names whose artifact changed behind the kernel's back.
#[derive(Clone)]
pub struct Invalidator {
    notifier: Notifier,
    ids: NodeIds,
}

impl MountHandle {
    pub fn invalidator(&self) -> Invalidator {
        self.invalidator.clone()
    }

    pub fn unmount(mut self) -> std::io::Result<()> {
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Invalidator {
    /// Tells the kernel that `name` in `parent` now names another artifact (or nothing):
    /// its cached entry is dropped, so the next lookup sees the current generation.
    pub fn invalidate_entry(&self, parent: Ino, name: &std::ffi::OsStr) {
        let node = fuser::INodeNo(self.ids.encode(parent, 0));
        if let Err(e) = self.notifier.inval_entry(node, name) {
            // ENOENT just means the kernel had nothing cached.
            if e.raw_os_error() != Some(libc::ENOENT) {
                warn!(parent, error = %e, "entry invalidation failed");
            }
        }
    }
}

/// Mounts `backend` at `config.mountpoint` and serves it on background threads.
pub fn mount<B: Backend>(backend: Arc<B>, config: &MountConfig) -> Result<MountHandle, MountError> {
    preflight(&config.mountpoint)?;
    let fs = RustFs::new(backend, config.passthrough && is_root());
    let ids = fs.node_ids();
    let mut fuse_config = Config::default();
    fuse_config.mount_options = vec![
        MountOption::FSName("rustdb".into()),
        MountOption::Subtype("rustdb".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    fuse_config.acl = if config.allow_other && is_root() {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    fuse_config.n_threads = Some(config.threads.max(1));
    let shown = config.mountpoint.display().to_string();
    let session = fuser::Session::new(fs, &config.mountpoint, &fuse_config)
        .map_err(|source| MountError::failed(&shown, source))?;
    let notifier = session.notifier();
    let passthrough = config.passthrough && is_root();
    let session = session
        .spawn()
        .map_err(|source| MountError::failed(&shown, source))?;
    Ok(MountHandle {
        session: Some(session),
        invalidator: Invalidator { notifier, ids },
        passthrough,
        mountpoint: config.mountpoint.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
43 27 254:0 /srv/m /srv/m rw,relatime shared:5 - ext4 /dev/vda rw
44 43 0:39 / /srv/m rw,nosuid,nodev,relatime shared:6 - fuse rustdb rw,user_id=0,group_id=0
45 27 0:40 / /home/u/my\\040mnt rw - fuse.rustdb rustdb rw,user_id=1000,group_id=1000
46 27 0:41 / /media/cloud rw - fuse.sshfs host:/ rw,user_id=0,group_id=0
";

    #[test]
    fn the_mount_on_top_is_the_last_line_for_a_path() {
        let top = top_mount_in(MOUNTINFO, "/srv/m").unwrap();
        assert_eq!(top.fs_type, "fuse");
        assert!(top.is_rustdb());
        assert_eq!(top_mount_in(MOUNTINFO, "/srv"), None);
    }

    #[test]
    fn mounts_of_rustdb_and_of_others_are_told_apart() {
        let spaced = top_mount_in(MOUNTINFO, "/home/u/my mnt").unwrap();
        assert!(
            spaced.is_rustdb(),
            "fusermount3's fuse.rustdb, with an escaped space"
        );
        let sshfs = top_mount_in(MOUNTINFO, "/media/cloud").unwrap();
        assert!(sshfs.is_fuse() && !sshfs.is_rustdb());
        let root = top_mount_in(MOUNTINFO, "/").unwrap();
        assert!(!root.is_fuse());
    }
}
