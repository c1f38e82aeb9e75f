//! Replays `tests/data/binary_reference.txt` (memcached 1.6.18's replies to a table of binary
//! requests, recorded by `tests/interop/binary_reference.py`) through [`parse`], the reply
//! encoders and a deliberately small model of memcached's executor, and asserts the same bytes
//! per step and the same close.
//!
//! The model is not the server's executor: it exists to prove that the codec can express every
//! reply memcached sent, and it writes down the connection rules the executor must follow:
//! - replies are queued and flushed when the input runs dry at a request boundary, after every
//!   error reply that discards nothing (memcached's `conn_mwrite`), after noop and quit;
//! - an error that discards bytes does not flush: its reply waits for the next flush;
//! - a silent close (bad magic) loses the queued replies; a close after a reply flushes them.

use super::super::opcode as op;
use super::super::*;
use bytes::BytesMut;
use std::collections::HashMap;

const TABLE: &str = include_str!("../../../../tests/data/binary_reference.txt");

struct Step {
    send: Vec<u8>,
    recv: Vec<u8>,
}

struct Case {
    name: String,
    /// Recorded on the server started with -S (else without).
    sasl: bool,
    steps: Vec<Step>,
    closed: bool,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn load() -> (usize, Vec<Case>) {
    let mut item_size_max = 0;
    let mut cases: Vec<Case> = Vec::new();
    let mut sasl = false;
    for line in TABLE.lines().filter(|l| !l.starts_with('#')) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "item_size_max" => item_size_max = rest.parse().expect("item_size_max"),
            "server" => sasl = rest == "sasl",
            "case" => cases.push(Case {
                name: rest.to_string(),
                sasl,
                steps: Vec::new(),
                closed: false,
            }),
            "send" => cases.last_mut().expect("case").steps.push(Step {
                send: hex(rest),
                recv: Vec::new(),
            }),
            "recv" => {
                let case = cases.last_mut().expect("case");
                case.steps.last_mut().expect("step").recv = hex(rest);
            }
            "end" => cases.last_mut().expect("case").closed = rest == "closed",
            other => panic!("unexpected line {other:?}"),
        }
    }
    (item_size_max, cases)
}

struct Item {
    flags: u32,
    value: Vec<u8>,
    cas: u64,
}

/// memcached's store as far as the table needs it (no expiry, no memory limit).
#[derive(Default)]
struct Store {
    items: HashMap<Vec<u8>, Item>,
    last_cas: u64,
}

impl Store {
    fn next_cas(&mut self) -> u64 {
        self.last_cas += 1;
        self.last_cas
    }
}

/// One connection: input not yet parsed, bytes still to discard, replies queued and flushed.
struct Conn {
    sasl: Sasl,
    input: Vec<u8>,
    swallow: usize,
    queued: BytesMut,
    sent: Vec<u8>,
    closed: bool,
}

impl Conn {
    fn flush(&mut self) {
        self.sent.extend_from_slice(&self.queued);
        self.queued.clear();
    }
}

/// Feeds `bytes` and runs the connection until it needs more input or closes.
fn feed(conn: &mut Conn, bytes: &[u8], store: &mut Store, limits: &Limits) {
    conn.input.extend_from_slice(bytes);
    loop {
        if conn.closed {
            return;
        }
        if conn.swallow > 0 {
            let n = conn.swallow.min(conn.input.len());
            conn.input.drain(..n);
            conn.swallow -= n;
            if conn.swallow > 0 {
                // memcached waits in conn_swallow without flushing.
                return;
            }
        }
        let input = std::mem::take(&mut conn.input);
        let used = match parse(&input, limits, conn.sasl) {
            Ok(None) => {
                conn.input = input;
                conn.flush();
                return;
            }
            Ok(Some((req, n))) => {
                execute(conn, store, &req);
                n
            }
            Err(e) => {
                e.encode(&mut conn.queued);
                if let Some(key) = e.unlink {
                    store.items.remove(key);
                }
                match e.close {
                    Close::Now => {
                        conn.queued.clear();
                        conn.closed = true;
                    }
                    Close::AfterReply => {
                        conn.flush();
                        conn.closed = true;
                    }
                    Close::No if e.swallow == 0 => conn.flush(),
                    Close::No => {}
                }
                conn.swallow = e.swallow;
                e.consumed
            }
        };
        conn.input = input.get(used..).unwrap_or_default().to_vec();
    }
}

