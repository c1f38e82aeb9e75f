//! The replication wire format: length-prefixed binary frames, encoded and decoded without I/O.
//!
//! Every frame is `u32 length (big endian, counting the type byte and payload) | u8 type |
//! payload`. Decoding never trusts the peer: the length is bounded before anything is buffered,
//! keys and values are checked against the same limits as client input, and a frame whose
//! payload does not have exactly the advertised shape is an error, never a panic.
//! Expiry travels as remaining seconds and is turned back into an absolute time on receipt, so
//! the two nodes' wall clocks need not agree.
//!
//! RECORD frames are also what the replication backlog holds: [`record_header`] encodes
//! everything of a record but its value once, at publish time, and the backlog appends the value
//! behind it. The remaining time in such a frame is right for the second it was published; a
//! link patches it for the second it sends (see [`TimeField`] and [`patch_time`]), so that a
//! record that waited in the backlog (a peer catching up after a break) still expires at the
//! origin's absolute time.
//!
//! Files: `format` (type codes, [`Frame`], [`FrameLimits`], [`FrameError`], the expiry rule),
//! `encode` (every frame into bytes; snapshot entries straight from the store), `record` (the
//! RECORD frame both ways: the backlog's header, its patching, the in-place decoder the link
//! reader applies), `payload` (the bounds-checked field reader), `decode` (bytes into any
//! frame). A change to the bytes on the wire (a new frame, a compressed payload) starts in
//! `format` and touches `encode` and `decode`, or `record` for the stream's records.

mod decode;
mod encode;
mod format;
mod payload;
mod record;

pub use decode::decode;
pub use encode::{encode, encode_snap_item, encode_snap_tomb, SnapItemRef};
pub use format::{Frame, FrameError, FrameLimits, KEY_MAX, MAGIC, PROTO_VERSION};
pub use record::{
    decode_record, patch_time, record_header, record_key, RecordHeader, TimeField,
    RECORD_HEADER_MAX, RECORD_HLC_AT,
};

#[cfg(test)]
mod tests;
