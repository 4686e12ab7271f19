//! `PyO3` bindings of the core as the native module `mimocorb2._core`. Only argument adaptation,
//! GIL handling and error mapping live here; all logic is in the core modules.

mod buffer;
mod endpoints;
mod errors;
mod ring;
mod supervisor;
mod wait;
mod writeable;

/// The native module `mimocorb2._core`.
#[pyo3::pymodule(name = "_core", gil_used = false)]
mod core_module {
    #[pymodule_export]
    use super::buffer::SlotMemory;
    #[pymodule_export]
    use super::endpoints::{Observer, Reader, Writer};
    #[pymodule_export]
    use super::ring::Buffer;
    #[pymodule_export]
    use super::supervisor::{die_with_parent, Supervisor};

    use pyo3::prelude::*;

    /// Forgets the cached process id; registered with `os.register_at_fork(after_in_child=...)`.
    #[pyfunction]
    fn after_fork() {
        crate::clock::reset_pid_cache();
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("LAYOUT_VERSION", crate::layout::LAYOUT_VERSION)?;
        m.add("METADATA_SIZE", crate::metadata::METADATA_SIZE)?;
        m.add("TRASH", crate::ring::TRASH)?;
        Ok(())
    }
}
