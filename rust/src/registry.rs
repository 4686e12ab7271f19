//! The buffers mapped in this process, by instance id, so that reclaiming a reader that died
//! while forwarding an event can look up the commit count of the buffer it forwarded to.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex, Weak};

use crate::shm::Mapping;

static RINGS: Mutex<Vec<(u64, Weak<Mapping>)>> = Mutex::new(Vec::new());

/// Remembers the mapping of buffer `id` (weakly: the registry keeps nothing alive).
pub(crate) fn remember(id: u64, map: &Arc<Mapping>) {
    let mut v = RINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    v.retain(|(_, w)| w.strong_count() > 0);
    if !v.iter().any(|(i, _)| *i == id) {
        v.push((id, Arc::downgrade(map)));
    }
}

/// A handle on buffer `id`, if this process maps it.
pub(crate) fn ring(id: u64) -> Option<crate::ring::Ring> {
    let map = {
        let v = RINGS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.iter().find(|(i, _)| *i == id)?.1.upgrade()?
    };
    crate::ring::Ring::from_shared(map).ok()
}

/// Events committed so far by writer registration `reg` of buffer `id`, if this process maps
/// that buffer.
pub(crate) fn writer_commits(id: u64, reg: u64) -> Option<u64> {
    ring(id)?.writer_events(usize::try_from(reg).ok()?)
}
