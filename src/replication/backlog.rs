//! The replication backlog: a bounded ring of this node's recent writes, already encoded as
//! RECORD frames and numbered with consecutive offsets, that every peer link streams from.
//!
//! The store publishes into it with a shard lock held. A record is encoded once, outside the
//! ring's lock ([`frame::record_header`], borrowing the item's key and value: no allocation per
//! record); under a short mutex it gets its offset, its bytes are appended to one byte ring and
//! the oldest records past the byte cap are trimmed; a link writer that sleeps is woken (once per
//! batch: the writer clears its flag when it wakes). Each link copies whole ranges of frames
//! to its socket buffer ([`Backlog::read_into`]), patching only the remaining-time fields for
//! the second it sends (see `frame`), so a record is never encoded per peer.
//!
//! A peer that reconnects names the last offset it applied; if that offset is still in the ring
//! it resumes there (partial sync), otherwise it gets a full snapshot. The ring's `run` id changes
//! with every process start, so offsets from an earlier life of this node are never mistaken for
//! current ones.

use super::frame::{self, TimeField};
use crate::store::{Mutation, MutationRef, MutationSink, Version};
use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

thread_local! {
    /// This thread's open batches (see `MutationSink::begin_batch`) and whether it pushed a
    /// record in them: the wake-up waits for the end of the outermost one.
    static BATCH: std::cell::Cell<(u32, bool)> = const { std::cell::Cell::new((0, false)) };
}

/// Bytes charged per record on top of its frame: its [`Meta`] entry.
const RECORD_OVERHEAD: usize = std::mem::size_of::<Meta>();

/// What the ring keeps per record besides its bytes.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Stream position (bytes since the ring began) just past the record's frame.
    end: u64,
    /// Its remaining-time field, patched when sent.
    time: TimeField,
}

struct Ring {
    /// The frames of records `first..next`, back to back.
    bytes: VecDeque<u8>,
    meta: VecDeque<Meta>,
    /// Stream position of `bytes[0]` (the start of record `first`).
    base: u64,
    /// Offset of `meta[0]`; offsets start at 1 (0 means "nothing").
    first: u64,
    /// Offset the next record will get.
    next: u64,
}

impl Ring {
    fn charged(&self) -> usize {
        self.bytes.len() + self.meta.len() * RECORD_OVERHEAD
    }

    /// Stream position where record `offset` (held) starts.
    fn start_of(&self, offset: u64) -> u64 {
        match offset - self.first {
            0 => self.base,
            i => self.meta[i as usize - 1].end,
        }
    }

    /// Appends the bytes `[from, to)` (stream positions, held) to `out`.
    fn copy(&self, from: u64, to: u64, out: &mut BytesMut) {
        let (a, b) = self.bytes.as_slices();
        let (lo, hi) = ((from - self.base) as usize, (to - self.base) as usize);
        if lo < a.len() {
            out.extend_from_slice(&a[lo..hi.min(a.len())]);
        }
        if hi > a.len() {
            out.extend_from_slice(&b[lo.saturating_sub(a.len())..hi - a.len()]);
        }
    }
}

pub struct Backlog {
    run: u64,
    cap: usize,
    ring: Mutex<Ring>,
    notify: Notify,
    /// Set by a link writer about to sleep; lets `push` skip the notify (a lock) otherwise.
    waiting: AtomicBool,
    /// Records ever published (for stats).
    pub published: AtomicU64,
}

/// The peer asked for records that have already left the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrun;

/// A filter for [`Backlog::read_into`]: given a record's offset and key, whether to send it.
pub type Keep<'a> = dyn FnMut(u64, &[u8]) -> bool + 'a;

/// What [`Backlog::read_into`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// The offset to read next.
    pub next: u64,
    /// Records appended to the output (those the filter dropped are not counted).
    pub records: u64,
}

