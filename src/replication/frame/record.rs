//! The RECORD frame, the stream's unit: its header encoded once when a write is published
//! ([`record_header`], the backlog appends the value), the remaining-time field patched for the
//! second it is sent ([`patch_time`]), and the in-place decoder the link reader applies a read
//! buffer of records with ([`decode_record`]: no copy of key or value).

use super::format::*;
use super::payload::Payload;
use crate::store::{Mutation, MutationKind, MutationRef, MAX_SEQ};
use bytes::BufMut;

/// Longest RECORD frame without its value: length, type, offset, version, key (u8 length and up
/// to 255 bytes), kind, and the largest kind's fields (a delta's).
pub const RECORD_HEADER_MAX: usize = 4 + 1 + 8 + 12 + 1 + 255 + 1 + 12 + 1 + 8 * 3 + 16;
/// Where a RECORD frame's version timestamp (`hlc`, u64) starts.
pub const RECORD_HLC_AT: usize = 4 + 1 + 8;
/// Where a RECORD frame's offset (u64) starts.
const RECORD_OFFSET_AT: usize = 4 + 1;

/// The time-dependent field of an encoded record: remaining seconds computed from an absolute
/// time when the frame is sent (expiry of a put or touch, the delay of a flush).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    None,
    /// `ttl_out(abs)`: an item's expiry (absolute unix seconds; 0 = never).
    Expiry {
        at: usize,
        abs: u32,
    },
    /// `at - now`, 0 once past: a delayed flush.
    Flush {
        at: usize,
        abs: u32,
    },
}

/// A RECORD frame encoded up to (not including) its value; the length prefix already counts the
/// value. See [`record_header`].
pub struct RecordHeader {
    buf: [u8; RECORD_HEADER_MAX],
    len: usize,
    /// Where the remaining-time field is, for [`patch_time`].
    pub time: TimeField,
}

impl RecordHeader {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Sets the record's offset (the backlog numbers a record under its lock, after encoding).
    pub fn set_offset(&mut self, offset: u64) {
        self.buf[RECORD_OFFSET_AT..RECORD_OFFSET_AT + 8].copy_from_slice(&offset.to_be_bytes());
    }
}

/// Encodes a record's frame up to its value (a put's value follows the header unchanged), with
/// remaining times for `now`.
pub fn record_header(offset: u64, m: &MutationRef<'_>, now: u32) -> RecordHeader {
    let mut buf = [0u8; RECORD_HEADER_MAX];
    let mut time = TimeField::None;
    let value_len = match m.kind {
        MutationKind::Put { value, .. } => value.len(),
        _ => 0,
    };
    let len = {
        let mut w: &mut [u8] = &mut buf[4..];
        let room = w.len();
        w.put_u8(T_RECORD);
        w.put_u64(offset);
        w.put_u64(m.version.hlc);
        w.put_u32(m.version.node);
        let key = &m.key[..m.key.len().min(255)];
        w.put_u8(key.len() as u8);
        w.put_slice(key);
        let time_at = |w: &[u8]| 4 + room - w.len();
        match m.kind {
            MutationKind::Put { flags, exptime, .. } => {
                w.put_u8(K_PUT);
                w.put_u32(flags);
                time = TimeField::Expiry {
                    at: time_at(w),
                    abs: exptime,
                };
                w.put_u32(ttl_out(exptime, now));
            }
            MutationKind::Delete => w.put_u8(K_DELETE),
            MutationKind::Touch { exptime } => {
                w.put_u8(K_TOUCH);
                time = TimeField::Expiry {
                    at: time_at(w),
                    abs: exptime,
                };
                w.put_u32(ttl_out(exptime, now));
            }
            MutationKind::Delta {
                base,
                incr,
                delta,
                value,
                seq,
                net,
            } => {
                w.put_u8(K_DELTA);
                w.put_u64(base.hlc);
                w.put_u32(base.node);
                w.put_u8(incr as u8);
                w.put_u64(delta);
                w.put_u64(value);
                w.put_u64(seq);
                w.put_i128(net);
            }
            MutationKind::Flush { at } => {
                w.put_u8(K_FLUSH);
                time = TimeField::Flush {
                    at: time_at(w),
                    abs: at,
                };
                // 0 = immediately; a time already past also means immediately.
                w.put_u32(at.saturating_sub(now));
            }
        }
        4 + room - w.len()
    };
    let frame_len = (len - 4 + value_len) as u32;
    buf[..4].copy_from_slice(&frame_len.to_be_bytes());
    RecordHeader { buf, len, time }
}

