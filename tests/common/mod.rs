//! Test harness: a real `rustdb up` process on a temporary storage directory and mount point,
//! and a minimal HTTP/1.1 client for its API.
#![allow(dead_code)]

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KEY: &str = "devkey";

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

/// Every corpus file, as (path relative to the corpus, bytes).
pub fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let root = corpus();
    for kind in std::fs::read_dir(&root).expect("shared/corpus is missing") {
        let kind = kind.unwrap().path();
        for f in std::fs::read_dir(&kind).unwrap() {
            let f = f.unwrap().path();
            let rel = f
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read(&f).unwrap()));
        }
    }
    out.sort();
    out
}

/// Why real-mount tests cannot run here, if they cannot.
pub fn mount_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let has = |p: &str| {
            std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
        };
        if !has("fusermount3") {
            return Some("not root and fusermount3 is missing".into());
        }
    }
    None
}

/// Skips the calling test (loudly) when no kernel mount is possible.
#[macro_export]
macro_rules! require_mount {
    () => {
        if let Some(why) = common::mount_unavailable() {
            eprintln!("SKIPPED real-mount test: {why}");
            return;
        }
    };
}

pub struct Instance {
    pub dir: tempfile::TempDir,
    pub mount: PathBuf,
    pub storage: PathBuf,
    pub port: u16,
    child: Option<Child>,
    extra: Vec<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether RustDB's mount is the topmost mount at `path` (a bind mount under it does not count).
pub fn is_mounted(path: &Path) -> bool {
    rustdb_fs::mount_at(path).is_some_and(|m| m.is_rustdb())
}

impl Instance {
    /// Starts `rustdb up` with `env` added (e.g. a policy file).
    pub fn start(env: &[(&str, &str)]) -> Instance {
        Instance::start_with_storage(env, |dir| dir.join("storage"))
    }

    /// Starts `rustdb up` on the storage directory `storage` makes (given the test's own
    /// directory), e.g. on a small file system mounted there.
    pub fn start_with_storage(
        env: &[(&str, &str)],
        storage: impl FnOnce(&Path) -> PathBuf,
    ) -> Instance {
        let mut inst = Instance::prepare(env, storage);
        inst.spawn();
        inst
    }

    /// An instance's directories and settings, not started yet (`spawn` starts it).
    pub fn prepare(env: &[(&str, &str)], storage: impl FnOnce(&Path) -> PathBuf) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        Instance {
            mount: dir.path().join("mnt"),
            storage: storage(dir.path()),
            port: free_port(),
            dir,
            child: None,
            extra: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Starts again on the same storage and mount point.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("rustdb.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rustdb"));
        cmd.arg("up")
            .arg("--storage-dir")
            .arg(&self.storage)
            .arg("--mount")
            .arg(&self.mount)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("RUSTDB_API_KEYS", format!("{KEY}:default,otherkey:other"))
            .env("RUSTDB_TICK_INTERVAL_SEC", "3600")
            .env("RUSTDB_LOG", "debug,fuser=info,rustdb_api=info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("cannot start rustdb"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if is_mounted(&self.mount) && self.try_get("/healthz").is_some_and(|(s, _)| s == 200) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rustdb exited early ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "rustdb did not come up; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rustdb.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM and wait: the mount must be gone afterwards.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "rustdb exited with {status}; log:\n{}",
                self.log()
            );
        }
    }

    /// SIGKILL, leaving the dead mount behind as a crash does.
    pub fn kill_leaving_mount(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGKILL, then clear the dead mount as an operator would.
    pub fn kill(&mut self) {
        self.kill_leaving_mount();
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status();
    }

    /// Waits up to `timeout` for the process to end by itself (an injected crash), then clears
    /// the dead mount. Answers how it ended, or None when it is still running.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.child = None;
        self.kill();
        Some(status)
    }

    /// Leaves `key` out of the environment of later starts.
    pub fn remove_env(&mut self, key: &str) {
        self.extra.retain(|(k, _)| k != key);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mount.join(rel)
    }

    pub fn try_get(&self, path: &str) -> Option<(u16, serde_json::Value)> {
        request(self.port, "GET", path, None).ok()
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let (status, body) = request(self.port, "GET", path, None).unwrap();
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        request(self.port, "POST", path, Some(body)).unwrap()
    }

    pub fn force_tick(&self) -> serde_json::Value {
        let (status, body) = self.post("/rot/run", serde_json::json!({"force": true}));
        assert_eq!(status, 200, "tick: {body}");
        body
    }

    /// `rustdb fsck` on the storage directory (the process must be stopped): exit code and
    /// what it printed.
    pub fn fsck(&self) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_rustdb"))
            .args(["fsck", "--storage-dir"])
            .arg(&self.storage)
            .env("RUSTDB_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// The API's view of the object at `rel` (a path relative to the mount).
    pub fn object(&self, rel: &str) -> Option<serde_json::Value> {
        let list = self.get("/objects?include_deleted=true");
        list["objects"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|o| o["path"] == format!("/{rel}"))
            .cloned()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
        if std::thread::panicking() && std::env::var_os("RUSTDB_KEEP_FAILED").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("RUSTDB_KEEP_FAILED: kept {}", kept.display());
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; answers (status, JSON body or Null).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> std::io::Result<(u16, serde_json::Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let payload = if chunked {
        String::from_utf8_lossy(&dechunk(rest.as_bytes())).into_owned()
    } else {
        rest.to_string()
    };
    Ok((
        status,
        serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
    ))
}

/// One request with `Connection: close`; the body is written by `write_body` so it can stream.
/// Answers (status, head, body).
pub fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_length: u64,
    write_body: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {KEY}\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    write_body(&mut stream).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, body)
}