impl Backlog {
    pub fn new(run: u64, cap: usize) -> Backlog {
        Backlog {
            run,
            cap,
            ring: Mutex::new(Ring {
                // Reserved whole (address space; pages are touched as the ring fills): growing
                // by doubling would copy the ring and fault in every page again, under the
                // lock the writers publish through.
                bytes: VecDeque::with_capacity(cap),
                meta: VecDeque::new(),
                base: 0,
                first: 1,
                next: 1,
            }),
            notify: Notify::new(),
            waiting: AtomicBool::new(false),
            published: AtomicU64::new(0),
        }
    }

    pub fn run(&self) -> u64 {
        self.run
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Waits for records after `next` (the offset the caller will read next). Returns at once
    /// if there are already some; may also return spuriously.
    pub async fn wait_beyond(&self, next: u64) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Announce the sleeper before the last look: a push either sees the flag or its record
        // is seen here.
        self.waiting.store(true, Ordering::SeqCst);
        if self.next_offset() > next {
            return;
        }
        notified.await;
    }

    /// (first offset held, offset of the next record, bytes held).
    pub fn range(&self) -> (u64, u64, usize) {
        let r = self.ring.lock();
        (r.first, r.next, r.charged())
    }

    pub fn next_offset(&self) -> u64 {
        self.ring.lock().next
    }

    /// Encodes and appends a record; returns its offset.
    pub fn push(&self, m: MutationRef<'_>) -> u64 {
        let value: &[u8] = match m.kind {
            crate::store::MutationKind::Put { value, .. } => value,
            _ => &[],
        };
        // Encoded outside the lock; only the offset is filled in under it.
        let mut header = frame::record_header(0, &m, crate::store::unix_now());
        let offset = {
            let mut r = self.ring.lock();
            let offset = r.next;
            r.next += 1;
            header.set_offset(offset);
            r.bytes.extend(header.bytes());
            r.bytes.extend(value);
            let end = r.base + r.bytes.len() as u64;
            r.meta.push_back(Meta {
                end,
                time: header.time,
            });
            // Keep at least the newest record so that a huge one is still streamed.
            while r.charged() > self.cap && r.meta.len() > 1 {
                if let Some(old) = r.meta.pop_front() {
                    let n = (old.end - r.base) as usize;
                    r.bytes.drain(..n);
                    r.base = old.end;
                    r.first += 1;
                }
            }
            offset
        };
        self.published.fetch_add(1, Ordering::Relaxed);
        let deferred = BATCH.with(|b| {
            let (depth, _) = b.get();
            if depth > 0 {
                b.set((depth, true));
            }
            depth > 0
        });
        if !deferred {
            self.wake();
        }
        offset
    }

