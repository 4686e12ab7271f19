//! `_core.Supervisor`: the process supervisor for the control.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use rustix::process::Signal;

use super::ring::Buffer;
use crate::supervisor::{self, SpawnSpec};

/// Starts, watches and stops worker processes; captures their output.
#[derive(Debug)]
#[pyclass(frozen, module = "mimocorb2._core")]
pub struct Supervisor {
    inner: supervisor::Supervisor,
}

fn parse_signal(name: &str) -> PyResult<Signal> {
    Ok(match name {
        "SIGTERM" | "TERM" => Signal::TERM,
        "SIGKILL" | "KILL" => Signal::KILL,
        "SIGINT" | "INT" => Signal::INT,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unsupported signal {other}"
            )))
        }
    })
}

#[pymethods]
impl Supervisor {
    #[new]
    fn new() -> Supervisor {
        Supervisor {
            inner: supervisor::Supervisor::new(),
        }
    }

    /// Reclaim the slots of ended processes in this buffer.
    fn watch(&self, buffer: &Buffer) {
        self.inner.watch(buffer.ring.clone());
    }

    /// Starts a process; returns its pid. A process that fails is started again up to
    /// `max_restarts` times.
    #[pyo3(signature = (name, worker, program, args, log_path, env=Vec::new(), max_restarts=0))]
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        name: String,
        worker: String,
        program: String,
        args: Vec<String>,
        log_path: std::path::PathBuf,
        env: Vec<(String, String)>,
        max_restarts: u32,
    ) -> PyResult<u32> {
        let spec = SpawnSpec {
            name,
            worker,
            program,
            args,
            env,
            log_path,
            max_restarts,
        };
        Ok(self.inner.spawn(spec)?)
    }

    /// State of every process (reclaims the slots of processes that ended).
    fn poll<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner
            .poll()
            .into_iter()
            .map(|p| {
                let d = PyDict::new(py);
                d.set_item("name", p.name)?;
                d.set_item("worker", p.worker)?;
                d.set_item("pid", p.pid)?;
                d.set_item("alive", p.alive)?;
                d.set_item("exit_code", p.exit_code)?;
                d.set_item("signal", p.signal)?;
                d.set_item("cpu_seconds", p.cpu_seconds)?;
                d.set_item("runtime", p.runtime)?;
                d.set_item("restarts", p.restarts)?;
                d.set_item("stopped", p.stopped)?;
                d.set_item("earlier_pids", p.earlier_pids.clone())?;
                d.set_item("reclaimed", p.reclaimed)?;
                d.set_item("tail", p.tail)?;
                Ok(d)
            })
            .collect()
    }

    /// Up to `max` captured lines `(process, worker, stream, text)` and the dropped count.
    #[pyo3(signature = (max=10_000))]
    fn drain_lines(&self, max: usize) -> (Vec<(String, String, &'static str, String)>, u64) {
        let (lines, dropped) = self.inner.drain_lines(max);
        (
            lines
                .into_iter()
                .map(|l| (l.process, l.worker, l.stream, l.text))
                .collect(),
            dropped,
        )
    }

    /// Sends a signal ("SIGTERM", "SIGKILL", "SIGINT") to processes or workers by name.
    #[pyo3(signature = (signal, names=None))]
    #[allow(clippy::needless_pass_by_value)]
    fn signal(&self, signal: &str, names: Option<Vec<String>>) -> PyResult<usize> {
        Ok(self.inner.signal(names.as_deref(), parse_signal(signal)?))
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; waits until they ended.
    #[pyo3(signature = (names=None, grace=2.0))]
    #[allow(clippy::needless_pass_by_value)]
    fn terminate(&self, py: Python<'_>, names: Option<Vec<String>>, grace: f64) {
        // NaN, negative or absurd grace times are clamped to 0..1 hour.
        let grace = Duration::try_from_secs_f64(grace.clamp(0.0, 3600.0)).unwrap_or_default();
        py.detach(|| self.inner.terminate(names.as_deref(), grace));
    }
}

/// Makes this process die with its parent; False if the parent is already gone.
#[pyfunction]
pub fn die_with_parent(expected_parent: u32) -> bool {
    supervisor::die_with_parent(expected_parent)
}
