//! The process supervisor: starts worker processes, captures their output line by line, tracks
//! liveness, exit codes and CPU time, terminates them (SIGTERM, then SIGKILL after a grace
//! period) and, when a process ends, returns the buffer slots and writer registrations it held
//! ([`Ring::reclaim`]), so that a crash never hangs the rest of the pipeline.
//!
//! Output capture never blocks a worker: one thread per pipe drains it, appends each line to
//! the worker's log file and to a bounded in-memory stream (the oldest lines are dropped and
//! counted when nobody reads the stream).
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{kill_process, Pid, Signal};

use crate::error::{Error, Result};
use crate::ring::Ring;

/// Lines kept in the live stream when nobody drains it.
const STREAM_CAPACITY: usize = 50_000;
/// Last lines kept per process (for crash reports).
const TAIL_LINES: usize = 40;

/// How to start one process.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// Process name, e.g. `filter_0`.
    pub name: String,
    /// Name of the worker the process belongs to.
    pub worker: String,
    /// Program to run.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Log file the output is appended to (shared by the processes of one worker).
    pub log_path: PathBuf,
    /// How often the process is started again after it failed (non-zero exit or a signal).
    pub max_restarts: u32,
}

/// One captured output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Process name.
    pub process: String,
    /// Worker name.
    pub worker: String,
    /// `"stdout"` or `"stderr"`.
    pub stream: &'static str,
    /// The line, without its newline.
    pub text: String,
}

/// State of one process as reported by [`Supervisor::poll`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProcInfo {
    /// Process name.
    pub name: String,
    /// Worker name.
    pub worker: String,
    /// OS process id.
    pub pid: u32,
    /// Still running.
    pub alive: bool,
    /// Exit code when it exited normally.
    pub exit_code: Option<i32>,
    /// Signal that ended it.
    pub signal: Option<i32>,
    /// User + system CPU seconds (last value read while it ran).
    pub cpu_seconds: f64,
    /// Seconds since it started (until it ended).
    pub runtime: f64,
    /// Times it was restarted.
    pub restarts: u32,
    /// Ended by the control ([`Supervisor::signal`] / [`Supervisor::terminate`]), not by a
    /// failure of its own; never restarted.
    pub stopped: bool,
    /// Process ids of its earlier incarnations (before restarts).
    pub earlier_pids: Vec<u32>,
    /// `(slots it was writing, events lost, writer registrations closed)` after it ended.
    pub reclaimed: (u32, u32, u32),
    /// Its last output lines.
    pub tail: Vec<String>,
}

#[derive(Debug)]
struct Proc {
    spec: SpawnSpec,
    child: Child,
    pid: u32,
    started: Instant,
    status: Option<ExitStatus>,
    ended: Option<Instant>,
    cpu_seconds: f64,
    cpu_read: Instant,
    restarts: u32,
    stopping: bool,
    earlier_pids: Vec<u32>,
    reclaimed: (u32, u32, u32),
    tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

/// A started child with its output capture.
type Started = (Child, Arc<Mutex<VecDeque<String>>>, Vec<JoinHandle<()>>);

#[derive(Debug, Default)]
struct Stream {
    lines: VecDeque<LogLine>,
    dropped: u64,
}

#[derive(Debug, Default)]
struct Shared {
    stream: Mutex<Stream>,
    logs: Mutex<HashMap<PathBuf, Arc<Mutex<File>>>>,
}

/// Starts and watches worker processes.
#[derive(Debug, Default)]
pub struct Supervisor {
    procs: Mutex<Vec<Proc>>,
    rings: Mutex<Vec<Arc<Ring>>>,
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn clock_text() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs();
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// CPU seconds (user + system) of a running process, from `/proc/<pid>/stat`.
#[must_use]
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    Some((utime + stime) / ticks)
}

impl Supervisor {
    /// An empty supervisor.
    #[must_use]
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Buffers whose slots are reclaimed when a process ends.
    pub fn watch(&self, ring: Arc<Ring>) {
        ring.set_supervisor(std::process::id());
        lock(&self.rings).push(ring);
    }

