//! Criterion benchmarks of the shared-memory ring:
//!
//! - `ring/cycle`: one thread passes a 16-byte event through the ring (writer acquire, copy,
//!   stamped commit; reader acquire, copy, release): events per second;
//! - `ring/batch256`: `write_batch` + `read_batch` of 256 tiny events: events per second;
//! - `ring_latency/{polling,blocking}`: one-way latency between two processes. A child process
//!   (this benchmark binary re-executed with [`CHILD`] set) attaches two rings through
//!   `/proc/<pid>/fd/<fd>` and echoes every event of the `ping` ring into the `pong` ring; the
//!   reported time is half a round trip. `polling` spins on the non-blocking calls, `blocking`
//!   uses the waiting calls (spin, then futex sleep).
#![allow(
    clippy::missing_panics_doc,
    clippy::many_single_char_names,
    clippy::similar_names
)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use mimocorb2_core::metadata::METADATA_SIZE;
use mimocorb2_core::{Reader, Ring, Writer};

/// Environment variable that makes this binary the echo child (`polling` or `blocking`).
const CHILD: &str = "MIMO_BENCH_CHILD";
const DATA: usize = 16;
/// Events per batch of `ring/batch256`.
const BATCH: usize = 256;
const ROW: usize = METADATA_SIZE + DATA;
/// Bound of every blocking call, so a broken peer fails the benchmark instead of hanging it.
const T: Option<Duration> = Some(Duration::from_secs(30));

fn ring(name: &str, slots: u32) -> Arc<Ring> {
    let name = format!("bench-{name}-{}", std::process::id());
    Arc::new(Ring::create(&name, slots, DATA as u64, "[]", false).unwrap())
}

fn one_thread_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    let r = ring("cycle", 64);
    let mut w = Writer::new(r.clone()).unwrap();
    let mut rd = Reader::new(r.clone());
    let src = [7u8; DATA];
    let mut dst = [0u8; ROW];
    g.throughput(Throughput::Elements(1));
    g.bench_function("cycle", |b| {
        b.iter(|| {
            let s = w.acquire(None).unwrap();
            r.copy_in(s, &src, false);
            w.commit(true).unwrap();
            let s = rd.acquire(None).unwrap().unwrap();
            r.copy_out(s, &mut dst);
            rd.release().unwrap();
        });
    });
    assert_eq!(dst[METADATA_SIZE..], src);

    let r = ring("batch", 2 * BATCH as u32);
    let mut w = Writer::new(r.clone()).unwrap();
    let mut rd = Reader::new(r.clone());
    let src = vec![3u8; BATCH * DATA];
    let mut dst = vec![0u8; BATCH * ROW];
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("batch256", |b| {
        b.iter(|| {
            assert_eq!(
                w.write_batch(&src, BATCH, false, true, None).unwrap(),
                BATCH
            );
            assert_eq!(rd.read_batch(&mut dst, BATCH, None).unwrap(), BATCH);
        });
    });
    assert_eq!(dst[BATCH * ROW - DATA..], src[..DATA]);
    g.finish();
}

/// The parent's side of the echo: writes into `ping`, reads the echo from `pong`.
struct Echo {
    ping: Arc<Ring>,
    pong: Arc<Ring>,
    w: Writer,
    rd: Reader,
    child: Child,
    polling: bool,
    next: u64,
}

