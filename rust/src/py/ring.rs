//! `_core.Buffer`: one shared ring, created or attached, with its control operations.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::buffer::SlotMemory;
use crate::layout::{DELIVERY_COMPETE, DELIVERY_EVERY_GROUP};
use crate::metadata::METADATA_SIZE;
use crate::ring::Ring;

/// A handle of one shared buffer in this process.
#[derive(Debug)]
#[pyclass(frozen, module = "mimocorb2._core")]
pub struct Buffer {
    pub(crate) ring: Arc<Ring>,
}

#[pymethods]
impl Buffer {
    /// Creates a new buffer region.
    #[staticmethod]
    #[pyo3(signature = (name, slot_count, data_size, dtype, overwrite=false, delivery="compete"))]
    fn create(
        py: Python<'_>,
        name: &str,
        slot_count: u32,
        data_size: u64,
        dtype: &str,
        overwrite: bool,
        delivery: &str,
    ) -> PyResult<Buffer> {
        let delivery = match delivery {
            "compete" => DELIVERY_COMPETE,
            "every_worker" => DELIVERY_EVERY_GROUP,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "buffer '{name}': delivery must be 'compete' or 'every_worker', got {other:?}"
                )))
            }
        };
        let ring = py.detach(|| {
            Ring::create_with(name, slot_count, data_size, dtype, overwrite, delivery)
        })?;
        Ok(Buffer {
            ring: Arc::new(ring),
        })
    }

    /// Attaches to the buffer held by process `pid` as descriptor `fd`.
    #[staticmethod]
    fn attach(pid: u32, fd: i32, instance: [u64; 2]) -> PyResult<Buffer> {
        Ok(Buffer {
            ring: Arc::new(Ring::attach(pid, fd, Some(instance))?),
        })
    }

    /// `(pid, fd, instance)` through which another process can attach.
    fn handle(&self) -> (u32, i32, [u64; 2]) {
        (
            std::process::id(),
            self.ring.raw_fd(),
            self.ring.instance_id(),
        )
    }

    /// The whole region as a writable buffer-protocol object.
    fn memory(&self) -> SlotMemory {
        SlotMemory::new(&self.ring)
    }

    #[getter]
    fn name(&self) -> &str {
        self.ring.name()
    }
    #[getter]
    fn dtype(&self) -> &str {
        self.ring.dtype()
    }
    #[getter]
    fn slot_count(&self) -> u32 {
        self.ring.slot_count()
    }
    #[getter]
    fn data_size(&self) -> usize {
        self.ring.data_size()
    }
    #[getter]
    #[allow(clippy::unused_self)]
    fn metadata_size(&self) -> usize {
        METADATA_SIZE
    }
    #[getter]
    fn slot_stride(&self) -> u64 {
        self.ring.geometry().slot_stride
    }
    #[getter]
    fn slots_offset(&self) -> u64 {
        self.ring.geometry().off_slots
    }
    #[getter]
    fn overwrite(&self) -> bool {
        self.ring.overwrite()
    }
    #[getter]
    fn creator_pid(&self) -> u32 {
        self.ring.creator_pid()
    }
    #[getter]
    fn is_ended(&self) -> bool {
        self.ring.is_ended()
    }
    #[getter]
    fn is_paused(&self) -> bool {
        self.ring.is_paused()
    }

    /// Ends the buffer at once (writes refused; readers drain, then see the end).
    fn force_end(&self) {
        self.ring.force_end();
    }
    fn pause(&self) {
        self.ring.pause();
    }
    fn resume(&self) {
        self.ring.resume();
    }
    /// Writers that must finish before an orderly end.
    fn set_expected_writers(&self, n: u32) {
        self.ring.set_expected_writers(n);
    }
    /// Frees the slots and writer registrations of a dead process:
    /// `(slots it was writing, events lost, writer registrations closed)`.
    fn reclaim(&self, pid: u32) -> (u32, u32, u32) {
        self.ring.reclaim(pid)
    }
    /// Like `reclaim` for a process that will be restarted (its writer registration waits for
    /// the replacement).
    fn reclaim_for_restart(&self, pid: u32) -> (u32, u32, u32) {
        self.ring.reclaim_for_restart(pid)
    }
    /// Reclaims every dead process holding slots or registrations; returns how many.
    fn reclaim_dead(&self) -> u32 {
        self.ring.reclaim_dead()
    }
    /// Process ids holding slots or active registrations.
    fn holders(&self) -> Vec<u32> {
        self.ring.holders()
    }
    /// `"compete"` or `"every_worker"`.
    #[getter]
    fn delivery(&self) -> &'static str {
        if self.ring.every_group() {
            "every_worker"
        } else {
            "compete"
        }
    }
    /// Index of reader group `name` (None: the default group), registering it if new.
    #[pyo3(signature = (name=None))]
    fn group_index(&self, name: Option<&str>) -> PyResult<usize> {
        Ok(self.ring.group_index(name)?)
    }
    /// Ends reader group `name` (its worker ended for good); returns the events it had not
    /// taken (counted as lost for it).
    fn end_group(&self, name: &str) -> PyResult<u64> {
        let g = self.ring.group_index(Some(name))?;
        Ok(self.ring.end_group(g))
    }
    /// Per-group statistics: dicts with `index`, `name`, `active`, `backlog`, `consumed`,
    /// `lost`, `overwritten`.
    fn groups<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.ring
            .group_stats()
            .into_iter()
            .map(|g| {
                let d = PyDict::new(py);
                d.set_item("index", g.index)?;
                d.set_item("name", g.name)?;
                d.set_item("active", g.active)?;
                d.set_item("backlog", g.backlog)?;
                d.set_item("consumed", g.consumed)?;
                d.set_item("lost", g.lost)?;
                d.set_item("overwritten", g.overwritten)?;
                Ok(d)
            })
            .collect()
    }
    /// Counts every event still waiting as lost (unread at shutdown); returns how many.
    fn discard_unread(&self) -> u64 {
        self.ring.discard_unread()
    }
    /// Process `pid` of worker `tag`, an expected writer, ended without registering: count it as
    /// a crashed writer. Returns True if it was counted.
    fn writer_failed(&self, pid: u32, tag: u64) -> bool {
        self.ring.writer_failed(pid, tag)
    }
    /// Declares the supervisor process (it reclaims dead processes while it lives).
    fn set_supervisor(&self, pid: u32) {
        self.ring.set_supervisor(pid);
    }
    /// True once the buffer ended and every committed event was taken.
    #[getter]
    fn end_reached(&self) -> bool {
        self.ring.end_reached()
    }
    /// The endpoint registrations with their counters (for the run's ledger): dicts with
    /// `role` ("writer"/"reader"), `pid`, `state`, `tag`, `events`, `filtered`, `dropped`, `failed`.
    fn registrations<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        const STATES: [&str; 5] = ["free", "active", "done", "crashed", "restarting"];
        self.ring
            .registrations()
            .into_iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("role", if r.writer { "writer" } else { "reader" })?;
                d.set_item("pid", r.pid)?;
                d.set_item(
                    "state",
                    STATES.get(r.state as usize).copied().unwrap_or("?"),
                )?;
                d.set_item("tag", r.tag)?;
                d.set_item("events", r.events)?;
                d.set_item("filtered", r.filtered)?;
                d.set_item("dropped", r.dropped)?;
                d.set_item("failed", r.failed)?;
                Ok(d)
            })
            .collect()
    }

    /// Statistics snapshot as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.ring.stats();
        let d = PyDict::new(py);
        d.set_item("event_count", s.event_count)?;
        d.set_item("slot_count", s.slot_count)?;
        d.set_item("filled_slots", s.filled_slots)?;
        d.set_item("empty_slots", s.empty_slots)?;
        d.set_item("rate", s.rate)?;
        d.set_item("wait_deadtime", s.wait_deadtime)?;
        d.set_item("mean_event_deadtime", s.mean_event_deadtime)?;
        d.set_item("paused_count", s.paused_count)?;
        d.set_item("paused", s.paused)?;
        d.set_item("flush_event_received", s.flushed)?;
        d.set_item("forced_shutdown", s.forced)?;
        d.set_item("overwritten", s.overwritten)?;
        d.set_item("lost", s.lost)?;
        d.set_item("active_writers", s.active_writers)?;
        d.set_item("crashed_writers", s.crashed_writers)?;
        d.set_item("consumed", s.consumed)?;
        d.set_item("lost_reader_crashed", s.lost_reader_crashed)?;
        d.set_item("lost_unread", s.lost_unread)?;
        d.set_item("aborted_writes", s.aborted_writes)?;
        d.set_item("repairs", s.repairs)?;
        d.set_item("held_slots", s.held_slots)?;
        Ok(d)
    }
}
