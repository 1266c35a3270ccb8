//! Differential test: the same random operation sequences applied to the mount (decay frozen: no
//! ticks run) and to a plain directory on the machine's own file system must give the same
//! results, errors (errno) included, and the same tree: names, types, bytes, link targets,
//! permission bits and link counts.
//!
//! The namespace is small on purpose (three directory names, five file names, two levels), so
//! operations collide often: renames over files and directories, removals of non-empty
//! directories, creations of names that exist, opens of what is missing.
//! `RUSTDB_DIFF_OPS` sets the operations per seed.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{figure, Instance, Rng};

const SEEDS: [u64; 4] = [11, 22, 33, 44];
const DIRS: [&str; 3] = ["d0", "d1", "d2"];
const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

/// One operation on a relative path (or two), applied the same way to both roots.
#[derive(Debug, Clone)]
enum Op {
    Create(String, Vec<u8>),
    CreateExcl(String),
    WriteAt(String, u64, Vec<u8>),
    Append(String, Vec<u8>),
    Truncate(String, u64),
    Read(String),
    ReadAt(String, u64, usize),
    Stat(String),
    Lstat(String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Rename(String, String),
    RenameNoReplace(String, String),
    Symlink(String, String),
    Readlink(String),
    Link(String, String),
    Chmod(String, u32),
    List(String),
    OpenDirForWriting(String),
}

/// A path of up to two levels in the small namespace.
fn path(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => rng.pick(&NAMES).to_string(),
        1 => rng.pick(&DIRS).to_string(),
        2 => format!("{}/{}", rng.pick(&DIRS), rng.pick(&NAMES)),
        _ => format!("{}/{}", rng.pick(&DIRS), rng.pick(&DIRS)),
    }
}

/// Mostly a path a file may be at; now and then any path, for the errors.
fn file_path(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => path(rng),
        1..=2 => rng.pick(&NAMES).to_string(),
        _ => format!("{}/{}", rng.pick(&DIRS), rng.pick(&NAMES)),
    }
}

/// Mostly a path a directory may be at; now and then any path.
fn dir_path(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => path(rng),
        1..=4 => rng.pick(&DIRS).to_string(),
        _ => format!("{}/{}", rng.pick(&DIRS), rng.pick(&DIRS)),
    }
}

fn op(rng: &mut Rng) -> Op {
    let (dir_op, any) = (rng.below(100), path(rng));
    let p = if matches!(dir_op, 60..=71 | 93..=99) {
        dir_path(rng)
    } else if matches!(dir_op, 72..=81) {
        any
    } else {
        file_path(rng)
    };
    match dir_op {
        0..=14 => Op::Create(p, rng.bytes(20_000)),
        15..=17 => Op::CreateExcl(p),
        18..=25 => {
            let at = rng.below(30_000);
            Op::WriteAt(p, at, rng.bytes(8_000))
        }
        26..=30 => Op::Append(p, rng.bytes(4_000)),
        31..=34 => Op::Truncate(p, rng.below(25_000)),
        35..=42 => Op::Read(p),
        43..=46 => {
            let at = rng.below(25_000);
            Op::ReadAt(p, at, rng.below(10_000) as usize)
        }
        47..=51 => Op::Stat(p),
        52..=53 => Op::Lstat(p),
        54..=59 => Op::Unlink(p),
        60..=67 => Op::Mkdir(p),
        68..=71 => Op::Rmdir(p),
        72..=79 => Op::Rename(p, path(rng)),
        80..=81 => Op::RenameNoReplace(p, path(rng)),
        82..=84 => Op::Symlink(path(rng), p),
        85..=86 => Op::Readlink(p),
        87..=89 => Op::Link(p, path(rng)),
        90..=92 => Op::Chmod(p, [0o600, 0o644, 0o755, 0o400][rng.below(4) as usize]),
        93..=97 => Op::List(p),
        _ => Op::OpenDirForWriting(p),
    }
}

