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
    // SAFETY: `arr` is a numpy array (the callers check `raw_layout_ok` on a numpy array, and
    // use it only for views they built with numpy), whose C object is larger than
    // `FLAGS_OFFSET + 4` bytes and 8-byte aligned; the GIL is held (`Bound`), so numpy does not
    // change the word concurrently.
    unsafe { flags_ptr(arr).read() }
}

/// Whether this numpy keeps the flags word where [`FLAGS_OFFSET`] says (checked once).
fn raw_layout_ok(py: Python<'_>) -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    // The offset holds for 64-bit pointers only.
    *OK.get_or_init(|| usize::BITS == 64 && probe(py).unwrap_or(false))
}

fn probe(py: Python<'_>) -> PyResult<bool> {
    let np = py.import("numpy")?;
    let a = np.call_method1("zeros", (4,))?;
    if a.get_type().name()? != "ndarray" {
        return Ok(false);
    }
    let setflags = |on: bool| a.call_method1("setflags", (on,));
    setflags(true)?;
    let on = raw_flags(&a);
    setflags(false)?;
    let off = raw_flags(&a);
    setflags(true)?;
    let again = raw_flags(&a);
    Ok(on & WRITEABLE != 0 && off & WRITEABLE == 0 && on == again && on ^ off == WRITEABLE)
}

/// Sets the `writeable` flag of the two views of a `[metadata, data]` list. The views are
/// numpy views of the buffer's writable shared memory, so making them writable is always
/// allowed (what `setflags` would check).
pub fn set_writeable(views: &Bound<'_, PyAny>, on: bool) -> PyResult<()> {
    let py = views.py();
    let fast = raw_layout_ok(py);
    for i in 0..2 {
        let v = views.get_item(i)?;
        if fast && v.get_type().name()? == "ndarray" {
            let old = raw_flags(&v);
            let new = if on {
                old | WRITEABLE
            } else {
                old & !WRITEABLE
            };
            // SAFETY: as in `raw_flags`: `v` is an ndarray whose flags word sits at
            // `FLAGS_OFFSET` (verified by `raw_layout_ok` for this process's numpy); writing it
            // under the GIL is what `setflags` does, and the base memory is writable.
            unsafe { flags_ptr(&v).write(new) };
        } else {
            v.call_method1(pyo3::intern!(py, "setflags"), (on,))?;
        }
    }
    Ok(())
}
