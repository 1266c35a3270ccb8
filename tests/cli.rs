//! The `rustdb` command line: help covers every flag, and bad setups stop with one clear line.

mod common;

use std::process::Command;

fn rustdb(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rustdb"));
    cmd.args(args).env_remove("RUSTDB_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn error_line(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("rustdb: ")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line expected:\n{text}");
    lines[0].to_string()
}

#[test]
fn cli_help_explains_every_flag_and_its_variable() {
    let (ok, help) = rustdb(&["up", "--help"], &[]);
    assert!(ok);
    for (flag, var) in [
        ("--storage-dir", "RUSTDB_STORAGE_DIR"),
        ("--mount", "RUSTDB_MOUNT_DIR"),
        ("--listen", "RUSTDB_LISTEN"),
        ("--tenant", "RUSTDB_TENANT"),
        ("--api-keys", "RUSTDB_API_KEYS"),
        ("--tick-interval-sec", "RUSTDB_TICK_INTERVAL_SEC"),
        ("--shadow-mode", "RUSTDB_SHADOW_MODE"),
        ("--policy-file", "RUSTDB_POLICY_FILE"),
        ("--no-passthrough", "RUSTDB_NO_PASSTHROUGH"),
        ("--fuse-threads", "RUSTDB_FUSE_THREADS"),
    ] {
        assert!(
            help.contains(flag) && help.contains(var),
            "{flag} / {var} missing from help:\n{help}"
        );
    }
    let (ok, top) = rustdb(&["--help"], &[]);
    assert!(
        ok && top.contains("up") && top.contains("DECAYDB_"),
        "{top}"
    );
}

#[test]
fn cli_unwritable_storage_dir_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let storage = file.join("storage");
    let mount = dir.path().join("mnt");
    let (ok, out) = rustdb(
        &[
            "up",
            "--storage-dir",
            storage.to_str().unwrap(),
            "--mount",
            mount.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!ok);
    let line = error_line(&out);
    assert!(
        line.contains("not writable") && line.contains("RUSTDB_STORAGE_DIR"),
        "{line}"
    );
}

#[test]
fn cli_legacy_names_and_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    // A legacy DECAYDB_* name reaches the same setting: here an invalid key list.
    let (ok, out) = rustdb(
        &[
            "up",
            "--storage-dir",
            dir.path().join("s").to_str().unwrap(),
            "--mount",
            dir.path().join("m").to_str().unwrap(),
        ],
        &[("DECAYDB_API_KEYS", "no-colon-here")],
    );
    assert!(!ok);
    assert!(error_line(&out).contains("RUSTDB_API_KEYS"), "{out}");
}

#[test]
fn cli_busy_mount_point_is_one_clear_line() {
    require_mount!();
    let inst = common::Instance::start(&[]);
    let other = tempfile::tempdir().unwrap();
    let (ok, out) = rustdb(
        &[
            "up",
            "--storage-dir",
            other.path().join("s").to_str().unwrap(),
            "--mount",
            inst.mount.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!ok);
    let line = error_line(&out);
    assert!(line.contains("busy") && line.contains("unmount"), "{line}");
}

/// A killed `rustdb up` leaves a dead mount (ENOTCONN) behind; the next start detaches it
/// itself, so a restart after a crash (systemd, a container restart policy) needs no operator.
#[test]
fn cli_restart_after_a_kill_detaches_the_dead_mount() {
    require_mount!();
    let mut inst = common::Instance::start(&[]);
    std::fs::write(inst.path("kept.txt"), b"written before the kill").unwrap();
    inst.kill_leaving_mount();
    let dead = std::fs::metadata(&inst.mount).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");
    inst.spawn();
    assert_eq!(
        std::fs::read(inst.path("kept.txt")).unwrap(),
        b"written before the kill"
    );
    assert!(
        inst.log().contains("detaching the dead RustDB mount"),
        "{}",
        inst.log()
    );
}

/// A container hands its mount point in as a bind mount (for the host to see the files through
/// mount propagation): RustDB mounts over it, and leaves it as it was when it stops.
#[test]
fn cli_mounts_over_a_bind_mount_and_leaves_it_at_stop() {
    require_mount!();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: making a bind mount needs root");
        return;
    }
    let mut inst = common::Instance::prepare(&[], |dir| dir.join("storage"));
    std::fs::create_dir(&inst.mount).unwrap();
    let bind = |args: &[&str]| {
        let status = Command::new("mount").args(args).status().unwrap();
        assert!(status.success(), "mount {args:?} failed");
    };
    let mount = inst.mount.to_str().unwrap().to_owned();
    bind(&["--bind", &mount, &mount]);
    let under = rustdb_fs::mount_at(&inst.mount).expect("the bind mount is there");
    inst.spawn();
    std::fs::write(inst.path("through.txt"), b"over the bind mount").unwrap();
    assert_eq!(
        std::fs::read(inst.path("through.txt")).unwrap(),
        b"over the bind mount"
    );
    inst.stop();
    assert_eq!(rustdb_fs::mount_at(&inst.mount), Some(under));
    assert!(
        !inst.mount.join("through.txt").exists(),
        "the file is in RustDB, not under it"
    );
    let status = Command::new("umount").arg(&inst.mount).status().unwrap();
    assert!(status.success());
}

