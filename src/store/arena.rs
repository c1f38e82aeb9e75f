//! The item ring: one anonymous mapping of -m bytes that every item of the store lives in, laid
//! end to end as a log (key, value and the compact header of `item`).
//!
//! Items are appended at the head; the tail is the oldest data; room is made only by moving the
//! tail forward (FIFO, see `evict`), so -m bounds item memory for any mix of sizes with no
//! fragmentation. An item that would cross the end of the ring goes to its start and the space
//! it skipped is remembered (`wrap_at`) so the tail jumps over it too. Offsets are padded to a
//! unit (8 bytes, larger only for rings over 32 GiB) so that the index can keep a `u32` position.
//!
//! The mapping is reserved once for the largest ring this process may be asked for
//! (`cache_memlimit` can raise -m at run time) with MAP_NORESERVE: pages cost memory only once
//! touched, and the part beyond the current capacity stays PROT_NONE until the capacity grows.
//!
//! # Who may touch which bytes (the protocol the unsafe code below relies on)
//!
//! - `Log` (head, tail, wrap point, capacity) is guarded by its mutex, the "log lock", held
//!   briefly and never while taking another lock.
//! - Bytes in `[tail, head)` that are not yet handed out do not exist: an allocation hands a
//!   region to the caller under the log lock. The caller writes the item's header and key before
//!   releasing the log lock (so the tail walker, which reads the tail under the same lock, always
//!   finds a complete header and key) and the value afterwards, under the key's shard lock.
//! - A live item (one its shard's index points at) is read and written only under its shard's
//!   lock. The only exception is the tail walker, which reads the fields of the header that
//!   never change after allocation (`item::FIXED_RANGES`: value length, key length, shape) and
//!   the key of the item at the tail under the log lock, by copying them out. In-place changes
//!   under the shard lock write only the other header bytes (`item::MUTABLE_RANGES`), the
//!   optional fields and the value, so the two never touch the same byte.
//! - A region is reused only after the tail has passed it, and the tail passes an item only
//!   after the walker has locked its shard and seen the index not (or no longer) point at it.
//!
//! The raw accessors ([`Ring::bytes`], [`Ring::bytes_mut`], [`Ring::copy`]) are `unsafe fn`:
//! the ring cannot tell which shard owns which bytes, so a safe signature could not stop safe
//! code from making aliased or racing slices. Each caller (in `shard` and `evict`) states in a
//! `// SAFETY:` comment which rule of this protocol makes its call sound.

#![allow(unsafe_code)]

use parking_lot::{Mutex, MutexGuard};
use std::ptr::NonNull;

/// The largest ring reserved by default: what `cache_memlimit` may raise -m to without a
/// restart (virtual address space only; untouched pages cost nothing).
#[cfg(not(miri))]
const DEFAULT_RESERVE: usize = 32 << 30;
#[cfg(miri)]
const DEFAULT_RESERVE: usize = 0;

/// Head, tail and capacity of the ring, in bytes from its start.
#[derive(Debug)]
pub(crate) struct Log {
    head: usize,
    tail: usize,
    /// The data wraps: it runs from `tail` to `wrap_at`, then from 0 to `head`.
    wrapped: bool,
    wrap_at: usize,
    /// Usable bytes (the current -m); allocations stay below it.
    cap: usize,
    /// Bytes of data between tail and head (the space skipped at a wrap not included).
    used: usize,
}

impl Log {
    /// Whether `n` contiguous bytes are free at the head.
    pub fn fits(&self, n: usize) -> bool {
        if self.used == 0 {
            return n <= self.cap;
        }
        if self.wrapped {
            self.head + n <= self.tail.min(self.cap)
        } else {
            self.head + n <= self.cap || n <= self.tail.min(self.cap)
        }
    }

    /// Hands out `n` bytes at the head (n a multiple of the unit), wrapping to the start when
    /// they do not fit before the end.
    pub fn alloc(&mut self, n: usize) -> Option<usize> {
        if self.used == 0 {
            self.head = 0;
            self.tail = 0;
            self.wrapped = false;
        }
        let at = if self.wrapped {
            if self.head + n > self.tail.min(self.cap) {
                return None;
            }
            self.head
        } else if self.head + n <= self.cap {
            self.head
        } else if n <= self.tail.min(self.cap) {
            self.wrap_at = self.head;
            self.wrapped = true;
            self.head = 0;
            0
        } else {
            return None;
        };
        self.head = at + n;
        self.used += n;
        Some(at)
    }

