//! Blocking calls from Python: release the GIL, wait in slices, let signals (Ctrl-C) through.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::error::{Error, Result};

/// Longest timeout accepted (about 32 years; the Python classes check the same limit).
const MAX_TIMEOUT_S: f64 = 1e9;

/// Length of one wait slice between two signal checks: a signal (Ctrl-C, a stop from the
/// control) is handled within this time, and an idle endpoint wakes this often (each wake-up
/// costs ~80 µs of CPU on a virtual machine, so 50 ms slices made every idle worker cost
/// ~0.15 % of a core; 200 ms make it ~0.04 %).
const SLICE: Duration = Duration::from_millis(200);

/// Converts a Python timeout (seconds, `None` = forever) into a duration.
pub fn timeout(t: Option<f64>) -> PyResult<Option<Duration>> {
    match t {
        None => Ok(None),
        Some(s) if (0.0..=MAX_TIMEOUT_S).contains(&s) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("timeout {s}: {e}"))),
        Some(s) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be None or a number of seconds from 0 to {MAX_TIMEOUT_S:e}, got {s}"
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
    // A deadline beyond what the clock can hold waits without one.
    let end = total.and_then(|t| Instant::now().checked_add(t));
    let mut first = true;
    loop {
        let slice = match end {
            Some(e) => e.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        // Only the first slice spins before it sleeps (see `wait::without_spin`).
        let resumed = !std::mem::replace(&mut first, false);
        match py.detach(|| {
            if resumed {
                crate::wait::without_spin(|| op(slice))
            } else {
                op(slice)
            }
        }) {
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
