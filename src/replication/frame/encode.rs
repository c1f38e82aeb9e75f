//! Frames into bytes: [`encode`] for any [`Frame`] value, and the snapshot encoders the link
//! writer calls with entries borrowed from the store ([`encode_snap_item`],
//! [`encode_snap_tomb`]). A RECORD frame is encoded by `record` (the backlog's encoding).

use super::format::*;
use super::record::record_header;
use crate::store::{Counter, MutationKind, Version};
use bytes::{BufMut, BytesMut};

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
