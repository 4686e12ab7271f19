//! Multi-process tests: other processes attach the buffer through `/proc/<pid>/fd/<fd>` (the
//! memfd is close-on-exec, so a spawned process cannot inherit it), exchange events with the
//! creator, and die while holding slots so that [`Ring::reclaim`] has real dead holders.
//!
//! The children are this test binary itself: each parent test spawns
//! `current_exe() --exact child_entry` with the environment variable [`common::ROLE`] set, and
//! the `child_entry` test runs the child's part and exits; without the variable it does
//! nothing. The harness is shared with the fault-injection tests (`common/mod.rs`).
#![allow(
    clippy::missing_panics_doc,
    clippy::many_single_char_names,
    clippy::similar_names
)]

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimocorb2_core::{Error, Reader, Ring, Writer};

use common::{attach, env_num, parse, payload, DATA, RING, ROW, T};

/// What a child prints once it holds what the parent waits for.
const READY: &str = "MIMO_READY";
/// The number of events a child reads or writes.
const COUNT: &str = "MIMO_N";

// ----- child side -----

fn say_ready(what: u64) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{READY} {what}").unwrap();
    out.flush().unwrap();
}

fn child_main(role: &str) -> Result<(), String> {
    match role {
        "reader" => {
            // Reads every event of the single parent writer and checks order and contents.
            let ring = attach(RING)?;
            let n: u64 = env_num(COUNT)?;
            let mut rd = Reader::new(ring.clone());
            let mut row = [0u8; ROW];
            let mut i = 0u64;
            while let Some(s) = rd.acquire(T).map_err(|e| e.to_string())? {
                ring.copy_out(s, &mut row);
                rd.release().map_err(|e| e.to_string())?;
                let got = parse(&row);
                if got != (i, 42, i) {
                    return Err(format!("event {i}: got (counter, a, b) = {got:?}"));
                }
                i += 1;
            }
            if i == n {
                Ok(())
            } else {
                Err(format!("read {i} events, expected {n}"))
            }
        }
        "writer" => {
            let ring = attach(RING)?;
            let n: u64 = env_num(COUNT)?;
            let mut w = Writer::new(ring.clone()).map_err(|e| e.to_string())?;
            let me = u64::from(std::process::id());
            for i in 0..n {
                let s = w.acquire(T).map_err(|e| e.to_string())?;
                ring.copy_in(s, &payload(me, i), false);
                w.commit(true).map_err(|e| e.to_string())?;
            }
            w.finish();
            Ok(())
        }
        "wrong_instance" => {
            let pid = env_num(&format!("{RING}_PID"))?;
            let fd = env_num(&format!("{RING}_FD"))?;
            match Ring::attach(pid, fd, Some([1, 2])) {
                Err(Error::LayoutMismatch(_)) => Ok(()),
                other => Err(format!("expected a layout mismatch, got {other:?}")),
            }
        }
        "hold_read" | "hold_write" => {
            let ring = attach(RING)?;
            // Keep the handle alive (and its slot held) until the parent kills us.
            let (slot, _keep) = if role == "hold_read" {
                let mut rd = Reader::new(ring.clone());
                let s = rd
                    .acquire(T)
                    .map_err(|e| e.to_string())?
                    .ok_or("buffer ended")?;
                (s, (Some(rd), None))
            } else {
                let mut w = Writer::new(ring.clone()).map_err(|e| e.to_string())?;
                (w.acquire(T).map_err(|e| e.to_string())?, (None, Some(w)))
            };
            say_ready(u64::from(slot));
            std::thread::sleep(Duration::from_secs(30));
            Err("not killed in time".into())
        }
        other => Err(format!("unknown role {other}")),
    }
}

/// The children's entry point; a no-op in a normal test run.
#[test]
fn child_entry() {
    common::child_entry(child_main);
}

// ----- parent side -----

fn create(name: &str, slots: u32) -> Arc<Ring> {
    let name = format!("mp-{name}-{}", std::process::id());
    Arc::new(Ring::create(&name, slots, DATA, "[]", false).unwrap())
}

/// A running child and the lines of its standard output.
struct Kid {
    child: Child,
    lines: Receiver<String>,
}

fn spawn(role: &str, ring: &Ring, n: u64) -> Kid {
    let mut child = common::child_command(role, ring)
        .env(COUNT, n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Kid { child, lines }
}

impl Kid {
    /// Waits for the child's ready line and returns its number.
    fn ready(&mut self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.trim().strip_prefix(READY) {
                        return rest.trim().parse().unwrap();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("child not ready in time");
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.wait().unwrap();
                    panic!("child exited before it was ready: {st}");
                }
            }
        }
    }

    /// Waits for the child's exit, killing it after 20 s.
    fn wait(&mut self) -> ExitStatus {
        common::wait_for(
            &mut self.child,
            Duration::from_secs(20),
            "waiting for the exit",
        )
    }

    /// SIGKILLs the child and reaps it.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        let st = self.child.wait().unwrap();
        assert!(!st.success(), "killed child reported success");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// No named shared memory is ever left behind (the buffers are anonymous memfds), and this
