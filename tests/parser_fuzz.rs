//! Deterministic parser fuzzing on stable Rust, part of `cargo test`: tens of thousands of
//! random and mutated inputs through the binary, text (and meta) and `-Y` authentication
//! parsers, walked request after request as a connection would. Checked: no panic, every
//! parse consumes within its input, no value over the item limit, and — with a counting
//! global allocator — that no parse allocates anything sized by a length the input declares
//! (a body of 4 GiB asks for more bytes, it never reserves them). The coverage-guided version
//! of the same walk is `fuzz/` (cargo-fuzz, nightly).

use repcached::protocol::binary::{self, Command, Sasl};
use repcached::protocol::{auth, text, ParseLimits, Parsed, Request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Records the largest single allocation made by this thread while `TRACK` is on.
struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the thread-locals may be gone while a thread exits.
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// GlobalAlloc's contract; the bookkeeping only reads the requested size and touches
// const-initialised thread-locals, which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same layout as given to us, per GlobalAlloc::alloc's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as in alloc.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with this layout (alloc/realloc above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: ptr came from System with `layout`; new_size is the caller's, per contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn tracked<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACK.with(|t| t.set(true));
    let r = f();
    TRACK.with(|t| t.set(false));
    (r, LARGEST.with(|l| l.get()))
}

/// splitmix64: a fixed seed gives the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Up to `max` random bytes.
    fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
}

/// Lengths a client may declare: small, around the limit, and huge.
fn declared(rng: &mut Rng, limit: usize) -> u64 {
    match rng.below(6) {
        0 => rng.below(64) as u64,
        1 => (limit + rng.below(8)).saturating_sub(4) as u64,
        2 => u64::from(u32::MAX) - rng.below(4) as u64,
        3 => 1 << (10 + rng.below(22)),
        4 => rng.next() % (1 << 32),
        _ => rng.below(limit * 2) as u64,
    }
}

/// One random mutation: flip, overwrite, insert, delete, duplicate or cut.
fn mutate(rng: &mut Rng, buf: &mut Vec<u8>) {
    let at = rng.below(buf.len() + 1);
    let inside = at.min(buf.len().saturating_sub(1));
    match rng.below(7) {
        0 if !buf.is_empty() => buf[inside] ^= 1 << rng.below(8),
        1 if !buf.is_empty() => buf[inside] = rng.next() as u8,
        2 => {
            let special = [b' ', b'\r', b'\n', 0, 0x80, b'0', b'9', b'-'];
            buf.insert(at, special[rng.below(special.len())]);
        }
        3 if at < buf.len() => {
            buf.remove(at);
        }
        4 => {
            let end = (at + rng.below(32)).min(buf.len());
            let piece = buf[at..end].to_vec();
            buf.splice(at..at, piece);
        }
        5 => buf.truncate(at),
        _ => {
            let extra = rng.some_bytes(16);
            buf.splice(at..at, extra);
        }
    }
}

const ITEM_MAX: usize = 2048;
/// What a parse may allocate, whatever the input declares: scratch for a decoded key or a
/// few small tables, far below the declared sizes of up to 4 GiB.
const ALLOC_BOUND: usize = 16 * 1024;

fn limits() -> ParseLimits {
    ParseLimits {
        item_size_max: ITEM_MAX,
        ..ParseLimits::default()
    }
}

fn binary_frame(rng: &mut Rng) -> Vec<u8> {
    let opcode = if rng.below(4) == 0 {
        rng.next() as u8
    } else {
        rng.below(0x25) as u8
    };
    let extras = [0usize, 4, 8, 20][rng.below(4)];
    let key = rng.some_bytes(40);
    let value = rng.some_bytes(300);
    let honest = extras + key.len() + value.len();
    let body_len = if rng.below(3) == 0 {
        declared(rng, ITEM_MAX) as u32
    } else {
        honest as u32
    };
    let mut f = vec![0x80, opcode];
    f.extend_from_slice(&(key.len() as u16).to_be_bytes());
    f.push(extras as u8);
    f.extend_from_slice(&[0, 0, 0]);
    f.extend_from_slice(&body_len.to_be_bytes());
    f.extend_from_slice(&rng.bytes(12));
    f.extend(rng.bytes(extras));
    f.extend_from_slice(&key);
    f.extend_from_slice(&value);
    f
}