    /// Wakes the link writers if one sleeps.
    fn wake(&self) {
        if self.waiting.swap(false, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }

    /// True if a peer that has applied everything up to `offset` can resume from the ring.
    /// `offset` comes from the peer (PSYNC): any u64, so no arithmetic on it can wrap.
    pub fn can_resume_after(&self, offset: u64) -> bool {
        let r = self.ring.lock();
        offset.checked_add(1).is_some_and(|next| next >= r.first) && offset < r.next
    }

    /// Appends the frames of the records from offset `from` on to `out`, about `max_bytes` of
    /// them (at least one record if there is any), with their remaining times set for `now`.
    /// `keep(offset, key)` may drop records (a link that just sent a snapshot skips those it
    /// already holds); without a filter whole ranges are copied at once.
    pub fn read_into(
        &self,
        from: u64,
        max_bytes: usize,
        now: u32,
        out: &mut BytesMut,
        mut keep: Option<&mut Keep<'_>>,
    ) -> Result<Read, Overrun> {
        let r = self.ring.lock();
        if from < r.first {
            return Err(Overrun);
        }
        if from >= r.next {
            return Ok(Read {
                next: from,
                records: 0,
            });
        }
        let start = r.start_of(from);
        let i0 = (from - r.first) as usize;
        // The records that fit: whole frames up to max_bytes, at least one.
        let mut i1 = i0 + 1;
        while i1 < r.meta.len() && r.meta[i1].end - start <= max_bytes as u64 {
            i1 += 1;
        }
        // Remaining times are set for the second the records leave: most have none or leave
        // in the second they were published, but one that waited in the ring (a peer catching
        // up) must not live longer on the peer than here.
        let mut records = 0;
        match keep.as_mut() {
            Some(keep) => {
                let mut pos = start;
                for i in i0..i1 {
                    let m = r.meta[i];
                    let at = out.len();
                    r.copy(pos, m.end, out);
                    pos = m.end;
                    if keep(r.first + i as u64, frame::record_key(&out[at..])) {
                        frame::patch_time(&mut out[at..], m.time, now);
                        records += 1;
                    } else {
                        out.truncate(at);
                    }
                }
            }
            None => {
                let at = out.len();
                r.copy(start, r.meta[i1 - 1].end, out);
                let mut pos = start;
                for m in r.meta.range(i0..i1) {
                    frame::patch_time(&mut out[at + (pos - start) as usize..], m.time, now);
                    pos = m.end;
                }
                records = (i1 - i0) as u64;
            }
        }
        Ok(Read {
            next: r.first + i1 as u64,
            records,
        })
    }

    /// Wall-clock milliseconds (from the version) of the record at `offset`, if still held.
    pub fn millis_at(&self, offset: u64) -> Option<u64> {
        let r = self.ring.lock();
        if offset < r.first || offset >= r.next {
            return None;
        }
        let at = (r.start_of(offset) - r.base) as usize + frame::RECORD_HLC_AT;
        let mut hlc = [0u8; 8];
        for (k, b) in hlc.iter_mut().enumerate() {
            *b = r.bytes[at + k];
        }
        Some(Version::new(u64::from_be_bytes(hlc), 0).millis())
    }
}

/// The store's mutation sink: every local write goes into the backlog.
pub struct BacklogSink(pub std::sync::Arc<Backlog>);

impl MutationSink for BacklogSink {
    fn publish(&self, mutation: Mutation) {
        self.0.push(mutation.as_ref());
    }

    fn publish_at(&self, mutation: Mutation) -> u64 {
        self.0.push(mutation.as_ref())
    }

    fn publish_ref(&self, mutation: MutationRef<'_>) -> u64 {
        self.0.push(mutation)
    }

    fn begin_batch(&self) {
        BATCH.with(|b| {
            let (depth, pushed) = b.get();
            b.set((depth + 1, pushed));
        });
    }

    fn end_batch(&self) {
        let wake = BATCH.with(|b| {
            let (depth, pushed) = b.get();
            let depth = depth.saturating_sub(1);
            b.set((depth, pushed && depth > 0));
            pushed && depth == 0
        });
        if wake {
            self.0.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::frame::{decode, Frame, FrameLimits};
    use crate::store::MutationKind;

    const LIM: FrameLimits = FrameLimits {
        item_size_max: 1 << 20,
    };

    fn put(key: &[u8], n: u8, exptime: u32) -> MutationRef<'_> {
        Mutation {
            key,
            version: Version::new((n as u64 + 1) << 16, 1),
            kind: MutationKind::Put {
                flags: n as u32,
                exptime,
                value: &[7u8; 100],
            },
        }
    }

    fn frames(buf: &[u8], now: u32) -> Vec<(u64, crate::store::Mutation)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            let (f, n) = decode(&buf[at..], &LIM, now).unwrap().unwrap();
            match f {
                Frame::Record { offset, mutation } => out.push((offset, mutation)),
                other => panic!("not a record: {other:?}"),
            }
            at += n;
        }
        out
    }

