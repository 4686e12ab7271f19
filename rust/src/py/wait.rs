//! Blocking calls from Python: release the GIL, wait in slices, let signals (Ctrl-C) through.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::error::{Error, Result};

/// Length of one wait slice between two signal checks.
const SLICE: Duration = Duration::from_millis(50);

/// Converts a Python timeout (seconds, `None` = forever) into a duration.
pub fn timeout(t: Option<f64>) -> PyResult<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds or None, got {s}"
        ))),
    }
}

/// Runs `op` (a blocking core call taking a slice timeout) with the GIL released, slice by
/// slice, checking for signals in between, until it succeeds or `total` has passed.
pub fn blocking<T, F>(py: Python<'_>, total: Option<Duration>, mut op: F) -> PyResult<T>
where
    F: FnMut(Duration) -> Result<T> + Send,
    T: Send,
{
    let end = total.map(|t| Instant::now() + t);
    loop {
        let slice = match end {
            Some(e) => e.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        match py.detach(|| op(slice)) {
            Err(Error::Timeout(m)) => {
                py.check_signals()?;
                if end.is_some_and(|e| Instant::now() >= e) {
                    return Err(Error::Timeout(m).into());
                }
            }
            r => return Ok(r?),
        }
    }
}
