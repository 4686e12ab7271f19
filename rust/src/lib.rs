//! mimocorb2's core: a multiprocess ring buffer of fixed-size event slots in shared memory.
//!
//! - [`ring::Ring`]: one buffer (header, token queues, slot records, slots) in a memfd mapping;
//! - [`handles`]: process-local writer, reader and observer endpoints;
//! - `ring_protocol`: the crash-consistent slot protocol (journalled steps under [`plock`]);
//! - [`token_queue`]: the FIFO queues of slot indices;
//! - [`wait`]: futex-based cross-process sleeping.
//!
//! The Python bindings (feature `python`) live in `py/` and only adapt arguments.

pub mod clock;
pub mod error;
pub mod fault;
pub mod handles;
pub mod layout;
pub mod metadata;
pub mod plock;
mod registry;
pub mod ring;
mod ring_admin;
mod ring_observe;
mod ring_ops;
mod ring_protocol;
mod ring_recovery;
mod ring_single;
mod ring_stats;
pub mod shm;
pub mod stats;
pub mod supervisor;
pub mod sync;
pub mod token_queue;
pub mod wait;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
pub use handles::{Observer, Reader, Writer};
pub use ring::Ring;
pub use ring_protocol::{Disposition, NO_REG};
pub use ring_single::Grant;
pub use stats::{Audit, SlotView, Stats};