/// The key of an encoded RECORD frame (`frame` starts at its length prefix; empty if cut short).
pub fn record_key(frame: &[u8]) -> &[u8] {
    const AT: usize = RECORD_HLC_AT + 12;
    match frame.get(AT) {
        Some(&n) => frame.get(AT + 1..AT + 1 + n as usize).unwrap_or(&[]),
        None => &[],
    }
}

/// Rewrites the remaining-time field of an encoded record (`frame` starts at its length prefix)
/// for the second it is sent.
pub fn patch_time(frame: &mut [u8], field: TimeField, now: u32) {
    let (at, v) = match field {
        TimeField::None => return,
        TimeField::Expiry { at, abs } => (at, ttl_out(abs, now)),
        TimeField::Flush { at, abs } => (at, abs.saturating_sub(now)),
    };
    if let Some(b) = frame.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// The payload of a RECORD frame, borrowing key and value from it.
pub(super) fn record_body<'a>(
    p: &mut Payload<'a>,
    limits: &FrameLimits,
    now: u32,
) -> Result<(u64, MutationRef<'a>), FrameError> {
    let offset = p.u64()?;
    let version = p.version()?;
    let key = p.key_ref(true)?;
    let kind = match p.u8()? {
        K_PUT => {
            let flags = p.u32()?;
            let exptime = ttl_in(p.u32()?, now);
            MutationKind::Put {
                flags,
                exptime,
                value: p.value_ref(limits)?,
            }
        }
        K_DELETE => MutationKind::Delete,
        K_TOUCH => MutationKind::Touch {
            exptime: ttl_in(p.u32()?, now),
        },
        K_DELTA => MutationKind::Delta {
            base: p.version()?,
            incr: match p.u8()? {
                0 => false,
                1 => true,
                _ => return Err(FrameError::Malformed("record (delta direction)")),
            },
            delta: p.u64()?,
            value: p.u64()?,
            seq: match p.u64()? {
                s if s <= MAX_SEQ => s,
                _ => return Err(FrameError::Malformed("record (delta seq)")),
            },
            net: p.i128()?,
        },
        K_FLUSH => {
            let rem = p.u32()?;
            MutationKind::Flush {
                at: if rem == 0 { 0 } else { now.saturating_add(rem) },
            }
        }
        _ => return Err(FrameError::Malformed("record (kind)")),
    };
    // Only a flush applies to no key; every other record names one.
    if matches!(kind, MutationKind::Flush { .. }) != key.is_empty() {
        return Err(FrameError::BadKey(key.len()));
    }
    Ok((offset, Mutation { key, version, kind }))
}

/// Decodes the RECORD frame at the front of `buf` without copying its key or value:
/// `Ok(None)` if `buf` does not start with a whole RECORD frame (more bytes needed, or another
/// type of frame: [`decode`](super::decode) deals with those), else the record and the bytes
/// it took. A receiver applies a whole read buffer of records this way, then advances past them.
pub fn decode_record<'a>(
    buf: &'a [u8],
    limits: &FrameLimits,
    now: u32,
) -> Result<Option<(u64, MutationRef<'a>, usize)>, FrameError> {
    if buf.len() < 5 || buf[4] != T_RECORD {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > limits.max_frame() {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let mut p = Payload::new(&buf[5..4 + len], "record");
    let (offset, m) = record_body(&mut p, limits, now)?;
    p.end()?;
    Ok(Some((offset, m, 4 + len)))
}
