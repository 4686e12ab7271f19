//! Zero-copy access to shared memory from Python: [`SlotMemory`] exports a whole buffer region
//! through the buffer protocol (numpy builds the slot views on it once), and [`with_bytes`]
//! borrows a Python buffer (a numpy array) as a byte slice for the batch and observer copies.

use std::ffi::c_int;
use std::sync::Arc;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;

use crate::ring::Ring;
use crate::shm::Mapping;

/// The whole shared region of one buffer as a writable buffer-protocol object. It keeps the
/// mapping alive for as long as any numpy view of it exists.
#[derive(Debug)]
#[pyclass(frozen, module = "mimocorb2._core")]
pub struct SlotMemory {
    map: Arc<Mapping>,
}

impl SlotMemory {
    pub fn new(ring: &Ring) -> SlotMemory {
        SlotMemory {
            map: ring.mapping(),
        }
    }
}

#[pymethods]
impl SlotMemory {
    fn __len__(&self) -> usize {
        self.map.len()
    }

    /// # Safety
    /// Called by `CPython` with a valid `view` to fill.
    #[allow(clippy::needless_pass_by_value)]
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        let (ptr, len) = (slf.get().map.as_ptr(), slf.get().map.len());
        // SAFETY: `view` is valid (CPython's contract, checked non-null); `ptr`/`len` describe a
        // live shared mapping that `slf` (stored in `view.obj` by FillInfo, with a new reference)
        // keeps alive until the view is released. The memory is writable (readonly = 0).
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr.cast(), len as isize, 0, flags)
        };
        if rc == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    #[allow(clippy::unused_self)]
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {}
}

fn checked(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<PyUntypedBuffer> {
    let buf = PyUntypedBuffer::get(obj)?;
    if !buf.is_c_contiguous() {
        return Err(PyValueError::new_err("array must be C-contiguous"));
    }
    if writable && buf.readonly() {
        return Err(PyValueError::new_err("array must be writable"));
    }
    Ok(buf)
}

/// Borrows a C-contiguous Python buffer as bytes for the duration of `f`.
pub fn with_bytes<T>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> PyResult<T>) -> PyResult<T> {
    let buf = checked(obj, false)?;
    let len = buf.len_bytes();
    if len == 0 {
        return f(&[]);
    }
    // SAFETY: `buf` keeps the exporter's memory valid and pinned while it lives (until the end of
    // this function); it is C-contiguous with `len` bytes and only read here.
    let bytes = unsafe { std::slice::from_raw_parts(buf.buf_ptr().cast::<u8>().cast_const(), len) };
    f(bytes)
}

/// Borrows a writable C-contiguous Python buffer as mutable bytes for the duration of `f`.
pub fn with_bytes_mut<T>(
    obj: &Bound<'_, PyAny>,
    f: impl FnOnce(&mut [u8]) -> PyResult<T>,
) -> PyResult<T> {
    let buf = checked(obj, true)?;
    let len = buf.len_bytes();
    if len == 0 {
        return f(&mut []);
    }
    // SAFETY: `buf` keeps the exporter's writable memory valid and pinned until the end of this
    // function; it is C-contiguous with `len` bytes. Python code in another thread could touch
    // the same array meanwhile, the same race numpy itself permits; it cannot free the memory.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buf.buf_ptr().cast::<u8>(), len) };
    f(bytes)
}