    /// The offset of the oldest item, if any.
    pub fn tail(&self) -> Option<usize> {
        (self.used > 0).then_some(self.tail)
    }

    /// Moves the tail past the oldest item (`n` bytes).
    pub fn advance(&mut self, n: usize) {
        self.tail += n;
        self.used -= n;
        if self.wrapped && self.tail >= self.wrap_at {
            self.tail = 0;
            self.wrapped = false;
        }
        if self.used == 0 {
            self.head = 0;
            self.tail = 0;
            self.wrapped = false;
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes between tail and head (live items and dead copies).
    pub fn used(&self) -> usize {
        self.used
    }
}

pub(crate) struct Ring {
    base: NonNull<u8>,
    /// Bytes reserved (mapped), the most `cap` may grow to.
    reserved: usize,
    /// Bytes made readable and writable so far (a prefix of the mapping).
    opened: Mutex<usize>,
    unit_shift: u32,
    log: Mutex<Log>,
    /// Test hook: the next `open` that must change the protection fails as mprotect would.
    #[cfg(test)]
    fail_next_open: std::sync::atomic::AtomicBool,
}

/// The ring could not be given the capacity asked for (mprotect failed: RLIMIT_DATA, a strict
/// overcommit policy, no memory for the page tables); the capacity is unchanged.
#[derive(Debug)]
pub(crate) struct GrowError(pub std::io::Error);

// SAFETY: the mapping is plain memory owned by the ring; which thread may read or write which
// bytes is decided by the locking protocol in the module comment, not by the thread that made it.
unsafe impl Send for Ring {}
// SAFETY: as above: shared access goes through `Log`'s mutex and the shard locks.
unsafe impl Sync for Ring {}

impl Ring {
    /// A ring of `cap` bytes, reserving room for it to grow to `max(cap, 32 GiB)`.
    pub fn new(cap: usize) -> Ring {
        let cap = cap.max(4096);
        let want = cap.max(DEFAULT_RESERVE);
        let (base, reserved) = match map(want) {
            Some(p) => (p, want),
            None => (
                map(cap).expect("cannot reserve address space for the item ring"),
                cap,
            ),
        };
        // Positions are u32 counts of units: 8 bytes up to 32 GiB, then the power of two that
        // keeps the whole reservation addressable.
        let unit = (reserved >> 32).next_power_of_two().max(8);
        let ring = Ring {
            base,
            reserved,
            opened: Mutex::new(0),
            unit_shift: unit.trailing_zeros(),
            log: Mutex::new(Log {
                head: 0,
                tail: 0,
                wrapped: false,
                wrap_at: 0,
                cap,
                used: 0,
            }),
            #[cfg(test)]
            fail_next_open: std::sync::atomic::AtomicBool::new(false),
        };
        if let Err(GrowError(e)) = ring.open(cap) {
            // At start-up only (-m), before any client is served: there is no ring to run with.
            panic!("cannot make the item ring's {cap} bytes usable (mprotect): {e}");
        }
        ring
    }

    /// Makes the first `len` bytes of the mapping usable. On failure nothing changes.
    fn open(&self, len: usize) -> Result<(), GrowError> {
        let mut opened = self.opened.lock();
        if len > *opened {
            #[cfg(test)]
            if self
                .fail_next_open
                .swap(false, std::sync::atomic::Ordering::Relaxed)
            {
                return Err(GrowError(std::io::Error::from_raw_os_error(libc::ENOMEM)));
            }
            protect(self.base, *opened, len - *opened).map_err(GrowError)?;
            *opened = len;
        }
        Ok(())
    }

    /// Test hook: makes the next capacity growth that needs an mprotect fail with ENOMEM.
    #[cfg(test)]
    pub fn fail_next_growth(&self) {
        self.fail_next_open
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes reserved: the most the capacity can grow to.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    pub fn unit(&self) -> usize {
        1 << self.unit_shift
    }

    /// `len` rounded up to the unit.
    pub fn padded(&self, len: usize) -> usize {
        let u = self.unit();
        (len + u - 1) & !(u - 1)
    }

    /// The index's position for a byte offset.
    pub fn pos(&self, off: usize) -> u32 {
        (off >> self.unit_shift) as u32
    }

    pub fn off(&self, pos: u32) -> usize {
        (pos as usize) << self.unit_shift
    }

    pub fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock()
    }

    /// Changes the capacity (cache_memlimit); returns the capacity set (at most the
    /// reservation). Lowering it takes effect at the next wrap; eviction brings the data down.
    /// Growing past what was ever opened needs an mprotect, which can fail: then the capacity
    /// stays as it was.
    pub fn set_cap(&self, cap: usize) -> Result<usize, GrowError> {
        let cap = cap.clamp(4096, self.reserved);
        self.open(cap)?;
        self.log.lock().cap = cap;
        Ok(cap)
    }

    fn check(&self, off: usize, len: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.reserved),
            "ring access out of bounds"
        );
    }

