//! The replication backlog: a bounded ring of this node's own recent mutations, numbered with
//! consecutive offsets, that every peer link streams from.
//!
//! The store publishes into it with a shard lock held, so `publish` only takes a short mutex,
//! pushes, trims the oldest records past the byte cap and wakes the link writers. A peer that
//! reconnects names the last offset it applied; if that offset is still in the ring it resumes
//! there (partial sync), otherwise it gets a full snapshot. The ring's `run` id changes with
//! every process start, so offsets from an earlier life of this node are never mistaken for
//! current ones.

use crate::store::{Mutation, MutationKind, MutationSink};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

/// Bytes charged per record on top of key and value.
const RECORD_OVERHEAD: usize = 64;

struct Ring {
    records: VecDeque<(Mutation, usize)>,
    /// Offset of `records[0]`; offsets start at 1 (0 means "nothing").
    first: u64,
    /// Offset the next record will get.
    next: u64,
    bytes: usize,
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

fn record_size(m: &Mutation) -> usize {
    let value = match &m.kind {
        MutationKind::Put { value, .. } => value.len(),
        _ => 16,
    };
    m.key.len() + value + RECORD_OVERHEAD
}

impl Backlog {
    pub fn new(run: u64, cap: usize) -> Backlog {
        Backlog {
            run,
            cap,
            ring: Mutex::new(Ring {
                records: VecDeque::new(),
                first: 1,
                next: 1,
                bytes: 0,
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
        (r.first, r.next, r.bytes)
    }

    pub fn next_offset(&self) -> u64 {
        self.ring.lock().next
    }

    /// Appends a record; returns its offset.
    pub fn push(&self, m: Mutation) -> u64 {
        let size = record_size(&m);
        let offset = {
            let mut r = self.ring.lock();
            let offset = r.next;
            r.next += 1;
            r.bytes += size;
            r.records.push_back((m, size));
            // Keep at least the newest record so that a huge one is still streamed.
            while r.bytes > self.cap && r.records.len() > 1 {
                if let Some((_, s)) = r.records.pop_front() {
                    r.bytes -= s;
                    r.first += 1;
                }
            }
            offset
        };
        self.published.fetch_add(1, Ordering::Relaxed);
        if self.waiting.swap(false, Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
        offset
    }

    /// True if a peer that has applied everything up to `offset` can resume from the ring.
    pub fn can_resume_after(&self, offset: u64) -> bool {
        let r = self.ring.lock();
        offset + 1 >= r.first && offset < r.next
    }

    /// Copies up to `max_records` / about `max_bytes` records starting at offset `from`.
    pub fn read(
        &self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Mutation)>, Overrun> {
        let r = self.ring.lock();
        if from < r.first {
            return Err(Overrun);
        }
        let skip = (from - r.first) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for (i, (m, size)) in r.records.iter().enumerate().skip(skip) {
            if out.len() >= max_records || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            bytes += size;
            out.push((r.first + i as u64, m.clone()));
        }
        Ok(out)
    }

    /// Wall-clock milliseconds (from the version) of the record at `offset`, if still held.
    pub fn millis_at(&self, offset: u64) -> Option<u64> {
        let r = self.ring.lock();
        if offset < r.first || offset >= r.next {
            return None;
        }
        r.records
            .get((offset - r.first) as usize)
            .map(|(m, _)| m.version.millis())
    }
}

/// The store's mutation sink: every local write goes into the backlog.
pub struct BacklogSink(pub std::sync::Arc<Backlog>);

impl MutationSink for BacklogSink {
    fn publish(&self, mutation: Mutation) {
        self.0.push(mutation);
    }

    fn publish_at(&self, mutation: Mutation) -> u64 {
        self.0.push(mutation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Version;
    use bytes::Bytes;

    fn put(n: u8) -> Mutation {
        Mutation {
            key: Bytes::from(vec![b'k', n]),
            version: Version::new(n as u64, 1),
            kind: MutationKind::Put {
                flags: 0,
                exptime: 0,
                value: Bytes::from(vec![0u8; 100]),
            },
        }
    }

    #[test]
    fn ring_trims_to_capacity_and_reports_overrun() {
        let b = Backlog::new(42, 1000);
        for i in 0..20 {
            assert_eq!(b.push(put(i)), i as u64 + 1);
        }
        let (first, next, bytes) = b.range();
        assert_eq!(next, 21);
        assert!(bytes <= 1000);
        assert!(first > 1);
        assert_eq!(b.read(1, 100, 1 << 20), Err(Overrun));
        assert!(!b.can_resume_after(0));
        assert!(b.can_resume_after(first - 1));
        assert!(b.can_resume_after(20));
        let recs = b.read(first, 100, 1 << 20).unwrap();
        assert_eq!(recs.len() as u64, next - first);
        assert_eq!(recs[0].0, first);
        assert_eq!(b.read(21, 100, 1 << 20).unwrap().len(), 0);
        assert_eq!(b.read(first, 2, 1 << 20).unwrap().len(), 2);
        assert_eq!(
            b.read(first, 100, 1).unwrap().len(),
            1,
            "byte budget still yields one record"
        );
    }
}
