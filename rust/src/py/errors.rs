//! The single conversion of core errors into Python exceptions. The exception classes are
//! defined in `mimocorb2.exceptions` (so they pickle and can have several bases) and imported
//! here.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

pyo3::import_exception!(mimocorb2.exceptions, BufferEndedError);
pyo3::import_exception!(mimocorb2.exceptions, BufferTimeoutError);
pyo3::import_exception!(mimocorb2.exceptions, LayoutMismatchError);
pyo3::import_exception!(mimocorb2.exceptions, SharedMemoryError);
pyo3::import_exception!(mimocorb2.exceptions, SlotReleasedError);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::InvalidArgument(_) => PyValueError::new_err(msg),
            Error::SharedMemory(_) => SharedMemoryError::new_err(msg),
            Error::LayoutMismatch(_) => LayoutMismatchError::new_err(msg),
            Error::BufferEnded(_) => BufferEndedError::new_err(msg),
            Error::SlotReleased(_) => SlotReleasedError::new_err(msg),
            Error::Timeout(_) => BufferTimeoutError::new_err(msg),
            Error::Os(_) => PyOSError::new_err(msg),
        }
    }
}
