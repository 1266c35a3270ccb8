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
pub fn preflight(mountpoint: &Path) -> Result<(), MountError> {
    let shown = mountpoint.display().to_string();
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::NoDevice);
    }
    if !is_root() && !on_path("fusermount3") && !on_path("fusermount") {
        return Err(MountError::NoFusermount);
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
    if is_mount_point(mountpoint) {
        return Err(MountError::Busy(shown));
    }
    Ok(())
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = canonical.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == wanted)
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
    let session = fuser::Session::new(fs, &config.mountpoint, &fuse_config).map_err(|source| {
        MountError::Mount {
            path: shown.clone(),
            source,
        }
    })?;
    let notifier = session.notifier();
    let passthrough = config.passthrough && is_root();
    let session = session.spawn().map_err(|source| MountError::Mount {
        path: shown,
        source,
    })?;
    Ok(MountHandle {
        session: Some(session),
        invalidator: Invalidator { notifier, ids },
        passthrough,
        mountpoint: config.mountpoint.clone(),
    })
}
