//! The 24-byte metadata record at the start of every slot.
#![forbid(unsafe_code)]

/// Metadata of one event, byte-compatible with the numpy dtype
/// `[("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")]`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SlotMetadata {
    /// Unique, increasing event number of the buffer.
    pub counter: i64,
    /// Epoch seconds at which the event was committed.
    pub timestamp: f64,
    /// Fraction (0..1) of the time since the writer's previous event spent waiting for a slot.
    pub deadtime: f64,
}

/// Size of [`SlotMetadata`] in bytes.
pub const METADATA_SIZE: usize = std::mem::size_of::<SlotMetadata>();
const _: () = assert!(METADATA_SIZE == 24);

impl SlotMetadata {
    /// The record as its 24 little-endian bytes (the layout numpy sees on x86-64 and aarch64).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; METADATA_SIZE] {
        let mut out = [0u8; METADATA_SIZE];
        out[0..8].copy_from_slice(&self.counter.to_ne_bytes());
        out[8..16].copy_from_slice(&self.timestamp.to_ne_bytes());
        out[16..24].copy_from_slice(&self.deadtime.to_ne_bytes());
        out
    }

    /// Reads a record from its 24 bytes.
    #[must_use]
    pub fn from_bytes(b: &[u8; METADATA_SIZE]) -> Self {
        let mut c = [0u8; 8];
        c.copy_from_slice(&b[0..8]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[8..16]);
        let mut d = [0u8; 8];
        d.copy_from_slice(&b[16..24]);
        SlotMetadata {
            counter: i64::from_ne_bytes(c),
            timestamp: f64::from_ne_bytes(t),
            deadtime: f64::from_ne_bytes(d),
        }
    }
}
