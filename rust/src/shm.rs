//! Creating, attaching and unmapping a buffer's shared memory.
//!
//! Each buffer is an anonymous `memfd`: it has no name in `/dev/shm`, and the kernel frees it
//! when the last descriptor is closed and the last mapping is gone, so no ending of a run (even
//! `kill -9` of every process) can leave memory behind. Other processes reach it by inheriting
//! the descriptor (fork) or by opening `/proc/<creator pid>/fd/<fd>` (spawn).
//!
//! Creation reserves the whole region with `fallocate` and maps it with `MAP_POPULATE`, so a
//! lack of memory is a clear error at creation instead of a `SIGBUS` in the middle of a run.

use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{self, FallocateFlags, MemfdFlags, Mode, OFlags};
use rustix::mm::{self, MapFlags, ProtFlags};

use crate::error::{Error, Result};

/// A shared read-write mapping of a whole memfd. Unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory; every concurrent access to it goes through
// atomics or through the slot-ownership protocol of `ring.rs`, never through `&mut`.
unsafe impl Send for Mapping {}
// SAFETY: as above: `Mapping` hands out only raw pointers; synchronisation is the user's job.
unsafe impl Sync for Mapping {}

/// Bytes of memory the kernel reports as available (`MemAvailable`), if readable.
#[must_use]
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Mapping {
    /// Creates a zero-filled region of `len` bytes, reserved and pre-faulted.
    ///
    /// # Errors
    /// [`Error::SharedMemory`] when the memory cannot be reserved or mapped.
    pub fn create(label: &str, len: usize) -> Result<Mapping> {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        if let Some(avail) = available_memory() {
            if len as u64 > avail {
                return Err(Error::SharedMemory(format!(
                    "buffer '{label}' needs {:.1} MiB of shared memory but only {:.1} MiB are \
                     available: reduce slot_count or data_length",
                    mib(len as u64),
                    mib(avail)
                )));
            }
        }
        let fd = fs::memfd_create(format!("mimocorb2:{label}"), MemfdFlags::CLOEXEC)
            .map_err(|e| Error::SharedMemory(format!("memfd_create for buffer '{label}': {e}")))?;
        fs::ftruncate(&fd, len as u64)
            .map_err(|e| Error::SharedMemory(format!("sizing buffer '{label}': {e}")))?;
        fs::fallocate(&fd, FallocateFlags::empty(), 0, len as u64).map_err(|e| {
            Error::SharedMemory(format!(
                "cannot reserve {:.1} MiB of shared memory for buffer '{label}' ({e}): \
                 reduce slot_count or data_length, or free memory",
                mib(len as u64)
            ))
        })?;
        Self::map(fd, len, true)
    }

    /// Maps the memfd that process `pid` holds as descriptor `fd`.
    ///
    /// # Errors
    /// [`Error::SharedMemory`] when the descriptor cannot be opened (the creator has exited, or
    /// permissions) or mapped.
    pub fn attach(pid: u32, fd: i32, label: &str) -> Result<Mapping> {
        let path = format!("/proc/{pid}/fd/{fd}");
        let owned =
            fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
                Error::SharedMemory(format!(
                "cannot attach buffer '{label}' through {path} ({e}): the process that created \
                 it (pid {pid}) has probably exited"
            ))
            })?;
        let len = fs::fstat(&owned)
            .map_err(|e| Error::SharedMemory(format!("fstat of buffer '{label}': {e}")))?
            .st_size as usize;
        Self::map(owned, len, false)
    }

    fn map(fd: OwnedFd, len: usize, populate: bool) -> Result<Mapping> {
        if len == 0 {
            return Err(Error::SharedMemory("empty shared-memory region".into()));
        }
        let mut flags = MapFlags::SHARED;
        if populate {
            flags |= MapFlags::POPULATE;
        }
        // SAFETY: a null hint lets the kernel choose a fresh address range, so no existing
        // memory is replaced; `fd` is a valid descriptor of at least `len` bytes.
        let ptr = unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                flags,
                &fd,
                0,
            )
        }
        .map_err(|e| Error::SharedMemory(format!("mmap of {len} bytes failed: {e}")))?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| Error::SharedMemory("mmap returned null".into()))?;
        Ok(Mapping { ptr, len, fd })
    }

    /// Start of the mapping.
    #[must_use]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an empty mapping cannot be created.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor number in this process (for attaching from another process).
    #[must_use]
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created by `map` and not unmapped before;
        // every borrower of it holds an `Arc` of this `Mapping`, so none is left.
        let _ = unsafe { mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