    /// The bytes at `off`, to read.
    ///
    /// # Safety
    ///
    /// While the returned slice lives, no thread writes any of these bytes, and the writes that
    /// made them happen before this call. Per the module's protocol that holds when either
    /// - the caller holds the lock of the shard whose index points at the item these bytes
    ///   belong to (only that lock's holder writes them, and the tail cannot pass the item and
    ///   hand its bytes out again without taking that lock), or
    /// - the caller holds the log lock, the item is between the tail and the head, and the bytes
    ///   are within its `item::FIXED_RANGES` or its key: written under the log lock when it was
    ///   allocated, never written again, and not reallocated while the log lock is held (the
    ///   slice must not outlive the guard).
    pub unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        self.check(off, len);
        // SAFETY: in bounds of the mapping (checked above), which lives as long as `self`; the
        // caller's contract keeps writers of these bytes out while the borrow lives.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(off), len) }
    }

    /// The bytes at `off`, writable.
    ///
    /// # Safety
    ///
    /// While the returned slice lives, no other thread reads or writes any of these bytes and
    /// no other borrow of them exists. Per the module's protocol that holds when either
    /// - the caller holds the lock of the shard whose index points at the item, and the range
    ///   lies outside the item's `item::FIXED_RANGES` and key (which the tail walker reads
    ///   without that lock), or
    /// - the bytes belong to an allocation the caller has just made and not yet linked: its
    ///   header and key written while still holding the log lock that handed it out (the walker
    ///   may read them as soon as that lock is released), its value afterwards under the key's
    ///   shard lock (the walker reads no value; it locks that shard before passing the item).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn bytes_mut(&self, off: usize, len: usize) -> &mut [u8] {
        self.check(off, len);
        // SAFETY: in bounds; exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(off), len) }
    }

    /// Copies `len` bytes from `src` to `dst` (an item's value moved to a new copy at the head).
    ///
    /// # Safety
    ///
    /// The source range meets the contract of [`Ring::bytes`] and the destination range that
    /// of [`Ring::bytes_mut`] for the duration of the call.
    pub unsafe fn copy(&self, src: usize, dst: usize, len: usize) {
        self.check(src, len);
        self.check(dst, len);
        // SAFETY: both ranges are in bounds; `copy` (memmove) allows overlap anyway; no other
        // thread touches them meanwhile by the caller's contract.
        unsafe {
            std::ptr::copy(
                self.base.as_ptr().add(src),
                self.base.as_ptr().add(dst),
                len,
            )
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        unmap(self.base, self.reserved);
    }
}

#[cfg(not(miri))]
fn map(len: usize) -> Option<NonNull<u8>> {
    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p as *mut u8)
    }
}

