//! The buffers mapped in this process, by instance id, so that reclaiming a reader that died
//! while forwarding an event can look up the commit count of the buffer it forwarded to
//! (`ring_recovery` makes a ring of the mapping; this module knows only mappings).
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

/// The mapping of buffer `id`, if this process maps it.
pub(crate) fn mapping(id: u64) -> Option<Arc<Mapping>> {
    let v = RINGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    v.iter().find(|(i, _)| *i == id)?.1.upgrade()
}