fn text_request(rng: &mut Rng) -> Vec<u8> {
    let key = format!("k{}", rng.below(1000));
    let n = declared(rng, ITEM_MAX);
    let data_len = (n as usize).min(rng.below(400));
    let data = "x".repeat(data_len);
    let line = match rng.below(15) {
        0 => format!(
            "set {key} {} {} {n}\r\n{data}\r\n",
            rng.below(9),
            rng.below(99)
        ),
        1 => format!("add {key} 0 0 {n} noreply\r\n{data}\r\n"),
        2 => format!("cas {key} 0 0 {n} {}\r\n{data}\r\n", rng.next()),
        3 => format!("append {key} 0 0 {n}\r\n{data}\r\n"),
        4 => format!("get {key} k2 k3\r\n"),
        5 => format!("gats {} {key}\r\n", rng.below(100)),
        6 => format!("incr {key} {}\r\n", rng.next()),
        7 => format!(
            "ms {key} {n} T{} F{} I\r\n{data}\r\n",
            rng.below(9),
            rng.below(9)
        ),
        8 => format!("mg {key} v k c t s f O{}\r\n", rng.below(99)),
        9 => format!(
            "ma {key} N{} J{} D{}\r\n",
            rng.below(9),
            rng.below(9),
            rng.next()
        ),
        10 => "mn\r\nstats\r\nversion\r\n".to_string(),
        11 => format!("touch {key} {}\r\ndelete {key}\r\n", rng.below(99)),
        12 => format!("flush_all {}\r\nverbosity 1\r\n", rng.below(9)),
        13 => "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        _ => String::from_utf8_lossy(&rng.some_bytes(64)).into_owned(),
    };
    line.into_bytes()
}

fn auth_request(rng: &mut Rng) -> Vec<u8> {
    let n = declared(rng, auth::MAX_BLOCK);
    let data_len = (n as usize).min(rng.below(64));
    format!(
        "set k 0 0 {n}\r\n{}\r\n",
        &"u p".repeat(data_len / 3 + 1)[..data_len]
    )
    .into_bytes()
}

/// An input: a few requests, each possibly mutated, or plain noise.
fn input(rng: &mut Rng, make: fn(&mut Rng) -> Vec<u8>) -> Vec<u8> {
    let mut buf = Vec::new();
    if rng.below(10) == 0 {
        return rng.some_bytes(2000);
    }
    for _ in 0..1 + rng.below(4) {
        buf.extend(make(rng));
    }
    for _ in 0..rng.below(4) {
        mutate(rng, &mut buf);
    }
    buf
}

/// What the walks met, so that the tests can insist on reaching every kind of outcome.
#[derive(Default, Debug)]
struct Seen {
    requests: usize,
    errors: usize,
    waits: usize,
}

/// Walks `buf` through the binary parser as a connection would.
fn walk_binary(buf: &[u8], sasl: Sasl, seen: &mut Seen) {
    let limits = limits();
    let mut rest = buf;
    for _ in 0..buf.len() + 1 {
        if rest.is_empty() {
            return;
        }
        let (r, largest) = tracked(|| binary::parse(rest, &limits, sasl));
        assert!(largest <= ALLOC_BOUND, "binary parse allocated {largest}");
        match r {
            Ok(None) => {
                seen.waits += 1;
                return;
            }
            Ok(Some((req, n))) => {
                seen.requests += 1;
                assert!(n >= binary::HEADER_LEN && n <= rest.len());
                if let Command::Store { value, .. } | Command::Concat { value, .. } = req.command {
                    assert!(value.len() <= ITEM_MAX);
                }
                rest = &rest[n..];
            }
            Err(e) => {
                seen.errors += 1;
                assert!(e.consumed <= rest.len());
                let mut out = bytes::BytesMut::new();
                e.encode(&mut out);
                assert!(out.len() <= ALLOC_BOUND);
                if e.close != binary::Close::No {
                    return;
                }
                rest = &rest[e.consumed.saturating_add(e.swallow).min(rest.len())..];
            }
        }
    }
    panic!("the binary walk did not end");
}

