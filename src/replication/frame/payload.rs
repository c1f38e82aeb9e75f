//! A bounds-checked reader over one frame's payload: every field read checks that the bytes
//! are there, keys and values are checked against the limits, and a payload with bytes left
//! over is malformed.

use super::format::{FrameError, FrameLimits, KEY_MAX, MAX_CONTRIBUTIONS};
use crate::store::{Contribution, Counter, Version};
use bytes::{Buf, Bytes};

/// A bounds-checked reader over one frame's payload.
pub(super) struct Payload<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Payload<'a> {
    /// A reader over `buf`; `what` names the frame in errors.
    pub(super) fn new(buf: &'a [u8], what: &'static str) -> Payload<'a> {
        Payload { buf, what }
    }
    fn need(&self, n: usize) -> Result<(), FrameError> {
        if self.buf.len() < n {
            Err(FrameError::Malformed(self.what))
        } else {
            Ok(())
        }
    }
    pub(super) fn u8(&mut self) -> Result<u8, FrameError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    pub(super) fn u16(&mut self) -> Result<u16, FrameError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }
    pub(super) fn u32(&mut self) -> Result<u32, FrameError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    pub(super) fn u64(&mut self) -> Result<u64, FrameError> {
        self.need(8)?;
        Ok(self.buf.get_u64())
    }
    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        self.need(n)?;
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    pub(super) fn i128(&mut self) -> Result<i128, FrameError> {
        self.need(16)?;
        Ok(self.buf.get_i128())
    }
    pub(super) fn counter(&mut self) -> Result<Option<Counter>, FrameError> {
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
    pub(super) fn version(&mut self) -> Result<Version, FrameError> {
        Ok(Version::new(self.u64()?, self.u32()?))
    }
    /// A key: u8 length then bytes, 1..=250 (or 0 when `allow_empty`).
    pub(super) fn key(&mut self, allow_empty: bool) -> Result<Bytes, FrameError> {
        self.key_ref(allow_empty).map(Bytes::copy_from_slice)
    }
    pub(super) fn key_ref(&mut self, allow_empty: bool) -> Result<&'a [u8], FrameError> {
        let n = self.u8()? as usize;
        if n > KEY_MAX || (n == 0 && !allow_empty) {
            return Err(FrameError::BadKey(n));
        }
        self.bytes(n)
    }
    pub(super) fn value(&mut self, limits: &FrameLimits) -> Result<Bytes, FrameError> {
        self.value_ref(limits).map(Bytes::copy_from_slice)
    }
    pub(super) fn value_ref(&mut self, limits: &FrameLimits) -> Result<&'a [u8], FrameError> {
        if self.buf.len() > limits.item_size_max {
            return Err(FrameError::ValueTooLarge(self.buf.len()));
        }
        let v = self.buf;
        self.buf = &[];
        Ok(v)
    }
    pub(super) fn end(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed(self.what))
        }
    }
}
