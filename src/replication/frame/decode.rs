//! Bytes into frames: [`decode`] takes one whole frame of any type off the front of a buffer
//! (the length bounded by the limits before anything is buffered). The link reader decodes the
//! stream's RECORD frames in place with `record::decode_record` and everything else here.

use super::format::*;
use super::payload::Payload;
use super::record::record_body;

/// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are needed, else the
/// frame and the number of bytes it took. Errors mean the peer is broken or hostile.
pub fn decode(
    buf: &[u8],
    limits: &FrameLimits,
    now: u32,
) -> Result<Option<(Frame, usize)>, FrameError> {
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

fn decode_body(ty: u8, body: &[u8], limits: &FrameLimits, now: u32) -> Result<Frame, FrameError> {
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
    let mut p = Payload::new(body, name);
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