    fn log_file(&self, path: &Path) -> Result<Arc<Mutex<File>>> {
        let mut logs = lock(&self.shared.logs);
        if let Some(f) = logs.get(path) {
            return Ok(f.clone());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot open log file {}: {e}", path.display()))
            })?;
        let f = Arc::new(Mutex::new(f));
        logs.insert(path.to_owned(), f.clone());
        Ok(f)
    }

    fn start(&self, spec: &SpawnSpec) -> Result<Started> {
        let log = self.log_file(&spec.log_path)?;
        let mut child = Command::new(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a Ctrl-C in the terminal reaches the control only, which
            // then stops the workers in order.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "cannot start process '{}' ({}): {e}",
                    spec.name, spec.program
                ))
            })?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(self.capture(out, "stdout", spec, log.clone(), tail.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(self.capture(err, "stderr", spec, log, tail.clone()));
        }
        Ok((child, tail, readers))
    }

    fn capture(
        &self,
        pipe: impl Read + Send + 'static,
        stream: &'static str,
        spec: &SpawnSpec,
        log: Arc<Mutex<File>>,
        tail: Arc<Mutex<VecDeque<String>>>,
    ) -> JoinHandle<()> {
        let shared = self.shared.clone();
        let (process, worker) = (spec.name.clone(), spec.worker.clone());
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                {
                    let mut f = lock(&log);
                    let mark = if stream == "stderr" { "!" } else { " " };
                    let _ = writeln!(f, "{} {process}{mark} {text}", clock_text());
                }
                {
                    let mut t = lock(&tail);
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(text.clone());
                }
                let mut s = lock(&shared.stream);
                if s.lines.len() == STREAM_CAPACITY {
                    s.lines.pop_front();
                    s.dropped += 1;
                }
                s.lines.push_back(LogLine {
                    process: process.clone(),
                    worker: worker.clone(),
                    stream,
                    text,
                });
            }
        })
    }

    /// Starts a process; returns its pid.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the program cannot be started or the log not opened.
    pub fn spawn(&self, spec: SpawnSpec) -> Result<u32> {
        let (child, tail, readers) = self.start(&spec)?;
        let pid = child.id();
        lock(&self.procs).push(Proc {
            spec,
            child,
            pid,
            started: Instant::now(),
            status: None,
            ended: None,
            cpu_seconds: 0.0,
            cpu_read: Instant::now(),
            restarts: 0,
            stopping: false,
            earlier_pids: Vec::new(),
            reclaimed: (0, 0, 0),
            tail,
            readers,
        });
        Ok(pid)
    }

    /// Starts an ended process again (restart policy); on failure it stays ended.
    fn respawn(&self, p: &mut Proc) {
        let note = format!(
            "*** mimocorb2: process {} failed; restarting it ({} of {})",
            p.spec.name,
            p.restarts + 1,
            p.spec.max_restarts
        );
        if let Ok(log) = self.log_file(&p.spec.log_path) {
            let _ = writeln!(lock(&log), "{} {} {note}", clock_text(), p.spec.name);
        }
        if let Ok((child, tail, readers)) = self.start(&p.spec) {
            p.earlier_pids.push(p.pid);
            p.pid = child.id();
            p.child = child;
            p.tail = tail;
            p.readers = readers;
            p.started = Instant::now();
            p.status = None;
            p.ended = None;
            p.cpu_seconds = 0.0;
            p.restarts += 1;
        }
    }

    /// Checks every process; reclaims the buffer slots of those that ended since the last call.
    pub fn poll(&self) -> Vec<ProcInfo> {
        let rings = lock(&self.rings).clone();
        let mut procs = lock(&self.procs);
        procs
            .iter_mut()
            .map(|p| {
                if p.status.is_none() {
                    // CPU time is read at most twice a second: an idle run must stay cheap.
                    if p.cpu_read.elapsed() >= Duration::from_millis(500) {
                        p.cpu_read = Instant::now();
                        if let Some(c) = cpu_seconds(p.pid) {
                            p.cpu_seconds = c;
                        }
                    }
                    if let Ok(Some(st)) = p.child.try_wait() {
                        // Let the capture threads take the last lines (bounded: a grandchild
                        // could keep the pipes open).
                        let until = Instant::now() + Duration::from_millis(300);
                        while p.readers.iter().any(|r| !r.is_finished()) && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        p.status = Some(st);
                        p.ended = Some(Instant::now());
                        let again =
                            !st.success() && !p.stopping && p.restarts < p.spec.max_restarts;
                        let mut total = (0, 0, 0);
                        for r in &rings {
                            let (a, b, c) = if again {
                                r.reclaim_for_restart(p.pid)
                            } else {
                                r.reclaim(p.pid)
                            };
                            total = (total.0 + a, total.1 + b, total.2 + c);
                        }
                        p.reclaimed = total;
                        if again {
                            self.respawn(p);
                        }
                    }
                }
                let runtime = p.ended.unwrap_or_else(Instant::now) - p.started;
                ProcInfo {
                    name: p.spec.name.clone(),
                    worker: p.spec.worker.clone(),
                    pid: p.pid,
                    alive: p.status.is_none(),
                    exit_code: p.status.and_then(|s| s.code()),
                    signal: p.status.and_then(|s| s.signal()),
                    cpu_seconds: p.cpu_seconds,
                    runtime: runtime.as_secs_f64(),
                    restarts: p.restarts,
                    stopped: p.stopping && p.status.is_some(),
                    earlier_pids: p.earlier_pids.clone(),
                    reclaimed: p.reclaimed,
                    tail: lock(&p.tail).iter().cloned().collect(),
                }
            })
            .collect()
    }

    /// Takes up to `max` lines from the live stream, and the number of lines dropped so far.
    pub fn drain_lines(&self, max: usize) -> (Vec<LogLine>, u64) {
        let mut s = lock(&self.shared.stream);
        let n = max.min(s.lines.len());
        (s.lines.drain(..n).collect(), s.dropped)
    }

    /// Sends `signal` to the running processes named in `names` (all when `None`); returns how
    /// many were signalled.
    /// Signalled processes count as stopped by the control: they are not restarted.
    pub fn signal(&self, names: Option<&[String]>, signal: Signal) -> usize {
        let mut procs = lock(&self.procs);
        let mut n = 0;
        for p in procs.iter_mut() {
            let wanted =
                names.is_none_or(|ns| ns.iter().any(|x| *x == p.spec.name || *x == p.spec.worker));
            if p.status.is_none() && wanted {
                p.stopping = true;
                if let Some(pid) = Pid::from_raw(p.pid as i32) {
                    if kill_process(pid, signal).is_ok() {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Stops processes (all when `names` is `None`): SIGTERM, then SIGKILL for those still
    /// running after `grace`. Returns when all of them have ended.
    pub fn terminate(&self, names: Option<&[String]>, grace: Duration) {
        self.signal(names, Signal::TERM);
        let end = Instant::now() + grace;
        loop {
            let running = self
                .poll()
                .iter()
                .filter(|p| {
                    p.alive && names.is_none_or(|ns| ns.contains(&p.name) || ns.contains(&p.worker))
                })
                .count();
            if running == 0 {
                return;
            }
            if Instant::now() >= end {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal(names, Signal::KILL);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end && self.poll().iter().any(|p| p.alive) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let procs = self.procs.get_mut().unwrap_or_else(PoisonError::into_inner);
        for p in procs.iter_mut() {
            if p.status.is_none() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
    }
}

/// Makes the calling process die (SIGKILL) when its parent exits; returns false when the
/// parent is already gone (it is not `expected_parent` any more), so the caller should exit.
#[must_use]
pub fn die_with_parent(expected_parent: u32) -> bool {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    rustix::process::getppid().is_some_and(|p| p.as_raw_nonzero().get() as u32 == expected_parent)
}
