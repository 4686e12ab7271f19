//! `_core.Writer`, `_core.Reader` and `_core.Observer`: the process-local endpoints.
//! Fast paths run with the GIL held (a hand-off takes well under a microsecond); waits release
//! it in slices and let signals through.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::buffer::{with_bytes, with_bytes_mut};
use super::ring::Buffer;
use super::wait::{blocking, timeout};
use super::writeable::set_writeable;
use crate::handles;
use crate::ring::{Ring, TRASH};
use crate::ring_protocol::Disposition as handles_disposition;

/// The `[metadata, data]` views of a buffer's slots in this process: indexed once per slot in
/// the sequence the Python endpoint built at construction (`views[TRASH]` gives the discard
/// slot's views), then cached.
#[derive(Debug)]
struct SlotViews {
    source: Py<PyAny>,
    cache: Vec<Option<Py<PyAny>>>,
    trash: Option<Py<PyAny>>,
}

impl SlotViews {
    /// Takes `views`, a sequence of one `[metadata, data]` entry per slot of `ring`.
    fn new(ring: &Ring, views: &Bound<'_, PyAny>) -> PyResult<SlotViews> {
        let n = ring.slot_count() as usize;
        let len = views.len()?;
        if len != n {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "views: expected one entry per slot ({n}), got {len}"
            )));
        }
        Ok(SlotViews {
            source: views.clone().unbind(),
            cache: (0..n).map(|_| None).collect(),
            trash: None,
        })
    }

    fn get(&mut self, py: Python<'_>, slot: u32) -> PyResult<Py<PyAny>> {
        let cell = if slot == TRASH {
            &mut self.trash
        } else {
            self.cache
                .get_mut(slot as usize)
                .ok_or_else(|| pyo3::exceptions::PyIndexError::new_err(format!("no slot {slot}")))?
        };
        if let Some(v) = cell {
            return Ok(v.clone_ref(py));
        }
        let v = self.source.bind(py).get_item(slot)?.unbind();
        *cell = Some(v.clone_ref(py));
        Ok(v)
    }

    fn end(py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyList::new(py, [py.None(), py.None()])?.into_any().unbind())
    }
}

/// A writer endpoint (registers with the buffer on creation). Also the context manager of
/// `mimocorb2.mimo_buffer.BufferWriter`, which subclasses it and hands it the slot views.
#[derive(Debug)]
#[pyclass(module = "mimocorb2._core", subclass)]
pub struct Writer {
    inner: handles::Writer,
    views: SlotViews,
    timeout: Option<f64>,
    stamp: bool,
    /// The views handed out by `__enter__`, writable until `__exit__`.
    open: Option<Py<PyAny>>,
}

#[pymethods]
impl Writer {
    /// Registers a writer of `buffer`; `views[slot]` is what `with` yields for a slot.
    #[new]
    #[pyo3(signature = (buffer, views, timeout=None, stamp=false))]
    fn new(
        buffer: &Bound<'_, Buffer>,
        views: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        stamp: bool,
    ) -> PyResult<Writer> {
        let ring = buffer.get().ring.clone();
        let views = SlotViews::new(&ring, views)?;
        self::timeout(timeout)?;
        Ok(Writer {
            inner: handles::Writer::new(ring)?,
            views,
            timeout,
            stamp,
            open: None,
        })
    }

    /// Takes a slot; its `[metadata, data]` views are writable until `__exit__` (numpy's
    /// `writeable` flag), so a late write after the block raises instead of changing a
    /// published event.
    fn __enter__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let slot = self.acquire(py, self.timeout)?;
        let views = self.views.get(py, slot)?;
        set_writeable(views.bind(py), true)?;
        self.open = Some(views.clone_ref(py));
        Ok(views)
    }

    #[pyo3(signature = (exc_type, _exc=None, _tb=None))]
    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if let Some(views) = self.open.take() {
            set_writeable(views.bind(py), false)?;
        }
        if exc_type.is_none_or(PyAnyMethods::is_none) {
            self.inner.commit(self.stamp)?;
        } else if self.inner.held().is_some() {
            self.inner.abort()?;
        }
        Ok(false)
    }

    /// Takes a free slot; returns its index (`TRASH` while paused).
    #[pyo3(signature = (timeout=None))]
    fn acquire(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u32> {
        if let Some(s) = self.inner.try_acquire()? {
            return Ok(s);
        }
        let total = self::timeout(timeout)?;
        let inner = &mut self.inner;
        blocking(py, total, |slice| inner.acquire(Some(slice)))
    }

    /// Publishes the held slot; `stamp=True` fills counter, timestamp and dead time.
    #[pyo3(signature = (stamp=false))]
    fn commit(&mut self, stamp: bool) -> PyResult<()> {
        Ok(self.inner.commit(stamp)?)
    }

    /// Returns the held slot unpublished.
    fn abort(&mut self) -> PyResult<()> {
        Ok(self.inner.abort()?)
    }

    /// This writer is done; returns True if that ended the buffer.
    fn finish(&mut self) -> bool {
        self.inner.finish()
    }

    /// Default timeout (seconds) of this writer's waits.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout
    }

    /// Whether commits stamp counter, timestamp and dead time (the Importer path).
    #[getter]
    fn stamp(&self) -> bool {
        self.stamp
    }

    #[setter]
    fn set_stamp(&mut self, stamp: bool) {
        self.stamp = stamp;
    }

    /// The held slot, if any.
    #[getter]
    fn held(&self) -> Option<u32> {
        self.inner.held()
    }

    /// Writes up to `count` rows of `src` (raw slot rows: the data bytes of one event each, or
    /// with `with_meta` its metadata followed by them) in one hand-off; returns how many were
    /// taken.
    #[pyo3(signature = (src, count, with_meta=false, stamp=true, timeout=None))]
    fn write_rows(
        &mut self,
        py: Python<'_>,
        src: &Bound<'_, PyAny>,
        count: usize,
        with_meta: bool,
        stamp: bool,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let total = self::timeout(timeout)?;
        let inner = &mut self.inner;
        with_bytes(src, |bytes| {
            blocking(py, total, |slice| {
                inner.write_batch(bytes, count, with_meta, stamp, Some(slice))
            })
        })
    }
}

