//! Fault injection at the steps of every write and rewrite (DESIGN.md section 7), for tests.
//! Built only with `--features failpoints`; without it the points compile to nothing.
//!
//! A point is switched on by name, in the environment of `rustdb up`
//! (`FAILPOINTS=rewrite.after_commit=return(crash)`) or in-process with `fail::cfg`:
//! `return(crash)` kills the process on the spot with SIGKILL (a crash exactly there), any other
//! `return` fails the step with an I/O error, as a failing disk would.

/// Every point, in the order a rewrite, a write, an upload and a restore pass them.
pub const POINTS: [&str; 12] = [
    "rewrite.after_temp_write",
    "publish.after_fsync",
    "publish.after_rename",
    "rewrite.after_commit",
    "rewrite.before_delete_old",
    "write.after_create",
    "write.after_mark",
    "write.before_record",
    "write.after_record",
    "upload.after_rename",
    "upload.after_commit",
    "restore.after_commit",
];

/// Marks a fault point in a function returning `Result<_, E>` where `E: From<io::Error>`.
macro_rules! fault_point {
    ($name:literal) => {
        fail::fail_point!($name, |action: Option<String>| {
            if action.as_deref() == Some("crash") {
                tracing::warn!(point = $name, "injected crash");
                // SAFETY: kill(2) on our own pid; nothing after it runs.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
            Err(std::io::Error::other(concat!("injected fault at ", $name)).into())
        })
    };
}

pub(crate) use fault_point;
