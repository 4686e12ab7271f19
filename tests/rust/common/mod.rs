//! The harness of the multi-process tests (`shm_multiprocess`, `fault_injection`,
//! `fault_injection_groups`): each test binary is its own child process.
//!
//! A parent test starts `current_exe() --exact child_entry` ([`child_command`]) with [`ROLE`]
//! naming the child's part and the buffer described in the environment ([`ring_env`]); the
//! binary's `child_entry` test hands the role to [`child_entry`], which runs it and exits (and
//! does nothing when [`ROLE`] is unset, as in a normal test run). The child attaches the buffer
//! through `/proc/<pid>/fd/<fd>` with [`attach`] (the memfd is close-on-exec, so it cannot be
//! inherited).
//!
//! Each test crate includes this file with `#[path = "common/mod.rs"] mod common;`.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimocorb2_core::metadata::{SlotMetadata, METADATA_SIZE};
use mimocorb2_core::Ring;

/// Names the child's role; unset in the parent.
pub const ROLE: &str = "MIMO_TEST_ROLE";
/// The environment prefix of the buffer a child attaches.
pub const RING: &str = "MIMO_RING";
/// The fault plan of a child (see `rust/src/fault.rs`); never inherited from the parent.
pub const FAULT: &str = "MIMOCORB2_FAULT";
/// Bound of every blocking call.
pub const T: Option<Duration> = Some(Duration::from_secs(10));
/// Bytes of data per event: two little-endian `u64` ([`payload`]).
pub const DATA: u64 = 16;
/// One metadata + data row.
pub const ROW: usize = METADATA_SIZE + DATA as usize;

/// `(event counter, first word, second word)` of one event.
pub type Event = (u64, u64, u64);

/// The data of an event: `a` and `b` as little-endian `u64`.
pub fn payload(a: u64, b: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&a.to_le_bytes());
    p[8..].copy_from_slice(&b.to_le_bytes());
    p
}

/// `(event counter, a, b)` of one metadata + data row written with [`payload`].
pub fn parse(row: &[u8]) -> Event {
    let md = SlotMetadata::from_bytes(row[..METADATA_SIZE].try_into().unwrap());
    let d = &row[METADATA_SIZE..ROW];
    let a = u64::from_le_bytes(d[..8].try_into().unwrap());
    let b = u64::from_le_bytes(d[8..].try_into().unwrap());
    (md.counter as u64, a, b)
}

// ----- child side -----

pub fn env(key: &str) -> Result<String, String> {
    std::env::var(key).map_err(|_| format!("{key} not set"))
}

pub fn env_num<N: std::str::FromStr>(key: &str) -> Result<N, String> {
    env(key)?
        .parse()
        .map_err(|_| format!("{key} is not a number"))
}

/// Attaches the buffer described by `<prefix>_PID`, `<prefix>_FD`, `<prefix>_INST`.
pub fn attach(prefix: &str) -> Result<Arc<Ring>, String> {
    let pid = env_num(&format!("{prefix}_PID"))?;
    let fd = env_num(&format!("{prefix}_FD"))?;
    let inst = env(&format!("{prefix}_INST"))?;
    let (a, b) = inst
        .split_once(':')
        .ok_or_else(|| format!("bad {prefix}_INST"))?;
    let id = [
        a.parse().map_err(|_| "bad id")?,
        b.parse().map_err(|_| "bad id")?,
    ];
    Ring::attach(pid, fd, Some(id))
        .map(Arc::new)
        .map_err(|e| format!("attach: {e}"))
}

/// The body of a binary's `child_entry` test: runs the role named by [`ROLE`] with
/// `child_main` and exits (0, or 3 after printing the error); returns at once without it.
pub fn child_entry(child_main: fn(&str) -> Result<(), String>) {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let code = match child_main(&role) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("child {role} (pid {}): {e}", std::process::id());
            3
        }
    };
    std::process::exit(code);
}

// ----- parent side -----

/// Describes `ring` to a child under `prefix` (see [`attach`]).
pub fn ring_env(cmd: &mut Command, prefix: &str, ring: &Ring) {
    let [a, b] = ring.instance_id();
    cmd.env(format!("{prefix}_PID"), std::process::id().to_string())
        .env(format!("{prefix}_FD"), ring.raw_fd().to_string())
        .env(format!("{prefix}_INST"), format!("{a}:{b}"));
}

/// The command of a child of `role` on `ring` (under [`RING`]), without a fault plan, its
/// standard input and output null.
pub fn child_command(role: &str, ring: &Ring) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env_remove(FAULT)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    ring_env(&mut cmd, RING, ring);
    cmd
}

/// Waits for the child's end, killing it (and failing) after `limit`.
pub fn wait_for(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: child did not end in time");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
