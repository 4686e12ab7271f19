//! Switching numpy's `writeable` flag of a writer's slot views, once per `with` block.
//!
//! `ndarray.setflags` costs about a quarter of a microsecond per call, four calls per event. The
//! flag is a bit in the array object's C struct (`PyArrayObject_fields.flags`, after the object
//! header and six pointer-sized fields on 64-bit platforms), so flipping that bit directly costs
//! nanoseconds. Whether the struct really is laid out so in the numpy of this process is checked
//! once (by watching the bit while `setflags` changes the flag on a probe array); if not, every
//! flip goes through `setflags`.

use std::sync::OnceLock;

use pyo3::prelude::*;

/// `NPY_ARRAY_WRITEABLE`.
const WRITEABLE: i32 = 0x0400;
/// Byte offset of `flags` in `PyArrayObject_fields` (64-bit): `PyObject_HEAD` (16), `data`,
/// `nd` (padded to 8), `dimensions`, `strides`, `base`, `descr` (8 each).
const FLAGS_OFFSET: usize = 64;

#[allow(clippy::cast_ptr_alignment)] // object pointers are 8-byte aligned, the offset is 64
fn flags_ptr(arr: &Bound<'_, PyAny>) -> *mut i32 {
    arr.as_ptr()
        .cast::<u8>()
        .wrapping_add(FLAGS_OFFSET)
        .cast::<i32>()
}

/// Reads the raw flags word of `arr`, which must be a numpy array.
fn raw_flags(arr: &Bound<'_, PyAny>) -> i32 {
    // SAFETY: `arr` is a numpy array (the callers check `ndarray_type` on a numpy array, and
    // use it only for views they built with numpy), whose C object is larger than
    // `FLAGS_OFFSET + 4` bytes and 8-byte aligned; the GIL is held (`Bound`), so numpy does not
    // change the word concurrently.
    unsafe { flags_ptr(arr).read() }
}

/// The address of `numpy.ndarray`'s type object when this numpy keeps the flags word where
/// [`FLAGS_OFFSET`] says (checked once), else 0. Comparing type addresses costs nothing,
/// where asking a type for its name builds a string.
fn ndarray_type(py: Python<'_>) -> usize {
    static TYPE: OnceLock<usize> = OnceLock::new();
    // The offset holds for 64-bit pointers only.
    *TYPE.get_or_init(|| {
        if usize::BITS != 64 {
            return 0;
        }
        probe(py).ok().flatten().unwrap_or(0)
    })
}

/// The address of the ndarray type if flipping the raw flag works on a probe array.
fn probe(py: Python<'_>) -> PyResult<Option<usize>> {
    let np = py.import("numpy")?;
    let ndarray = np.getattr("ndarray")?;
    let a = np.call_method1("zeros", (4,))?;
    if !a.get_type().is(&ndarray) {
        return Ok(None);
    }
    let setflags = |on: bool| a.call_method1("setflags", (on,));
    setflags(true)?;
    let on = raw_flags(&a);
    setflags(false)?;
    let off = raw_flags(&a);
    setflags(true)?;
    let again = raw_flags(&a);
    let ok = on & WRITEABLE != 0 && off & WRITEABLE == 0 && on == again && on ^ off == WRITEABLE;
    // The type object lives as long as numpy, which stays imported (module objects are never
    // unloaded by CPython), so its address identifies ndarrays for the life of the process.
    Ok(ok.then(|| ndarray.as_ptr() as usize))
}

/// Sets the `writeable` flag of the two views of a `[metadata, data]` list. The views are
/// numpy views of the buffer's writable shared memory, so making them writable is always
/// allowed (what `setflags` would check).
pub fn set_writeable(views: &Bound<'_, PyAny>, on: bool) -> PyResult<()> {
    let py = views.py();
    let ndarray = ndarray_type(py);
    for i in 0..2 {
        let v = views.get_item(i)?;
        if ndarray != 0 && v.get_type().as_ptr() as usize == ndarray {
            let old = raw_flags(&v);
            let new = if on {
                old | WRITEABLE
            } else {
                old & !WRITEABLE
            };
            // SAFETY: as in `raw_flags`: `v` is an ndarray whose flags word sits at
            // `FLAGS_OFFSET` (verified by `ndarray_type` for this process's numpy); writing it
            // under the GIL is what `setflags` does, and the base memory is writable.
            unsafe { flags_ptr(&v).write(new) };
        } else {
            v.call_method1(pyo3::intern!(py, "setflags"), (on,))?;
        }
    }
    Ok(())
}