/// Walks `buf` through the text (and meta) parser.
fn walk_text(buf: &[u8], seen: &mut Seen) {
    let limits = limits();
    let mut rest = buf;
    for _ in 0..buf.len() + 1 {
        if rest.is_empty() {
            return;
        }
        let (r, largest) = tracked(|| text::parse(rest, &limits));
        assert!(largest <= ALLOC_BOUND, "text parse allocated {largest}");
        match r {
            Parsed::Incomplete => {
                seen.waits += 1;
                return;
            }
            Parsed::Request(req, n) => {
                seen.requests += 1;
                assert!(n > 0 && n <= rest.len(), "{req:?} consumed {n}");
                if let Request::Store { data, .. } = req {
                    assert!(data.len() <= ITEM_MAX);
                }
                rest = &rest[n..];
            }
            Parsed::Error {
                consumed,
                swallow,
                effect,
                ..
            } => {
                seen.errors += 1;
                // A silent close (an HTTP request, say) needs to consume nothing.
                assert!(consumed <= rest.len());
                assert!(swallow as u64 <= u64::from(u32::MAX) + 2);
                if effect == repcached::protocol::Effect::Close {
                    return;
                }
                assert!(consumed > 0);
                rest = &rest[consumed.saturating_add(swallow).min(rest.len())..];
            }
        }
    }
    panic!("the text walk did not end");
}

/// Walks `buf` through the `-Y` authentication parser.
fn walk_auth(buf: &[u8], seen: &mut Seen) {
    let mut rest = buf;
    for _ in 0..buf.len() + 1 {
        let (step, largest) = tracked(|| auth::parse(rest));
        assert!(largest <= ALLOC_BOUND, "auth parse allocated {largest}");
        let consumed = match step {
            auth::Step::Incomplete | auth::Step::Close => {
                seen.waits += 1;
                return;
            }
            auth::Step::Credentials { consumed, .. } => {
                seen.requests += 1;
                consumed
            }
            auth::Step::Unauthenticated { consumed }
            | auth::Step::BadTermination { consumed }
            | auth::Step::BadFormat { consumed } => {
                seen.errors += 1;
                consumed
            }
        };
        assert!(consumed > 0 && consumed <= rest.len());
        rest = &rest[consumed..];
    }
    panic!("the auth walk did not end");
}

const CASES: usize = 30_000;

#[test]
fn binary_parser() {
    let mut rng = Rng(0x5EED_0B1A);
    let mut seen = Seen::default();
    for _ in 0..CASES {
        let buf = input(&mut rng, binary_frame);
        let sasl = [Sasl::Disabled, Sasl::Required, Sasl::Authenticated][rng.below(3)];
        walk_binary(&buf, sasl, &mut seen);
        // Every prefix is a moment of a connection reading slowly.
        let cut = rng.below(buf.len() + 1);
        walk_binary(&buf[..cut], sasl, &mut seen);
    }
    enough(&seen);
}

/// Each kind of outcome was met often, so the cases still reach the parsers' branches.
fn enough(seen: &Seen) {
    let least = CASES / 20;
    assert!(
        seen.requests > least && seen.errors > least && seen.waits > least,
        "{seen:?}"
    );
}

#[test]
fn text_parser() {
    let mut rng = Rng(0x5EED_7E47);
    let mut seen = Seen::default();
    for _ in 0..CASES {
        let buf = input(&mut rng, text_request);
        walk_text(&buf, &mut seen);
        let cut = rng.below(buf.len() + 1);
        walk_text(&buf[..cut], &mut seen);
    }
    enough(&seen);
}

#[test]
fn auth_parser() {
    let mut rng = Rng(0x5EED_A074);
    let mut seen = Seen::default();
    for _ in 0..CASES {
        let buf = input(&mut rng, auth_request);
        walk_auth(&buf, &mut seen);
    }
    enough(&seen);
}

/// The allocator really sees what a parse would reserve (a check that cannot fail is none).
#[test]
fn the_allocation_check_works() {
    let ((), largest) = tracked(|| drop(Vec::<u8>::with_capacity(1 << 20)));
    assert!(largest >= 1 << 20);
}