impl Echo {
    fn start(polling: bool) -> Echo {
        let mode = if polling { "polling" } else { "blocking" };
        let ping = ring(&format!("ping-{mode}"), 8);
        let pong = ring(&format!("pong-{mode}"), 8);
        pong.set_expected_writers(1); // the child's writer registers after it attached
        let id = |r: &Ring| format!("{}:{}", r.instance_id()[0], r.instance_id()[1]);
        let child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD, mode)
            .env("MIMO_PID", std::process::id().to_string())
            .env("MIMO_PING", format!("{}:{}", ping.raw_fd(), id(&ping)))
            .env("MIMO_PONG", format!("{}:{}", pong.raw_fd(), id(&pong)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let w = Writer::new(ping.clone()).unwrap();
        let rd = Reader::new(pong.clone());
        Echo {
            ping,
            pong,
            w,
            rd,
            child,
            polling,
            next: 0,
        }
    }

    fn round_trip(&mut self) {
        let i = self.next;
        self.next += 1;
        let s = if self.polling {
            loop {
                if let Some(s) = self.w.try_acquire().unwrap() {
                    break s;
                }
                std::hint::spin_loop();
            }
        } else {
            self.w.acquire(T).unwrap()
        };
        self.ping.copy_in(s, &i.to_le_bytes(), false);
        self.w.commit(false).unwrap();
        let s = if self.polling {
            loop {
                match self.rd.try_acquire().unwrap() {
                    Some(Some(s)) => break s,
                    Some(None) => panic!("echo ended early"),
                    None => std::hint::spin_loop(),
                }
            }
        } else {
            self.rd.acquire(T).unwrap().expect("echo ended early")
        };
        let mut row = [0u8; ROW];
        self.pong.copy_out(s, &mut row);
        self.rd.release().unwrap();
        let back = u64::from_le_bytes(row[METADATA_SIZE..METADATA_SIZE + 8].try_into().unwrap());
        assert_eq!(back, i, "the echo returns the event sent");
    }

    fn stop(mut self) {
        self.w.finish();
        assert!(
            self.rd.acquire(T).unwrap().is_none(),
            "the echo ends after the ping ring"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "echo child failed: {st}");
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("echo child did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn cross_process_latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_latency");
    for polling in [true, false] {
        let mut echo = Echo::start(polling);
        echo.round_trip(); // the child is up
        let name = if polling { "polling" } else { "blocking" };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    echo.round_trip();
                }
                t0.elapsed() / 2
            });
        });
        echo.stop();
    }
    g.finish();
}

/// The echo child: attaches `ping` and `pong`, copies every event of `ping` into `pong`
/// until `ping` ends.
fn echo_child(mode: &str) -> Result<(), String> {
    let polling = mode == "polling";
    let pid: u32 = std::env::var("MIMO_PID")
        .map_err(|e| e.to_string())?
        .parse()
        .map_err(|_| "pid")?;
    let attach = |key: &str| -> Result<Arc<Ring>, String> {
        let v = std::env::var(key).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = v.split(':').collect();
        let [fd, a, b] = parts[..] else {
            return Err(format!("bad {key}"));
        };
        let fd = fd.parse().map_err(|_| "fd")?;
        let id = [a.parse().map_err(|_| "id")?, b.parse().map_err(|_| "id")?];
        Ring::attach(pid, fd, Some(id))
            .map(Arc::new)
            .map_err(|e| e.to_string())
    };
    let (ping, pong) = (attach("MIMO_PING")?, attach("MIMO_PONG")?);
    let mut rd = Reader::new(ping.clone());
    let mut w = Writer::new(pong.clone()).map_err(|e| e.to_string())?;
    let mut row = [0u8; ROW];
    let e = |e: mimocorb2_core::Error| e.to_string();
    loop {
        let s = if polling {
            match rd.try_acquire().map_err(e)? {
                Some(Some(s)) => s,
                Some(None) => break,
                None => {
                    std::hint::spin_loop();
                    continue;
                }
            }
        } else {
            match rd.acquire(T).map_err(e)? {
                Some(s) => s,
                None => break,
            }
        };
        ping.copy_out(s, &mut row);
        rd.release().map_err(e)?;
        let s = if polling {
            loop {
                if let Some(s) = w.try_acquire().map_err(e)? {
                    break s;
                }
                std::hint::spin_loop();
            }
        } else {
            w.acquire(T).map_err(e)?
        };
        pong.copy_in(s, &row[METADATA_SIZE..], false);
        w.commit(false).map_err(e)?;
    }
    w.finish();
    Ok(())
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = one_thread_cycle, cross_process_latency
}

fn main() {
    if let Ok(mode) = std::env::var(CHILD) {
        if let Err(e) = echo_child(&mode) {
            eprintln!("echo child: {e}");
            std::process::exit(3);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
