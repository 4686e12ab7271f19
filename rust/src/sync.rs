//! The only place that imports atomics, so that every shared-memory atomic of the crate is visible
//! in one list (and could be swapped for a model checker's types).
#![forbid(unsafe_code)]

pub use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

/// A value padded to 128 bytes, so that two hot counters never share a cache line (two lines
/// on CPUs with adjacent-line prefetch).
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.rs` file under `dir`, recursively.
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The promise of this module, enforced: no other source file of the crate names the
    /// standard library's atomics (`std::sync::atomic`, `core::sync::atomic`) directly.
    #[test]
    fn atomics_are_imported_only_here() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("rust/src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        assert!(files.len() > 10, "found only {files:?} under {src:?}");
        let offenders: Vec<String> = files
            .iter()
            .filter(|p| !p.ends_with("sync.rs"))
            .filter_map(|p| {
                let text = std::fs::read_to_string(p).expect("readable source");
                let bad = ["std::sync::atomic", "core::sync::atomic"]
                    .iter()
                    .any(|needle| text.contains(needle));
                bad.then(|| p.display().to_string())
            })
            .collect();
        assert!(
            offenders.is_empty(),
            "atomics must come from crate::sync, not std/core directly: {offenders:?}"
        );
    }
}
