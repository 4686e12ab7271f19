//! Helpers of the in-process ring tests (`ring.rs`, `ring_threads.rs`): a ring of 16-byte
//! events, their payload, and writing or reading one event.
// Each test crate includes this file and uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mimocorb2_core::metadata::{SlotMetadata, METADATA_SIZE};
use mimocorb2_core::{Reader, Ring, Writer};

/// Generous bound for every blocking call, so a bug fails a test instead of hanging it.
pub const T: Option<Duration> = Some(Duration::from_secs(5));
pub const DTYPE: &str = r#"[["a", "<u8"], ["b", "<u8"]]"#;
pub const DATA: u64 = 16;

pub fn ring(name: &str, slots: u32, overwrite: bool) -> Arc<Ring> {
    let name = format!("test-{name}-{}", std::process::id());
    Arc::new(Ring::create(&name, slots, DATA, DTYPE, overwrite).unwrap())
}

/// A 16-byte event payload.
pub fn payload(a: u64, b: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&a.to_le_bytes());
    p[8..].copy_from_slice(&b.to_le_bytes());
    p
}

/// Splits a copied slot (metadata + data) into its metadata and payload.
pub fn parse(row: &[u8]) -> (SlotMetadata, u64, u64) {
    let md = SlotMetadata::from_bytes(row[..METADATA_SIZE].try_into().unwrap());
    let d = &row[METADATA_SIZE..METADATA_SIZE + 16];
    let a = u64::from_le_bytes(d[..8].try_into().unwrap());
    let b = u64::from_le_bytes(d[8..].try_into().unwrap());
    (md, a, b)
}

pub fn write_one(w: &mut Writer, a: u64, b: u64) -> u32 {
    let s = w.acquire(T).unwrap();
    w.ring().copy_in(s, &payload(a, b), false);
    w.commit(true).unwrap();
    s
}

pub fn read_one(r: &mut Reader, ring: &Ring) -> Option<(SlotMetadata, u64, u64)> {
    let s = r.acquire(T).unwrap()?;
    let mut row = [0u8; METADATA_SIZE + 16];
    ring.copy_out(s, &mut row);
    r.release().unwrap();
    Some(parse(&row))
}

pub fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