/// The payload of a `Transfer-Encoding: chunked` body.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol]).unwrap_or("0");
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let start = eol + 2;
        if n == 0 || raw.len() < start + n {
            break;
        }
        out.extend_from_slice(&raw[start..start + n]);
        raw = &raw[(start + n + 2).min(raw.len())..];
    }
    out
}

/// Reads an extended attribute through the mount (None when absent).
pub fn xattr(path: &Path, name: &str) -> Option<String> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the length passed.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(String::from_utf8(buf).unwrap())
}

pub fn set_xattr(path: &Path, name: &str, value: &str) -> std::io::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a value buffer of the length passed.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Copies every corpus file into the mount, keeping the kind folders.
pub fn copy_corpus_in(inst: &Instance) -> Vec<(String, Vec<u8>)> {
    let files = corpus_files();
    for (rel, bytes) in &files {
        let dest = inst.path(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, bytes).unwrap();
    }
    files
}

/// Prints a measured figure and appends it to `target/tmp/figures.txt`, which `.ci/run` shows
/// at the end of the run.
pub fn figure(line: &str) {
    eprintln!("FIGURE {line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("figures.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// A small seeded xorshift generator: the tests' random workloads repeat exactly per seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    /// Up to `max` random bytes.
    pub fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// `n` bytes after `header` that zstd can shrink (a four-symbol alphabet, so a tick's stage 1
/// really rewrites them) and that are never taken for text (the symbols include 0 and 0xff).
pub fn compressible(rng: &mut Rng, header: &[u8], n: usize) -> Vec<u8> {
    let mut bytes = header.to_vec();
    while bytes.len() < n {
        let word = rng.next();
        bytes.extend((0..32).map(|i| [0u8, 1, 0xfe, 0xff][((word >> (i * 2)) & 3) as usize]));
    }
    bytes.truncate(n.max(header.len()));
    bytes
}

/// The whole current artifact of object `id`, read through the engine (as `opener`, which the
/// engine may ignore for heat) and released again.
pub fn read_artifact(e: &rustdb::engine::Engine, id: u64, opener: Option<&str>) -> Vec<u8> {
    use rustdb::engine::OpenedArtifact;
    let mut out = Vec::new();
    match e.open(id, None, false, false, opener).unwrap() {
        OpenedArtifact::File(mut f) => {
            f.read_to_end(&mut out).unwrap();
        }
        OpenedArtifact::Chunked(r) => {
            out.resize(r.len() as usize, 0);
            let mut done = 0;
            while done < out.len() {
                let n = r.read_at(done as u64, &mut out[done..]).unwrap();
                assert!(
                    n > 0,
                    "object {id}: the reader ended at {done} of {}",
                    out.len()
                );
                done += n;
            }
        }
    }
    e.release(id, false, false);
    out
}