#[cfg(not(miri))]
fn protect(base: NonNull<u8>, off: usize, len: usize) -> std::io::Result<()> {
    let page = 4096;
    let start = off & !(page - 1);
    let end = (off + len + page - 1) & !(page - 1);
    // SAFETY: the range lies inside the mapping made by `map` (callers stay below `reserved`,
    // page-rounded like the mapping itself); it only grants access.
    let rc = unsafe {
        libc::mprotect(
            base.as_ptr().add(start) as *mut libc::c_void,
            end - start,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(miri))]
fn unmap(base: NonNull<u8>, len: usize) {
    // SAFETY: the mapping made by `map` with this length, unmapped once, after every borrow of
    // the ring has ended (`&mut self` in Drop).
    unsafe {
        libc::munmap(base.as_ptr() as *mut libc::c_void, len);
    }
}

// Miri has no mmap: the ring is a zeroed heap allocation of exactly -m bytes there.
#[cfg(miri)]
fn map(len: usize) -> Option<NonNull<u8>> {
    let layout = std::alloc::Layout::from_size_align(len.max(1), 8).ok()?;
    // SAFETY: non-zero size.
    NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
}

#[cfg(miri)]
fn protect(_base: NonNull<u8>, _off: usize, _len: usize) -> std::io::Result<()> {
    Ok(())
}

#[cfg(miri)]
fn unmap(base: NonNull<u8>, len: usize) {
    let layout = std::alloc::Layout::from_size_align(len.max(1), 8).expect("layout");
    // SAFETY: allocated by `map` with this layout, freed once.
    unsafe { std::alloc::dealloc(base.as_ptr(), layout) }
}

#[cfg(test)]
mod tests {
    //! The raw paths (map, read, write, copy, drop), small enough for
    //! `cargo +nightly miri test --lib store::arena` to check them.
    use super::*;

    #[test]
    fn allocates_wraps_and_frees_in_order() {
        let r = Ring::new(4096);
        let mut log = r.lock();
        let a = log.alloc(2048).unwrap();
        let b = log.alloc(1024).unwrap();
        assert_eq!((a, b), (0, 2048));
        assert!(log.alloc(2048).is_none(), "no room until the tail moves");
        log.advance(2048);
        // 1024 left at the end is too short: wraps to the start.
        let c = log.alloc(1536).unwrap();
        assert_eq!(c, 0);
        assert_eq!(log.used(), 1024 + 1536);
        assert_eq!(log.tail(), Some(2048));
        log.advance(1024);
        assert_eq!(log.tail(), Some(0), "the tail jumps over the skipped end");
        assert_eq!(log.used(), 1536);
        log.advance(1536);
        assert_eq!(log.tail(), None);
        assert!(log.fits(4096));
    }

    #[test]
    fn bytes_round_trip_and_copy() {
        let r = Ring::new(8192);
        // SAFETY: one thread, and each borrow ends before the next access.
        unsafe { r.bytes_mut(100, 5) }.copy_from_slice(b"hello");
        // SAFETY: as above.
        unsafe { r.copy(100, 4000, 5) };
        // SAFETY: as above.
        assert_eq!(unsafe { r.bytes(4000, 5) }, b"hello");
        assert_eq!(r.padded(13), 16);
        assert_eq!(r.off(r.pos(4000)), 4000);
    }

    #[test]
    fn capacity_can_grow_and_shrink() {
        let r = Ring::new(4096);
        assert_eq!(r.set_cap(16384).unwrap(), 16384.min(r.reserved));
        let end = r.set_cap(16384).unwrap();
        // SAFETY: one thread, no other borrow of the ring's bytes.
        let last = unsafe { r.bytes_mut(end - 1, 1) };
        last[0] = 7;
        r.set_cap(4096).unwrap();
        assert_eq!(r.lock().cap(), 4096);
    }

    #[test]
    fn a_failed_growth_keeps_the_capacity() {
        let r = Ring::new(4096);
        r.fail_next_growth();
        // Under Miri the reservation is the capacity: there is nothing to grow into.
        if r.reserved() > 4096 {
            assert!(r.set_cap(8192).is_err(), "the injected mprotect failure");
        }
        assert_eq!(r.lock().cap(), 4096, "the capacity is unchanged");
        // Shrinking, or growing within what is already open, needs no mprotect.
        r.fail_next_growth();
        assert_eq!(r.set_cap(4096).unwrap(), 4096);
    }
}
