//! The crate's single error type. Nothing here depends on `PyO3`: `py/errors.rs` maps each variant
//! onto a Python exception.
#![forbid(unsafe_code)]

use std::fmt;

/// Everything that can go wrong in the core.
#[derive(Debug)]
pub enum Error {
    /// A buffer geometry or argument is invalid (zero slots, too many slots, bad name, ...).
    InvalidArgument(String),
    /// Creating, sizing or mapping the shared memory failed (for example: not enough memory).
    SharedMemory(String),
    /// The mapped region is not a mimocorb2 buffer of the expected layout, version or identity.
    LayoutMismatch(String),
    /// The buffer has ended (flushed or shut down): writing is refused.
    BufferEnded(String),
    /// A slot was used after it had been released, or a slot index is unknown.
    SlotReleased(String),
    /// A blocking wait ran out of time.
    Timeout(String),
    /// An operating-system call failed.
    Os(std::io::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m)
            | Error::SharedMemory(m)
            | Error::LayoutMismatch(m)
            | Error::BufferEnded(m)
            | Error::SlotReleased(m)
            | Error::Timeout(m) => f.write_str(m),
            Error::Os(e) => write!(f, "operating-system error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Os(e)
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Os(e.into())
    }
}
