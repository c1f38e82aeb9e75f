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

use crate::store::{Contribution, Counter, Mutation, MutationKind, MutationRef, Version, MAX_SEQ};
use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const MAGIC: [u8; 4] = *b"RPCD";
/// 3: PN-counter contributions in DELTA records and SNAP_ITEM frames.
pub const PROTO_VERSION: u16 = 3;
/// memcached's KEY_MAX_LENGTH.
pub const KEY_MAX: usize = 250;
/// Room for a frame's fixed fields on top of its key and value.
const FRAME_OVERHEAD: usize = 1024;
/// Most contributions one counter may carry in a snapshot frame (one per node that incremented
/// it; far more nodes than any mesh has).
const MAX_CONTRIBUTIONS: usize = 4096;
/// `ttl` value meaning "already expired" (distinct from 0 = never).
const TTL_EXPIRED: u32 = u32::MAX;

const T_HELLO: u8 = 1;
const T_PSYNC: u8 = 3;
const T_FULLSYNC: u8 = 4;
const T_CONTINUE: u8 = 5;
const T_SNAP_ITEM: u8 = 6;
const T_SNAP_TOMB: u8 = 7;
const T_SNAP_END: u8 = 8;
const T_SNAP_FLUSH: u8 = 9;
const T_SYNC_MODE: u8 = 10;
const T_RECORD: u8 = 16;
const T_HEARTBEAT: u8 = 32;
const T_BYE: u8 = 33;

const K_PUT: u8 = 1;
const K_DELETE: u8 = 2;
const K_TOUCH: u8 = 3;
const K_DELTA: u8 = 4;
const K_FLUSH: u8 = 5;

/// Limits a receiver enforces on every frame.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub item_size_max: usize,
}

