//! Backing files, named by object id and generation:
//! `objects/<id>.<gen>` (the artifact), `originals/<id>.<gen>` (a kept original), `tmp/` (work
//! in progress). A file is published by fsync, rename into place and fsync of the directory;
//! only then may the catalog point at it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};

use nix::errno::Errno;

use crate::faults::fault_point;
use nix::fcntl::{Flock, FlockArg};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    seq: AtomicU64,
    /// An exclusive lock on `<root>/lock`, held while the store is open: one process at a time.
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage directory {path} is not writable: choose another with --storage-dir or RUSTDB_STORAGE_DIR, or fix its permissions")]
    NotWritable { path: String, source: io::Error },
    #[error("storage directory {path} is in use by another rustdb process{holder}: stop it first, or choose another directory")]
    InUse { path: String, holder: String },
}

/// Where the catalog of the storage directory `root` is (also before any `Store` is opened,
/// as fsck checks for it).
pub fn catalog_path_in(root: &Path) -> PathBuf {
    root.join("catalog.db")
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub temporary: usize,
    pub unreferenced: usize,
    pub originals_moved: usize,
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let (id, generation) = name.split_once('.')?;
    Some((id.parse().ok()?, generation.parse().ok()?))
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let not_writable = |source| StoreError::NotWritable {
            path: root.display().to_string(),
            source,
        };
        for sub in ["objects", "originals", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(not_writable)?;
        }
        let probe = root.join("tmp").join(".write-probe");
        File::create(&probe)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(not_writable)?;
        let lock_path = root.join("lock");
        let lock_file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(not_writable)?;
        let mut lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                let pid = fs::read_to_string(&lock_path).unwrap_or_default();
                let pid = pid.trim();
                return Err(StoreError::InUse {
                    path: root.display().to_string(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err((_, e)) => return Err(not_writable(e.into())),
        };
        // The holder's pid, for the message another process shows.
        lock.set_len(0)
            .and_then(|_| lock.write_all(std::process::id().to_string().as_bytes()))
            .map_err(not_writable)?;
        Ok(Store {
            root: root.to_path_buf(),
            seq: AtomicU64::new(0),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn catalog_path(&self) -> PathBuf {
        catalog_path_in(&self.root)
    }

    pub fn artifact(&self, id: u64, generation: u64) -> PathBuf {
        self.root.join("objects").join(format!("{id}.{generation}"))
    }

    pub fn original(&self, id: u64, generation: u64) -> PathBuf {
        self.root
            .join("originals")
            .join(format!("{id}.{generation}"))
    }

    /// A fresh path under `tmp/`.
    pub fn temp(&self, label: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{label}.{}.{n}", std::process::id()))
    }

    /// fsync `tmp`, rename it to `dest`, fsync the directory. After this the file survives a crash.
    pub fn publish(&self, tmp: &Path, dest: &Path) -> io::Result<()> {
        File::open(tmp)?.sync_all()?;
        fault_point!("publish.after_fsync");
        fs::rename(tmp, dest)?;
        sync_dir(dest.parent().unwrap_or(&self.root))?;
        fault_point!("publish.after_rename");
        Ok(())
    }

    /// Moves an artifact that becomes the kept original (same file system: a rename).
    pub fn keep_as_original(&self, id: u64, generation: u64) -> io::Result<()> {
        let dest = self.original(id, generation);
        fs::rename(self.artifact(id, generation), &dest)?;
        sync_dir(dest.parent().unwrap_or(&self.root))
    }

    pub fn remove(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove backing file");
            }
        }
    }

    /// Startup pass: empties `tmp/`, finishes a half-done move of a kept original, and removes
    /// every backing file no live row refers to.
    pub fn sweep(&self, refs: &[(u64, u64, Option<u64>)]) -> io::Result<Swept> {
        let mut swept = Swept::default();
        for entry in fs::read_dir(self.root.join("tmp"))? {
            fs::remove_file(entry?.path())?;
            swept.temporary += 1;
        }
        let mut artifacts = HashSet::new();
        let mut originals = HashSet::new();
        for &(id, generation, original) in refs {
            artifacts.insert((id, generation));
            if let Some(og) = original {
                originals.insert((id, og));
                // The catalog committed "kept" before the rename into originals/ happened.
                let kept = self.original(id, og);
                let stray = self.artifact(id, og);
                if !kept.exists() && stray.exists() && og != generation {
                    self.keep_as_original(id, og)?;
                    swept.originals_moved += 1;
                }
            }
        }
        for (dir, keep) in [("objects", &artifacts), ("originals", &originals)] {
            for entry in fs::read_dir(self.root.join(dir))? {
                let entry = entry?;
                let name = entry.file_name();
                let referenced = name
                    .to_str()
                    .and_then(parse_name)
                    .is_some_and(|key| keep.contains(&key));
                if !referenced {
                    fs::remove_file(entry.path())?;
                    swept.unreferenced += 1;
                }
            }
        }
        sync_dir(&self.root.join("objects"))?;
        sync_dir(&self.root.join("originals"))?;
        Ok(swept)
    }

    /// Every backing file on disk, for checks: (directory name, id, generation).
    pub fn files(&self) -> io::Result<Vec<(String, u64, u64)>> {
        let mut out = Vec::new();
        for dir in ["objects", "originals"] {
            for entry in fs::read_dir(self.root.join(dir))? {
                if let Some(key) = entry?.file_name().to_str().and_then(parse_name) {
                    out.push((dir.to_string(), key.0, key.1));
                }
            }
        }
        Ok(out)
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_keeps_referenced_and_removes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (id, g) in [(1, 1), (1, 2), (2, 5)] {
            fs::write(store.artifact(id, g), b"x").unwrap();
        }
        fs::write(store.original(2, 4), b"o").unwrap();
        fs::write(store.original(3, 1), b"o").unwrap();
        fs::write(store.temp("w"), b"t").unwrap();
        // Object 4 committed a kept original that was never moved.
        fs::write(store.artifact(4, 1), b"orig").unwrap();
        fs::write(store.artifact(4, 2), b"new").unwrap();
        let swept = store
            .sweep(&[(1, 2, None), (2, 5, Some(4)), (4, 2, Some(1))])
            .unwrap();
        assert_eq!(swept.temporary, 1);
        assert_eq!(swept.originals_moved, 1);
        assert_eq!(swept.unreferenced, 2);
        assert!(!store.artifact(1, 1).exists());
        assert!(store.artifact(1, 2).exists());
        assert!(store.original(2, 4).exists());
        assert!(!store.original(3, 1).exists());
        assert_eq!(fs::read(store.original(4, 1)).unwrap(), b"orig");
    }
}
