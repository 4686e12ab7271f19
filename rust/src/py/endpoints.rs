//! `_core.Writer`, `_core.Reader` and `_core.Observer`: the process-local endpoints.
//! Fast paths run with the GIL held (a hand-off takes well under a microsecond); waits release
//! it in slices and let signals through.

use pyo3::prelude::*;

use super::buffer::{with_bytes, with_bytes_mut};
use super::ring::Buffer;
use super::wait::{blocking, timeout};
use crate::handles;

/// A writer endpoint (registers with the buffer on creation).
#[derive(Debug)]
#[pyclass(module = "mimocorb2._core")]
pub struct Writer {
    inner: handles::Writer,
}

#[pymethods]
impl Writer {
    #[new]
    fn new(buffer: &Buffer) -> PyResult<Writer> {
        Ok(Writer { inner: handles::Writer::new(buffer.ring.clone())? })
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

    /// The held slot, if any.
    #[getter]
    fn held(&self) -> Option<u32> {
        self.inner.held()
    }

    /// Writes up to `count` rows of `src` in one hand-off; returns how many were taken.
    #[pyo3(signature = (src, count, with_meta=false, stamp=true, timeout=None))]
    fn write_batch(
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

/// A reader endpoint.
#[derive(Debug)]
#[pyclass(module = "mimocorb2._core")]
pub struct Reader {
    inner: handles::Reader,
}

#[pymethods]
impl Reader {
    #[new]
    fn new(buffer: &Buffer) -> Reader {
        Reader { inner: handles::Reader::new(buffer.ring.clone()) }
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

    /// Gives the held slot back.
    fn release(&mut self) -> PyResult<()> {
        Ok(self.inner.release()?)
    }

    /// Copies up to `max` events (metadata + data rows) into `dst`; returns how many, 0 at the
    /// end of the stream.
    #[pyo3(signature = (dst, max, timeout=None))]
    fn read_batch(
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
    fn new(buffer: &Buffer) -> Observer {
        Observer { inner: handles::Observer::new(buffer.ring.clone()) }
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
        with_bytes_mut(dst, |bytes| blocking(py, total, |slice| inner.observe(bytes, Some(slice))))
    }
}
