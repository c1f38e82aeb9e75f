//! Per-connection protocol state, shared by the TCP loop, UDP and the executors: where
//! memcached's last write point was in the reply buffer, the items its unwritten replies still
//! reference, the data block being swallowed, the reply budget. It only holds state and the
//! rules for resetting it; the pipeline (pipeline.rs) drives it.

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Close this connection after flushing (quit).
    Close,
    /// Shut the whole server down (shutdown with -A).
    Shutdown,
}

/// The protocol a connection speaks, decided by its first byte (`-B auto`) or by `-B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// Nothing read yet.
    #[default]
    Undecided,
    Text,
    Binary,
}

/// What memcached has queued but not written, and what the connection is in the middle of.
/// Reset by [`Session::flushed`] whenever the reply buffer is really written.
#[derive(Debug, Default)]
pub struct Session {
    /// Bytes of a refused data block still to be discarded as they arrive.
    pub swallow: usize,
    /// Where in the reply buffer memcached's last write point was: a refused multi-get or a
    /// silent close throws away what follows it.
    pub(super) written: usize,
    /// Items an unwritten reply still references (see [`HeldItems`]).
    pub held: HeldItems,
    /// A data block (stored or swallowed) did not fit in what had been read when its command
    /// line was parsed. memcached reads such a block straight from the socket, so its buffer
    /// is empty when the block ends: a write point once the command completes.
    pub(super) block_from_socket: bool,
    /// Replies queued since the last write point, for `-o read_buf_mem_limit`.
    pub(super) replies: usize,
    /// Text or binary, once known.
    pub proto: Proto,
    /// The connection has authenticated: SASL (`-S`, binary) or ascii authentication (`-Y`).
    pub authenticated: bool,
    /// Failed login attempts on this connection (see `auth_guard`).
    pub auth_failures: u32,
    /// The client's address as `stats conns` shows it (`tcp:IP:PORT`), for the log of failed
    /// logins; only filled in when clients must authenticate.
    pub peer: String,
}

impl Session {
    /// The reply buffer went out on the socket (and was cleared): nothing is queued any more.
    /// A data block being swallowed stays being swallowed.
    pub fn flushed(&mut self) {
        self.written = 0;
        self.held.release_all();
        self.block_from_socket = false;
        self.replies = 0;
    }

    /// memcached's write point: what is queued up to `at` (the reply buffer's length) will be
    /// written as it is, its items released, the reply budget renewed.
    pub(super) fn write_point(&mut self, at: usize) {
        self.written = at;
        self.held.release_all();
        self.replies = 0;
    }
}

/// memcached's read buffer: a command line and data block larger than this cannot have been
/// buffered whole, so memcached read the block straight from the socket.
pub(super) const MEMCACHED_READ_BUFFER: usize = 16 * 1024;
/// memcached takes reply objects from READ_BUFFER_SIZE pages, 13 to a page.
const MEMCACHED_REPLIES_PER_PAGE: usize = 13;

/// `-o read_buf_mem_limit`: how many replies a connection may have queued and unwritten.
/// memcached splits the limit between its worker threads in 16 KiB pages; one page is the
/// connection's read buffer, each other holds 13 reply objects (a get takes one per key). We
/// give that budget to each connection rather than share it per thread (measured against
/// memcached 1.6.18: -t 32 allows 13 keys, -t 16 39, -t 8 91, -t 4 195).
pub fn reply_slots(read_buf_mem_limit: u64, threads: usize) -> Option<usize> {
    if read_buf_mem_limit == 0 {
        return None;
    }
    let per_thread = read_buf_mem_limit / threads.max(1) as u64;
    let pages = (per_thread / MEMCACHED_READ_BUFFER as u64) as usize;
    Some(pages.saturating_sub(1) * MEMCACHED_REPLIES_PER_PAGE)
}

/// Items that memcached would still hold a reference to because a reply naming them has not
/// been written yet (an `mg` hit before the next write point). While held, incr/decr cannot
/// rewrite the value in place and allocate an exact-length one instead, which a client sees as
/// the absence of memcached's space padding. Identified by key and CAS id: a replaced item is
/// a different item.
#[derive(Debug, Default)]
pub struct HeldItems {
    held: Vec<(Box<[u8]>, u64)>,
}

impl HeldItems {
    pub fn hold(&mut self, key: &[u8], cas: u64) {
        self.held.push((key.into(), cas));
    }

    pub fn holds(&self, key: &[u8], cas: u64) -> bool {
        self.held.iter().any(|(k, c)| **k == *key && *c == cas)
    }

    /// A write point: every queued reply went out and released its items.
    pub fn release_all(&mut self) {
        self.held.clear();
    }
}