fn parse_u64(value: &[u8]) -> Option<u64> {
    // safe_strtoull: digits, then only trailing spaces (left by an in-place decr).
    let end = value
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(value.len());
    if end == 0 || value[end..].iter().any(|&b| b != b' ') {
        return None;
    }
    std::str::from_utf8(&value[..end]).ok()?.parse().ok()
}

fn execute(conn: &mut Conn, store: &mut Store, req: &BinRequest<'_>) {
    let (opcode, opaque, out) = (req.opcode, req.opaque, &mut conn.queued);
    // Error replies flush (memcached's write_bin_error without a swallow).
    let error = |status: Status, out: &mut BytesMut| {
        encode_error(opcode, opaque, status, out);
        true
    };
    let flush = match req.command {
        Command::Get { key, .. } | Command::Gat { key, .. } | Command::Touch { key, .. } => {
            let quiet = quiet_of(&req.command);
            match store.items.get(key) {
                Some(it) => {
                    encode_hit(opcode, opaque, it.cas, it.flags, key, &it.value, out);
                    false
                }
                None if quiet => false,
                // The …K misses carry the key and are queued like a hit.
                None if matches!(opcode, op::GETK | op::GATK) => {
                    encode_miss(opcode, opaque, key, out);
                    false
                }
                None => {
                    encode_miss(opcode, opaque, key, out);
                    true
                }
            }
        }
        Command::Store {
            mode,
            key,
            flags,
            value,
            quiet,
            ..
        } => {
            let existing = store.items.get(key).map(|it| it.cas);
            let refused = match (req.cas, existing, mode) {
                (0, Some(_), StoreMode::Add) => Some(Status::KeyExists),
                (0, None, StoreMode::Replace) => Some(Status::KeyNotFound),
                (0, _, _) => None,
                (_, None, _) => Some(Status::KeyNotFound),
                (cas, Some(have), _) if cas != have => Some(Status::KeyExists),
                _ => None,
            };
            match refused {
                Some(status) => error(status, out),
                None => {
                    let cas = store.next_cas();
                    let value = value.to_vec();
                    store.items.insert(key.to_vec(), Item { flags, value, cas });
                    if !quiet {
                        encode_success(opcode, opaque, cas, out);
                    }
                    false
                }
            }
        }
        Command::Concat {
            append,
            key,
            value,
            quiet,
        } => {
            let cas_in = req.cas;
            match store.items.get(key).map(|it| it.cas) {
                None => error(Status::NotStored, out),
                Some(have) if cas_in != 0 && cas_in != have => error(Status::KeyExists, out),
                Some(_) => {
                    let cas = store.next_cas();
                    if let Some(it) = store.items.get_mut(key) {
                        it.value = if append {
                            [&it.value[..], value].concat()
                        } else {
                            [value, &it.value[..]].concat()
                        };
                        it.cas = cas;
                    }
                    if !quiet {
                        encode_success(opcode, opaque, cas, out);
                    }
                    false
                }
            }
        }
        Command::Delete { key, quiet } => match store.items.get(key).map(|it| it.cas) {
            None => error(Status::KeyNotFound, out),
            Some(have) if req.cas != 0 && req.cas != have => error(Status::KeyExists, out),
            Some(_) => {
                store.items.remove(key);
                if !quiet {
                    encode_success(opcode, opaque, 0, out);
                }
                false
            }
        },
        Command::Counter {
            incr,
            key,
            delta,
            initial,
            quiet,
            ..
        } => match store
            .items
            .get(key)
            .map(|it| (it.cas, parse_u64(&it.value)))
        {
            None => match initial {
                None => error(Status::KeyNotFound, out),
                Some(initial) => {
                    let cas = store.next_cas();
                    let value = initial.to_string().into_bytes();
                    store.items.insert(
                        key.to_vec(),
                        Item {
                            flags: 0,
                            value,
                            cas,
                        },
                    );
                    if !quiet {
                        encode_counter(opcode, opaque, cas, initial, out);
                    }
                    false
                }
            },
            Some((have, _)) if req.cas != 0 && req.cas != have => error(Status::KeyExists, out),
            Some((_, None)) => error(Status::DeltaBadValue, out),
            Some((_, Some(old))) => {
                let new = if incr {
                    old.wrapping_add(delta)
                } else {
                    old.saturating_sub(delta)
                };
                let cas = store.next_cas();
                if let Some(it) = store.items.get_mut(key) {
                    let mut text = new.to_string().into_bytes();
                    // Rewritten in place (space padded) when it fits, like memcached.
                    if text.len() <= it.value.len() {
                        text.resize(it.value.len(), b' ');
                    }
                    it.value = text;
                    it.cas = cas;
                }
                if !quiet {
                    encode_counter(opcode, opaque, cas, new, out);
                }
                false
            }
        },
        Command::Quit { quiet } => {
            if !quiet {
                encode_success(opcode, opaque, 0, out);
            }
            conn.closed = true;
            true
        }
        Command::Flush { quiet, .. } => {
            store.items.clear();
            // memcached 1.6.18 spends a CAS id on an immediate flush (its oldest_cas mark).
            store.next_cas();
            if !quiet {
                encode_success(opcode, opaque, 0, out);
            }
            false
        }
        Command::Noop => {
            encode_success(opcode, opaque, 0, out);
            true
        }
        Command::Version => {
            encode_version(opaque, b"1.6.18", out);
            false
        }
        Command::Stat { .. } => error(Status::KeyNotFound, out),
        Command::SaslListMechs => {
            encode_sasl_mechs(opaque, b"PLAIN", out);
            false
        }
        // The recorded server had no valid credentials: every attempt fails.
        Command::SaslAuth { .. } | Command::SaslStep { .. } => error(Status::AuthError, out),
    };
    if flush {
        conn.flush();
    }
}