/// What an operation answered: a value to compare, or an errno.
type Outcome = Result<String, i32>;

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The parts of a stat both file systems must agree on (not times, inode numbers or the sizes
/// of directories, which differ between file systems by design).
fn describe(m: &std::fs::Metadata) -> String {
    let kind = if m.is_dir() {
        "dir"
    } else if m.file_type().is_symlink() {
        "symlink"
    } else {
        "file"
    };
    let size = if m.is_dir() { 0 } else { m.len() };
    format!(
        "{kind} size {size} mode {:o} nlink {}",
        m.permissions().mode() & 0o7777,
        m.nlink()
    )
}

fn apply(root: &Path, op: &Op) -> Outcome {
    let at = |p: &str| root.join(p);
    let done = |r: std::io::Result<()>| r.map(|()| String::new()).map_err(errno);
    match op {
        Op::Create(p, bytes) => done(std::fs::write(at(p), bytes)),
        Op::CreateExcl(p) => done(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(at(p))
                .map(drop),
        ),
        Op::WriteAt(p, offset, bytes) => done(
            OpenOptions::new()
                .write(true)
                .open(at(p))
                .and_then(|f| f.write_all_at(bytes, *offset)),
        ),
        Op::Append(p, bytes) => done(
            OpenOptions::new()
                .append(true)
                .open(at(p))
                .and_then(|mut f| f.write_all(bytes)),
        ),
        Op::Truncate(p, len) => done(
            OpenOptions::new()
                .write(true)
                .open(at(p))
                .and_then(|f| f.set_len(*len)),
        ),
        Op::Read(p) => std::fs::read(at(p))
            .map(|b| format!("{} bytes, sum {}", b.len(), checksum(&b)))
            .map_err(errno),
        Op::ReadAt(p, offset, len) => File::open(at(p))
            .and_then(|f| {
                let mut buf = vec![0u8; *len];
                let n = f.read_at(&mut buf, *offset)?;
                Ok(format!("{n} bytes, sum {}", checksum(&buf[..n])))
            })
            .map_err(errno),
        Op::Stat(p) => std::fs::metadata(at(p))
            .map(|m| describe(&m))
            .map_err(errno),
        Op::Lstat(p) => std::fs::symlink_metadata(at(p))
            .map(|m| describe(&m))
            .map_err(errno),
        Op::Unlink(p) => done(std::fs::remove_file(at(p))),
        Op::Mkdir(p) => done(std::fs::create_dir(at(p))),
        Op::Rmdir(p) => done(std::fs::remove_dir(at(p))),
        Op::Rename(from, to) => done(std::fs::rename(at(from), at(to))),
        Op::RenameNoReplace(from, to) => {
            let (f, t) = (c_path(&at(from)), c_path(&at(to)));
            // SAFETY: valid C strings; renameat2 with AT_FDCWD and absolute paths.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    f.as_ptr(),
                    libc::AT_FDCWD,
                    t.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            };
            done(if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            })
        }
        Op::Symlink(target, p) => done(std::os::unix::fs::symlink(target, at(p))),
        Op::Readlink(p) => std::fs::read_link(at(p))
            .map(|t| t.display().to_string())
            .map_err(errno),
        Op::Link(from, to) => done(std::fs::hard_link(at(from), at(to))),
        Op::Chmod(p, mode) => done(std::fs::set_permissions(
            at(p),
            std::fs::Permissions::from_mode(*mode),
        )),
        Op::List(p) => std::fs::read_dir(at(p))
            .and_then(|entries| {
                let mut names = entries
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<std::io::Result<Vec<_>>>()?;
                names.sort();
                Ok(names.join(","))
            })
            .map_err(errno),
        Op::OpenDirForWriting(p) => done(OpenOptions::new().write(true).open(at(p)).map(drop)),
    }
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Everything under `root`, by relative path: type, size, mode, link count, and the bytes'
/// checksum or the link's target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        for name in entries {
            let child = rel.join(&name);
            let full = root.join(&child);
            let m = std::fs::symlink_metadata(&full).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&full).unwrap().display())
            } else if m.is_dir() {
                stack.push(child.clone());
                String::new()
            } else {
                let mut bytes = Vec::new();
                File::open(&full).unwrap().read_to_end(&mut bytes).unwrap();
                format!("sum {}", checksum(&bytes))
            };
            out.insert(
                child.display().to_string(),
                format!("{} {what}", describe(&m)),
            );
        }
    }
    out
}

fn ops_per_seed() -> usize {
    std::env::var("RUSTDB_DIFF_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2500)
}

#[test]
fn differential_random_operations_match_a_plain_directory() {
    require_mount!();
    let mut inst = Instance::start(&[]);
    let per_seed = ops_per_seed();
    let started = std::time::Instant::now();
    let mut total = 0usize;
    let mut errors = 0usize;
    for seed in SEEDS {
        let reference = inst.dir.path().join(format!("reference-{seed}"));
        let mounted = inst.path(&format!("seed-{seed}"));
        std::fs::create_dir(&reference).unwrap();
        std::fs::create_dir(&mounted).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut log: Vec<String> = Vec::new();
        // The three directories first, so that most two-level paths have a parent to start with.
        let setup = DIRS.iter().map(|d| Op::Mkdir(d.to_string()));
        for (i, op) in setup.chain((0..per_seed).map(|_| op(&mut rng))).enumerate() {
            let want = apply(&reference, &op);
            let got = apply(&mounted, &op);
            log.push(
                format!("{i}: {op:?} -> {want:?}")
                    .chars()
                    .take(200)
                    .collect(),
            );
            assert_eq!(
                got,
                want,
                "seed {seed}, operation {i} ({op:?}): the mount answered {got:?}, a plain directory {want:?}\nthe operations before it:\n{}",
                log[log.len().saturating_sub(25)..].join("\n")
            );
            errors += usize::from(want.is_err());
            total += 1;
            if i % 100 == 99 || i + 1 == per_seed + DIRS.len() {
                let (want, got) = (tree(&reference), tree(&mounted));
                assert_eq!(
                    got, want,
                    "seed {seed}, after operation {i}: the trees differ\nthe operations before:\n{}",
                    log[log.len().saturating_sub(25)..].join("\n")
                );
            }
        }
    }
    inst.stop();
    let (code, report) = inst.fsck();
    assert_eq!(code, 0, "fsck after the differential run:\n{report}");
    figure(&format!(
        "differential: {total} random operations ({} seeds), {errors} of them errors, same answers, errno and tree as a plain ext4 directory ({:.0} s)",
        SEEDS.len(),
        started.elapsed().as_secs_f64()
    ));
}