    #[test]
    fn ring_trims_to_capacity_and_reports_overrun() {
        let b = Backlog::new(42, 1000);
        for i in 0..20u8 {
            assert_eq!(b.push(put(&[b'k', i], i, 0)), i as u64 + 1);
        }
        let (first, next, bytes) = b.range();
        assert_eq!(next, 21);
        assert!(bytes <= 1000);
        assert!(first > 1);
        let mut out = BytesMut::new();
        assert_eq!(b.read_into(1, 1 << 20, 0, &mut out, None), Err(Overrun));
        assert!(!b.can_resume_after(0));
        assert!(b.can_resume_after(first - 1));
        assert!(b.can_resume_after(20));
        let read = b.read_into(first, 1 << 20, 0, &mut out, None).unwrap();
        assert_eq!((read.next, read.records), (21, next - first));
        let recs = frames(&out, 0);
        assert_eq!(recs.len() as u64, next - first);
        for (i, (offset, m)) in recs.iter().enumerate() {
            let n = (first as usize + i - 1) as u8;
            assert_eq!(*offset, first + i as u64);
            assert_eq!(*m, put(&[b'k', n], n, 0).to_owned());
            assert_eq!(b.millis_at(*offset), Some(n as u64 + 1));
        }
        out.clear();
        assert_eq!(
            b.read_into(21, 1 << 20, 0, &mut out, None).unwrap().records,
            0
        );
        assert!(out.is_empty());
        let one = b.read_into(first, 1, 0, &mut out, None).unwrap();
        assert_eq!(one.records, 1, "a byte budget still yields one record");
        assert_eq!(one.next, first + 1);
    }

    #[test]
    fn ring_wraps_and_reads_back_in_pieces() {
        // Many more records than the ring holds, read in small pieces as a link does: every
        // record comes out once, whole, in order, across the ring's wrap-around.
        let b = Backlog::new(1, 4096);
        let mut cursor = 1;
        let mut seen = 0u64;
        for round in 0..50u64 {
            for i in 0..7u8 {
                let key = [b'k', round as u8, i];
                b.push(put(&key, i, 0));
            }
            let mut out = BytesMut::new();
            loop {
                let read = b.read_into(cursor, 300, 0, &mut out, None).unwrap();
                if read.next == cursor {
                    break;
                }
                cursor = read.next;
            }
            for (offset, m) in frames(&out, 0) {
                seen += 1;
                assert_eq!(offset, seen);
                assert_eq!(m.key.len(), 3);
            }
        }
        assert_eq!(seen, 350);
    }

    #[test]
    fn remaining_time_is_set_when_sent_and_filter_drops_records() {
        let b = Backlog::new(1, 1 << 20);
        let now = 1_000_000;
        // Published with 100 s to live; sent 30 s later, it has 70 left.
        b.push(put(b"a", 1, crate::store::unix_now().max(now) + 100));
        let published = crate::store::unix_now().max(now);
        let mut out = BytesMut::new();
        b.read_into(1, 1 << 20, published + 30, &mut out, None)
            .unwrap();
        match &frames(&out, 5_000).remove(0).1.kind {
            MutationKind::Put { exptime, .. } => assert_eq!(*exptime, 5_070),
            k => panic!("{k:?}"),
        }
        b.push(put(b"b", 2, 0));
        b.push(put(b"c", 3, 0));
        out.clear();
        let mut keep = |_: u64, key: &[u8]| key != b"b";
        let read = b
            .read_into(1, 1 << 20, published, &mut out, Some(&mut keep))
            .unwrap();
        assert_eq!((read.next, read.records), (4, 2));
        let keys: Vec<_> = frames(&out, 0)
            .into_iter()
            .map(|(o, m)| (o, m.key))
            .collect();
        assert_eq!(keys, vec![(1, "a".into()), (3, "c".into())]);
    }

    #[test]
    fn a_peer_asking_to_resume_after_the_largest_offset_is_told_no() {
        // PSYNC's want_offset is the peer's: `offset + 1` wrapped (release) or panicked the
        // link task (debug).
        let b = Backlog::new(42, 1000);
        for i in 0..3u8 {
            b.push(put(&[b'k', i], i, 0));
        }
        assert!(b.can_resume_after(3));
        assert!(!b.can_resume_after(4));
        assert!(!b.can_resume_after(u64::MAX));
        assert!(!b.can_resume_after(u64::MAX - 1));
        let empty = Backlog::new(43, 1000);
        assert!(empty.can_resume_after(0));
        assert!(!empty.can_resume_after(u64::MAX));
    }
}