/// `rustdb health` (the container's health check) needs both the API and the mount.
#[test]
fn cli_health_checks_the_api_and_the_mount() {
    require_mount!();
    let mut inst = common::Instance::start(&[]);
    let url = format!("http://127.0.0.1:{}", inst.port);
    let mount = inst.mount.to_str().unwrap().to_owned();
    let (ok, out) = rustdb(&["health", "--url", &url, "--mount", &mount], &[]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "ok");
    // The kernel lists the mount under its resolved path; a symlink to it is found too.
    let link = inst.dir.path().join("link-to-mnt");
    std::os::unix::fs::symlink(&inst.mount, &link).unwrap();
    let (ok, out) = rustdb(
        &["health", "--url", &url, "--mount", link.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{out}");
    let elsewhere = inst.dir.path().join("storage");
    let (ok, out) = rustdb(
        &[
            "health",
            "--url",
            &url,
            "--mount",
            elsewhere.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        error_line(&out).contains("nothing of RustDB's is mounted"),
        "{out}"
    );
    inst.stop();
    let (ok, out) = rustdb(&["health", "--url", &url], &[]);
    assert!(!ok);
    assert!(error_line(&out).contains("cannot reach RustDB"), "{out}");
}

#[test]
fn client_commands_say_what_to_do_when_nothing_listens() {
    let (ok, text) = rustdb(&["status", "--url", "http://127.0.0.1:9"], &[]);
    assert!(!ok);
    let line = error_line(&text);
    assert!(
        line.contains("cannot reach RustDB at http://127.0.0.1:9"),
        "{line}"
    );
    assert!(line.contains("RUSTDB_URL"), "{line}");
}

/// A storage directory holds one `rustdb up` at a time; a second is refused and told which
/// process has it. A damaged catalog is refused with what to do.
#[test]
fn cli_refuses_storage_in_use_and_a_damaged_catalog() {
    require_mount!();
    let mut inst = common::Instance::start(&[]);
    let other = tempfile::tempdir().unwrap();
    let up = |storage: &std::path::Path| {
        rustdb(
            &[
                "up",
                "--storage-dir",
                storage.to_str().unwrap(),
                "--mount",
                other.path().join("m").to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
            ],
            &[],
        )
    };
    let (ok, out) = up(&inst.storage);
    assert!(!ok);
    let line = error_line(&out);
    assert!(
        line.contains("in use by another rustdb process")
            && line.contains(&format!("pid {}", inst.pid())),
        "{line}"
    );
    inst.stop();

    let catalog = inst.storage.join("catalog.db");
    let mut bytes = std::fs::read(&catalog).unwrap();
    for b in bytes.iter_mut().skip(100).take(4000) {
        *b = 0xA5;
    }
    std::fs::write(&catalog, bytes).unwrap();
    let (ok, out) = up(&inst.storage);
    assert!(!ok);
    let line = error_line(&out);
    assert!(
        line.contains("is damaged") && line.contains("restore it from a backup"),
        "{line}"
    );
}