/// process keeps no descriptor of a dropped buffer.
fn assert_nothing_left(name: &str) {
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        let left: Vec<_> = dir
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("mimocorb2"))
            .collect();
        assert!(left.is_empty(), "left in /dev/shm: {left:?}");
    }
    let label = format!("mimocorb2:{name}");
    let open = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.to_string_lossy().contains(&label))
        .count();
    assert_eq!(open, 0, "a descriptor of {name} is still open");
}

#[test]
fn child_process_reads_what_the_parent_writes() {
    const N: u64 = 5_000;
    let r = create("p2c", 8);
    let name = r.name().to_owned();
    let mut kid = spawn("reader", &r, N);
    let mut w = Writer::new(r.clone()).unwrap();
    for i in 0..N {
        let s = w.acquire(T).unwrap();
        r.copy_in(s, &payload(42, i), false);
        w.commit(true).unwrap();
    }
    assert!(w.finish());
    let st = kid.wait();
    assert!(st.success(), "child reader failed: {st}");
    let stats = r.stats();
    assert_eq!(
        (stats.event_count, stats.empty_slots, stats.filled_slots),
        (N, 8, 0)
    );
    assert_eq!(stats.lost, 0);
    drop((w, r));
    assert_nothing_left(&name);
}

#[test]
fn parent_reads_what_a_child_process_writes() {
    const N: u64 = 5_000;
    let r = create("c2p", 8);
    let name = r.name().to_owned();
    r.set_expected_writers(1); // the child registers later: no early end
    let mut kid = spawn("writer", &r, N);
    let mut rd = Reader::new(r.clone());
    let mut row = [0u8; ROW];
    let mut i = 0u64;
    while let Some(s) = rd.acquire(T).unwrap() {
        r.copy_out(s, &mut row);
        rd.release().unwrap();
        assert_eq!(parse(&row), (i, u64::from(kid.pid()), i));
        i += 1;
    }
    assert_eq!(i, N);
    assert!(kid.wait().success());
    let stats = r.stats();
    assert!(stats.flushed && !stats.forced);
    assert_eq!((stats.active_writers, stats.crashed_writers), (0, 0));
    drop((rd, r));
    assert_nothing_left(&name);
}

#[test]
fn attach_with_a_wrong_instance_is_refused_in_a_child() {
    let r = create("wrong", 2);
    let mut kid = spawn("wrong_instance", &r, 0);
    assert!(kid.wait().success());
}

#[test]
fn reclaim_after_a_killed_reader() {
    let r = create("killreader", 4);
    let name = r.name().to_owned();
    let mut w = Writer::new(r.clone()).unwrap();
    for i in 0..2 {
        let s = w.acquire(T).unwrap();
        r.copy_in(s, &payload(0, i), false);
        w.commit(true).unwrap();
    }
    let mut kid = spawn("hold_read", &r, 0);
    let slot = kid.ready() as u32;
    let pid = kid.pid();
    assert!(
        r.holders().contains(&pid),
        "the child's pid is recorded as holder"
    );
    kid.kill();
    assert_eq!(r.reclaim(pid), (0, 1, 0), "(writing, lost, writers)");
    assert_eq!(r.reclaim(pid), (0, 0, 0), "idempotent");
    assert!(!r.holders().contains(&pid));
    let st = r.stats();
    assert_eq!((st.lost, st.empty_slots, st.filled_slots), (1, 3, 1));
    // The reclaimed slot is usable again: fill every slot, read everything back.
    for i in 2..5 {
        let s = w.acquire(T).unwrap();
        r.copy_in(s, &payload(0, i), false);
        w.commit(true).unwrap();
    }
    assert_eq!(r.stats().filled_slots, 4, "all four slots hold events");
    let mut rd = Reader::new(r.clone());
    let mut row = [0u8; ROW];
    let mut got = Vec::new();
    let mut seen_slot = false;
    for _ in 0..4 {
        let s = rd.acquire(T).unwrap().unwrap();
        seen_slot |= s == slot;
        r.copy_out(s, &mut row);
        rd.release().unwrap();
        got.push(parse(&row).2);
    }
    assert!(
        seen_slot,
        "the dead reader's slot {slot} carried an event again"
    );
    assert_eq!(got, vec![1, 2, 3, 4], "event 0 was lost with the reader");
    assert!(w.finish());
    assert!(rd.acquire(T).unwrap().is_none());
    drop((w, rd, r));
    assert_nothing_left(&name);
}

#[test]
fn reclaim_after_a_killed_writer_ends_the_buffer() {
    let r = create("killwriter", 4);
    let name = r.name().to_owned();
    r.set_expected_writers(1);
    let mut kid = spawn("hold_write", &r, 0);
    let _slot = kid.ready();
    let pid = kid.pid();
    let st = r.stats();
    assert_eq!((st.active_writers, st.empty_slots), (1, 3));
    assert!(r.holders().contains(&pid));
    kid.kill();
    assert!(!r.is_ended(), "a dead writer alone does not end the buffer");
    assert_eq!(r.reclaim(pid), (1, 0, 1), "(writing, lost, writers)");
    let st = r.stats();
    assert_eq!(
        (st.active_writers, st.crashed_writers, st.empty_slots),
        (0, 1, 4)
    );
    assert!(r.is_ended(), "the crashed registration counts as finished");
    assert!(!st.forced);
    let mut rd = Reader::new(r.clone());
    assert!(rd.acquire(T).unwrap().is_none(), "readers see the end");
    drop((rd, r));
    assert_nothing_left(&name);
}