impl Limits {
    pub fn max_frame(&self) -> usize {
        self.item_size_max + KEY_MAX + FRAME_OVERHEAD
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame each side sends inside the secure channel (see `secure`). `listen_port` is
    /// the sender's replication port (0 = none) and `listen_ip` the address its listener binds
    /// (None: all interfaces), which let the receiver match an incoming link to a configured
    /// peer even when the connection leaves from another source address.
    Hello {
        version: u16,
        node: u32,
        listen_port: u16,
        listen_ip: Option<std::net::IpAddr>,
    },
    /// "My backlog is `run` up to `next - 1`; I have applied your run `want_run` up to
    /// `want_offset`" (`want_run` 0 = nothing usable: send me a full snapshot).
    Psync {
        run: u64,
        next: u64,
        want_run: u64,
        want_offset: u64,
    },
    /// Whether the sender needs to send a full snapshot (it cannot resume the receiver from its
    /// backlog); if either side does, both do.
    SyncMode {
        full: bool,
    },
    /// A snapshot follows, then records from `start` on.
    FullSync {
        run: u64,
        start: u64,
    },
    /// Records follow from `from` on (partial sync).
    Continue {
        run: u64,
        from: u64,
    },
    /// One item of a snapshot: `version` orders the value, `touched` (ZERO if none) the expiry,
    /// `counter` its PN-counter state if it was incremented.
    SnapItem {
        key: Bytes,
        value: Bytes,
        flags: u32,
        exptime: u32,
        version: Version,
        base: Version,
        touched: Version,
        counter: Option<Counter>,
    },
    /// A deleted key (`version` ZERO if it only remembers a touch), and the newest touch the
    /// sender knows for it (`touched` ZERO if none) with its expiry.
    SnapTomb {
        key: Bytes,
        version: Version,
        touched: Version,
        exptime: u32,
    },
    SnapEnd {
        items: u64,
    },
    /// The sender's newest flush_all (`at` absolute on the receiver's clock, 0 = done).
    SnapFlush {
        at: u32,
        version: Version,
    },
    Record {
        offset: u64,
        mutation: Mutation,
    },
    /// Liveness plus the receiver's progress: `ack` is the last offset of the peer's stream it
    /// has applied, `last` the newest offset of its own backlog.
    Heartbeat {
        ack: u64,
        last: u64,
        now_ms: u64,
    },
    /// The sender is shutting down after having sent everything up to `last`.
    Bye {
        last: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("key length {0} out of range")]
    BadKey(usize),
    #[error("value of {0} bytes exceeds the item size limit")]
    ValueTooLarge(usize),
}

/// Remaining seconds of an absolute expiry: 0 = never, `TTL_EXPIRED` = already past.
fn ttl_out(abs: u32, now: u32) -> u32 {
    match abs {
        0 => 0,
        t if t <= now => TTL_EXPIRED,
        t => (t - now).min(TTL_EXPIRED - 1),
    }
}

/// Back to an absolute time on the receiver's clock; 1 is "long past" for the store.
fn ttl_in(ttl: u32, now: u32) -> u32 {
    match ttl {
        0 => 0,
        TTL_EXPIRED => 1,
        t => now.saturating_add(t).max(2),
    }
}

fn put_version(out: &mut BytesMut, v: Version) {
    out.put_u64(v.hlc);
    out.put_u32(v.node);
}

/// Appends one encoded frame to `out`. `now` (unix seconds) converts expiry times.
pub fn encode(frame: &Frame, now: u32, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    match frame {
        Frame::Hello {
            version,
            node,
            listen_port,
            listen_ip,
        } => {
            out.put_u8(T_HELLO);
            out.put_slice(&MAGIC);
            out.put_u16(*version);
            out.put_u32(*node);
            out.put_u16(*listen_port);
            let ip = match listen_ip {
                Some(std::net::IpAddr::V4(v4)) => v4.to_ipv6_mapped(),
                Some(std::net::IpAddr::V6(v6)) => *v6,
                None => std::net::Ipv6Addr::UNSPECIFIED,
            };
            out.put_slice(&ip.octets());
        }
        Frame::Psync {
            run,
            next,
            want_run,
            want_offset,
        } => {
            out.put_u8(T_PSYNC);
            out.put_u64(*run);
            out.put_u64(*next);
            out.put_u64(*want_run);
            out.put_u64(*want_offset);
        }
        Frame::SyncMode { full } => {
            out.put_u8(T_SYNC_MODE);
            out.put_u8(*full as u8);
        }
        Frame::FullSync { run, start } => {
            out.put_u8(T_FULLSYNC);
            out.put_u64(*run);
            out.put_u64(*start);
        }
        Frame::Continue { run, from } => {
            out.put_u8(T_CONTINUE);
            out.put_u64(*run);
            out.put_u64(*from);
        }
        Frame::SnapItem {
            key,
            value,
            flags,
            exptime,
            version,
            base,
            touched,
            counter,
        } => {
            out.truncate(start);
            let item = SnapItemRef {
                key,
                value,
                flags: *flags,
                exptime: *exptime,
                version: *version,
                base: *base,
                touched: *touched,
                counter: counter.as_ref(),
            };
            encode_snap_item(&item, now, out);
            return;
        }
        Frame::SnapTomb {
            key,
            version,
            touched,
            exptime,
        } => {
            out.truncate(start);
            encode_snap_tomb(key, *version, *touched, *exptime, now, out);
            return;
        }
        Frame::SnapFlush { at, version } => {
            out.put_u8(T_SNAP_FLUSH);
            out.put_u32((*at).saturating_sub(now));
            put_version(out, *version);
        }
        Frame::SnapEnd { items } => {
            out.put_u8(T_SNAP_END);
            out.put_u64(*items);
        }
        Frame::Record { offset, mutation } => {
            // One encoding of a record, shared with the backlog: header, then the value.
            out.truncate(start);
            let m = mutation.as_ref();
            let h = record_header(*offset, &m, now);
            out.put_slice(h.bytes());
            if let MutationKind::Put { value, .. } = m.kind {
                out.put_slice(value);
            }
            return;
        }
        Frame::Heartbeat { ack, last, now_ms } => {
            out.put_u8(T_HEARTBEAT);
            out.put_u64(*ack);
            out.put_u64(*last);
            out.put_u64(*now_ms);
        }
        Frame::Bye { last } => {
            out.put_u8(T_BYE);
            out.put_u64(*last);
        }
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// A snapshot item borrowed from the store (encoded without copying it first).
pub struct SnapItemRef<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub exptime: u32,
    pub version: Version,
    pub base: Version,
    pub touched: Version,
    pub counter: Option<&'a Counter>,
}

/// Appends a SNAP_ITEM frame.
pub fn encode_snap_item(it: &SnapItemRef<'_>, now: u32, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(T_SNAP_ITEM);
    out.put_u8(it.key.len() as u8);
    out.put_slice(it.key);
    out.put_u32(it.flags);
    out.put_u32(ttl_out(it.exptime, now));
    put_version(out, it.version);
    put_version(out, it.base);
    put_version(out, it.touched);
    // u32 contributions (u32::MAX = no counter), base value, then node/seq/net each.
    match it.counter {
        None => out.put_u32(u32::MAX),
        Some(c) => {
            out.put_u32(c.contributions().len() as u32);
            out.put_u64(c.base);
            for x in c.contributions() {
                out.put_u32(x.node);
                out.put_u64(x.seq);
                out.put_i128(x.net());
            }
        }
    }
    out.put_slice(it.value);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a SNAP_TOMB frame.
pub fn encode_snap_tomb(
    key: &[u8],
    version: Version,
    touched: Version,
    exptime: u32,
    now: u32,
    out: &mut BytesMut,
) {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(T_SNAP_TOMB);
    put_version(out, version);
    put_version(out, touched);
    out.put_u32(ttl_out(exptime, now));
    out.put_u8(key.len() as u8);
    out.put_slice(key);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

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

/// A bounds-checked reader over one frame's payload.
struct Payload<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Payload<'a> {
    fn need(&self, n: usize) -> Result<(), FrameError> {
        if self.buf.len() < n {
            Err(FrameError::Malformed(self.what))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        self.need(n)?;
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    fn i128(&mut self) -> Result<i128, FrameError> {
        self.need(16)?;
        Ok(self.buf.get_i128())
    }
    fn counter(&mut self) -> Result<Option<Counter>, FrameError> {
        let n = self.u32()?;
        if n == u32::MAX {
            return Ok(None);
        }
        if n as usize > MAX_CONTRIBUTIONS {
            return Err(FrameError::Malformed("snapshot item (counter)"));
        }
        let base = self.u64()?;
        let mut parts = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let c = Contribution::new(self.u32()?, self.u64()?, self.i128()?);
            if !c.valid() {
                return Err(FrameError::Malformed("snapshot item (counter seq)"));
            }
            parts.push(c);
        }
        Ok(Some(Counter::from_parts(base, parts)))
    }
    fn version(&mut self) -> Result<Version, FrameError> {
        Ok(Version::new(self.u64()?, self.u32()?))
    }
    /// A key: u8 length then bytes, 1..=250 (or 0 when `allow_empty`).
    fn key(&mut self, allow_empty: bool) -> Result<Bytes, FrameError> {
        self.key_ref(allow_empty).map(Bytes::copy_from_slice)
    }
    fn key_ref(&mut self, allow_empty: bool) -> Result<&'a [u8], FrameError> {
        let n = self.u8()? as usize;
        if n > KEY_MAX || (n == 0 && !allow_empty) {
            return Err(FrameError::BadKey(n));
        }
        self.bytes(n)
    }
    fn value(&mut self, limits: &Limits) -> Result<Bytes, FrameError> {
        self.value_ref(limits).map(Bytes::copy_from_slice)
    }
    fn value_ref(&mut self, limits: &Limits) -> Result<&'a [u8], FrameError> {
        if self.buf.len() > limits.item_size_max {
            return Err(FrameError::ValueTooLarge(self.buf.len()));
        }
        let v = self.buf;
        self.buf = &[];
        Ok(v)
    }
    fn end(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed(self.what))
        }
    }
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are needed, else the
/// frame and the number of bytes it took. Errors mean the peer is broken or hostile.
pub fn decode(buf: &[u8], limits: &Limits, now: u32) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > limits.max_frame() {
        return Err(FrameError::TooLarge(len));
    }
    if len == 0 {
        return Err(FrameError::Malformed("empty"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let ty = buf[4];
    let body = &buf[5..4 + len];
    let frame = decode_body(ty, body, limits, now)?;
    Ok(Some((frame, 4 + len)))
}

/// The payload of a RECORD frame, borrowing key and value from it.
fn record_body<'a>(
    p: &mut Payload<'a>,
    limits: &Limits,
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
/// type of frame: [`decode`] deals with those), else the record and the bytes it took. A
/// receiver applies a whole read buffer of records this way, then advances past them.
pub fn decode_record<'a>(
    buf: &'a [u8],
    limits: &Limits,
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
    let mut p = Payload {
        buf: &buf[5..4 + len],
        what: "record",
    };
    let (offset, m) = record_body(&mut p, limits, now)?;
    p.end()?;
    Ok(Some((offset, m, 4 + len)))
}

fn decode_body(ty: u8, body: &[u8], limits: &Limits, now: u32) -> Result<Frame, FrameError> {
    let name = match ty {
        T_HELLO => "hello",
        T_PSYNC => "psync",
        T_FULLSYNC => "fullsync",
        T_CONTINUE => "continue",
        T_SNAP_ITEM => "snapshot item",
        T_SNAP_TOMB => "snapshot tombstone",
        T_SNAP_END => "snapshot end",
        T_SNAP_FLUSH => "snapshot flush",
        T_SYNC_MODE => "sync mode",
        T_RECORD => "record",
        T_HEARTBEAT => "heartbeat",
        T_BYE => "bye",
        other => return Err(FrameError::UnknownType(other)),
    };
    let mut p = Payload {
        buf: body,
        what: name,
    };
    let frame = match ty {
        T_HELLO => {
            if p.array::<4>()? != MAGIC {
                return Err(FrameError::Malformed("hello (bad magic)"));
            }
            Frame::Hello {
                version: p.u16()?,
                node: p.u32()?,
                listen_port: p.u16()?,
                listen_ip: {
                    let ip = std::net::Ipv6Addr::from(p.array::<16>()?);
                    match ip.to_ipv4_mapped() {
                        _ if ip.is_unspecified() => None,
                        Some(v4) => Some(std::net::IpAddr::V4(v4)),
                        None => Some(std::net::IpAddr::V6(ip)),
                    }
                },
            }
        }
        T_PSYNC => Frame::Psync {
            run: p.u64()?,
            next: p.u64()?,
            want_run: p.u64()?,
            want_offset: p.u64()?,
        },
        T_FULLSYNC => Frame::FullSync {
            run: p.u64()?,
            start: p.u64()?,
        },
        T_CONTINUE => Frame::Continue {
            run: p.u64()?,
            from: p.u64()?,
        },
        T_SNAP_ITEM => {
            let key = p.key(false)?;
            let flags = p.u32()?;
            let exptime = ttl_in(p.u32()?, now);
            let version = p.version()?;
            let base = p.version()?;
            let touched = p.version()?;
            let counter = p.counter()?;
            let value = p.value(limits)?;
            Frame::SnapItem {
                key,
                value,
                flags,
                exptime,
                version,
                base,
                touched,
                counter,
            }
        }
        T_SNAP_TOMB => {
            let version = p.version()?;
            let touched = p.version()?;
            let exptime = ttl_in(p.u32()?, now);
            Frame::SnapTomb {
                version,
                touched,
                exptime,
                key: p.key(false)?,
            }
        }
        T_SNAP_END => Frame::SnapEnd { items: p.u64()? },
        T_SYNC_MODE => Frame::SyncMode {
            full: match p.u8()? {
                0 => false,
                1 => true,
                _ => return Err(FrameError::Malformed("sync mode")),
            },
        },
        T_SNAP_FLUSH => {
            let rem = p.u32()?;
            Frame::SnapFlush {
                at: if rem == 0 { 0 } else { now.saturating_add(rem) },
                version: p.version()?,
            }
        }
        T_RECORD => {
            let (offset, m) = record_body(&mut p, limits, now)?;
            Frame::Record {
                offset,
                mutation: m.to_owned(),
            }
        }
        T_HEARTBEAT => Frame::Heartbeat {
            ack: p.u64()?,
            last: p.u64()?,
            now_ms: p.u64()?,
        },
        T_BYE => Frame::Bye { last: p.u64()? },
        _ => unreachable!("type checked above"),
    };
    p.end()?;
    Ok(frame)
}

#[cfg(test)]
mod tests;
