use fuser::Errno;

/// Failures the backend reports. Mapped to errno in exactly one place: [`FsError::errno`].
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    #[error("no such attribute")]
    NoAttr,
    #[error("attribute value does not fit")]
    Range,
    #[error("name too long")]
    NameTooLong,
    #[error("not supported")]
    NotSupported,
    #[error("stale handle: the artifact changed, look it up again")]
    Stale,
    #[error("no space left on device")]
    NoSpace,
    #[error("busy: {0}")]
    Busy(String),
    #[error("no such open file handle, or not open for that")]
    BadHandle,
    #[error("no ioctls on this file system")]
    NoIoctl,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl FsError {
    /// The errno of a call on a node the kernel holds (rather than on a name): a node whose file
    /// has gone meanwhile (a purge by the engine) is stale, so the kernel looks the path up once
    /// more, as it does for NFS, and an `open(O_CREAT)` creates the file instead of failing.
    pub(crate) fn node_errno(&self) -> Errno {
        match self {
            FsError::NotFound => Errno::ESTALE,
            other => other.errno(),
        }
    }

    pub(crate) fn errno(&self) -> Errno {
        match self {
            FsError::NotFound => Errno::ENOENT,
            FsError::Exists => Errno::EEXIST,
            FsError::NotDir => Errno::ENOTDIR,
            FsError::IsDir => Errno::EISDIR,
            FsError::NotEmpty => Errno::ENOTEMPTY,
            FsError::Invalid(_) => Errno::EINVAL,
            FsError::NotPermitted(_) => Errno::EPERM,
            FsError::NoAttr => Errno::NO_XATTR,
            FsError::Range => Errno::ERANGE,
            FsError::NameTooLong => Errno::ENAMETOOLONG,
            FsError::NotSupported => Errno::ENOTSUP,
            FsError::Stale => Errno::ESTALE,
            FsError::NoSpace => Errno::ENOSPC,
            FsError::Busy(_) => Errno::EBUSY,
            FsError::BadHandle => Errno::EBADF,
            FsError::NoIoctl => Errno::ENOTTY,
            FsError::Io(e) => match e.raw_os_error() {
                Some(code) => Errno::from_i32(code),
                None => Errno::EIO,
            },
        }
    }
}