fn quiet_of(command: &Command<'_>) -> bool {
    matches!(
        command,
        Command::Get { quiet: true, .. } | Command::Gat { quiet: true, .. }
    )
}

#[test]
fn replies_match_recorded_memcached() {
    let (item_size_max, cases) = load();
    assert!(cases.len() >= 60, "table has {} cases", cases.len());
    assert!(cases.iter().any(|c| c.sasl));
    let limits = Limits {
        item_size_max,
        ..Limits::default()
    };
    // One store per recorded server, as CAS values carry over from case to case.
    let mut store = Store::default();
    let mut steps = 0;
    for (i, case) in cases.iter().enumerate() {
        if i > 0 && case.sasl != cases[i - 1].sasl {
            store = Store::default();
        }
        let mut conn = Conn {
            sasl: if case.sasl {
                Sasl::Required
            } else {
                Sasl::Disabled
            },
            input: Vec::new(),
            swallow: 0,
            queued: BytesMut::new(),
            sent: Vec::new(),
            closed: false,
        };
        for (i, step) in case.steps.iter().enumerate() {
            conn.sent.clear();
            feed(&mut conn, &step.send, &mut store, &limits);
            assert_eq!(
                conn.sent.as_slice(),
                step.recv.as_slice(),
                "case {:?} step {i}: sent {:02x?}",
                case.name,
                step.send
            );
            steps += 1;
        }
        assert_eq!(conn.closed, case.closed, "case {:?}: closed", case.name);
    }
    assert!(steps >= 140, "{steps} steps");
}