/// A reader endpoint. Also the context manager of `mimocorb2.mimo_buffer.BufferReader`.
#[derive(Debug)]
#[pyclass(module = "mimocorb2._core", subclass)]
pub struct Reader {
    inner: handles::Reader,
    views: SlotViews,
    timeout: Option<f64>,
}

#[pymethods]
impl Reader {
    /// A reader of `buffer` in reader group `group`; `views[slot]` is what `with` yields.
    #[new]
    #[pyo3(signature = (buffer, views, timeout=None, group=None))]
    fn new(
        buffer: &Bound<'_, Buffer>,
        views: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        group: Option<&str>,
    ) -> PyResult<Reader> {
        let ring = buffer.get().ring.clone();
        let views = SlotViews::new(&ring, views)?;
        self::timeout(timeout)?;
        Ok(Reader {
            inner: handles::Reader::with_group(ring, group)?,
            views,
            timeout,
        })
    }

    fn __enter__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.acquire(py, self.timeout)? {
            Some(slot) => self.views.get(py, slot),
            None => SlotViews::end(py),
        }
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        if self.inner.held().is_some() {
            self.inner.release()?;
        }
        Ok(false)
    }

    /// Takes the next event's slot; None at the end of the stream.
    #[pyo3(signature = (timeout=None))]
    fn acquire(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<u32>> {
        let total = self::timeout(timeout)?;
        if let Some(r) = self.inner.try_acquire()? {
            return Ok(r);
        }
        let inner = &mut self.inner;
        blocking(py, total, |slice| inner.acquire(Some(slice)))
    }

    /// Default timeout (seconds) of this reader's waits.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout
    }

    /// Index of this reader's group.
    #[getter]
    fn group_index(&self) -> usize {
        self.inner.group()
    }

    /// Gives the held slot back.
    fn release(&mut self) -> PyResult<()> {
        Ok(self.inner.release()?)
    }

    /// Sets what releasing the held event counts as in the ledger: "consumed" (default),
    /// "filtered" (filtered out on purpose), "dropped" (the worker's sink had ended) or
    /// "failed" (the worker's function failed on it).
    fn set_disposition(&mut self, how: &str) -> PyResult<()> {
        let d = match how {
            "consumed" => handles_disposition::Consumed,
            "filtered" => handles_disposition::Filtered,
            "dropped" => handles_disposition::Dropped,
            "failed" => handles_disposition::Failed,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "disposition must be 'consumed', 'filtered', 'dropped' or 'failed', got {other:?}"
            )))
            }
        };
        self.inner.set_disposition(d);
        Ok(())
    }

    /// Records that the held event is about to be committed through `writer`, so that a crash
    /// before this reader releases it counts the event as delivered, not lost.
    fn mark_forward(&self, writer: &Bound<'_, Writer>) -> PyResult<()> {
        Ok(self.inner.mark_forward(&writer.borrow().inner)?)
    }

    /// Copies up to `max` events (raw rows of metadata + data bytes) into `dst`; returns how
    /// many, 0 at the end of the stream.
    #[pyo3(signature = (dst, max, timeout=None))]
    fn read_rows(
        &mut self,
        py: Python<'_>,
        dst: &Bound<'_, PyAny>,
        max: usize,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let total = self::timeout(timeout)?;
        let inner = &mut self.inner;
        with_bytes_mut(dst, |bytes| {
            blocking(py, total, |slice| inner.read_batch(bytes, max, Some(slice)))
        })
    }
}

/// An observer endpoint: copies the newest event into a private array.
#[derive(Debug)]
#[pyclass(module = "mimocorb2._core")]
pub struct Observer {
    inner: handles::Observer,
}

#[pymethods]
impl Observer {
    #[new]
    fn new(buffer: &Bound<'_, Buffer>) -> Observer {
        Observer {
            inner: handles::Observer::new(buffer.get().ring.clone()),
        }
    }

    /// Copies the newest event newer than the last one seen into `dst` (metadata + data bytes);
    /// False after the end of the buffer.
    #[pyo3(signature = (dst, timeout=None))]
    fn observe(
        &mut self,
        py: Python<'_>,
        dst: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let total = self::timeout(timeout)?;
        let inner = &mut self.inner;
        with_bytes_mut(dst, |bytes| {
            blocking(py, total, |slice| inner.observe(bytes, Some(slice)))
        })
    }
}
