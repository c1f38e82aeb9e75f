//! Executes binary-protocol requests ([`BinRequest`], parsed by `protocol::binary`) against the
//! store and appends memcached 1.6.18's exact reply frames (`proto_bin.c`).
//!
//! Every mutation goes through the same `Entry` calls as its text equivalent, so versions, CAS
//! ids, TTLs and flags are the same and the store publishes the same replication record: a
//! binary write replicates exactly like a text one.
//!
//! Each call says whether memcached flushes its queued replies after the request (error
//! replies, noop, quit): the pipeline turns that into a write point.

mod stat;

use crate::protocol::binary::{
    encode_counter, encode_error, encode_hit, encode_miss, encode_sasl_mechs, encode_sasl_ok,
    encode_success, encode_version, BinRequest, Command, Status, StoreMode,
};
use crate::protocol::reply::VERSION;
use crate::server::counters::Stats;
use crate::server::session::{Flow, HeldItems};
use crate::server::shared::ServerState;
use crate::store::{ArithError, Expiry, StoreError, StoreOutcome, WriteMode};

/// What the connection does after one binary request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub flow: Flow,
    /// memcached writes its queued replies now (a write point).
    pub flush: bool,
}

const NEXT: Done = Done {
    flow: Flow::Continue,
    flush: false,
};
const FLUSH: Done = Done {
    flow: Flow::Continue,
    flush: true,
};

/// An error reply; memcached's `write_bin_error` without a swallow flushes.
fn error(req: &BinRequest<'_>, status: Status, out: &mut Vec<u8>) -> Done {
    encode_error(req.opcode, req.opaque, status, out);
    FLUSH
}

/// Executes one request; `held` tracks the items an unwritten get reply still references,
/// `authenticated` the connection's SASL state.
pub fn execute(
    shared: &ServerState,
    req: &BinRequest<'_>,
    out: &mut Vec<u8>,
    held: &mut HeldItems,
    authenticated: &mut bool,
) -> Done {
    match req.command {
        Command::Get {
            key,
            quiet,
            with_key,
        } => fetch(shared, req, key, None, quiet, with_key, out, held),
        Command::Gat {
            key,
            exptime,
            quiet,
            with_key,
        } => fetch(shared, req, key, Some(exptime), quiet, with_key, out, held),
        Command::Touch { key, exptime } => {
            fetch(shared, req, key, Some(exptime), false, false, out, held)
        }
        Command::Store {
            mode,
            key,
            flags,
            exptime,
            value,
            quiet,
        } => {
            let write = match (req.cas, mode) {
                (0, StoreMode::Set) => WriteMode::Set,
                (0, StoreMode::Add) => WriteMode::Add,
                (0, StoreMode::Replace) => WriteMode::Replace,
                // memcached turns any store with a CAS in the header into a compare-and-swap.
                (cas, _) => WriteMode::Cas(cas),
            };
            store(shared, req, write, key, flags, exptime, value, quiet, out)
        }
        Command::Concat {
            append,
            key,
            value,
            quiet,
        } => {
            let write = if append {
                WriteMode::Append
            } else {
                WriteMode::Prepend
            };
            store(shared, req, write, key, 0, 0, value, quiet, out)
        }
        Command::Delete { key, quiet } => delete(shared, req, key, quiet, out),
        Command::Counter {
            incr,
            key,
            delta,
            initial,
            exptime,
            quiet,
        } => counter(
            shared, req, incr, key, delta, initial, exptime, quiet, out, held,
        ),
        Command::Quit { quiet } => {
            if !quiet {
                encode_success(req.opcode, req.opaque, 0, out);
            }
            Done {
                flow: Flow::Close,
                flush: true,
            }
        }
        Command::Flush { delay, quiet } => {
            if shared.config.disable_flush {
                return error(req, Status::AuthError, out);
            }
            Stats::incr(&shared.stats.cmd_flush);
            shared.store.flush_all(i64::from(delay));
            if !quiet {
                encode_success(req.opcode, req.opaque, 0, out);
            }
            NEXT
        }
        Command::Noop => {
            encode_success(req.opcode, req.opaque, 0, out);
            FLUSH
        }
        Command::Version => {
            encode_version(req.opaque, VERSION.as_bytes(), out);
            NEXT
        }
        Command::Stat { key } => {
            if stat::write(shared, req.opaque, key, out) {
                NEXT
            } else {
                error(req, Status::KeyNotFound, out)
            }
        }
        // The SASL commands are only parsed with -S.
        Command::SaslListMechs => {
            encode_sasl_mechs(req.opaque, b"PLAIN", out);
            NEXT
        }
        Command::SaslAuth { mech, data } => {
            let ok = mech == b"PLAIN" && plain_ok(shared, data);
            // memcached counts every completed SASL exchange, and its failures.
            Stats::incr(&shared.stats.auth_cmds);
            if ok {
                *authenticated = true;
                encode_sasl_ok(req.opcode, req.opaque, out);
                NEXT
            } else {
                Stats::incr(&shared.stats.auth_errors);
                error(req, Status::AuthError, out)
            }
        }
        // PLAIN completes in one step: a step has nothing to continue (memcached counts it as
        // a failed exchange).
        Command::SaslStep { .. } => {
            Stats::incr(&shared.stats.auth_cmds);
            Stats::incr(&shared.stats.auth_errors);
            error(req, Status::AuthError, out)
        }
    }
}

/// SASL PLAIN's message: `[authzid] NUL authcid NUL password`; the authorization id, when
/// given, must be the user itself.
fn plain_ok(shared: &ServerState, data: &[u8]) -> bool {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (Some(authz), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    (authz.is_empty() || authz == user) && shared.check_sasl(user, password)
}

/// get/getq/getk/getkq, gat/gatq/gatk/gatkq and touch (`touch` holds the new expiry).
#[allow(clippy::too_many_arguments)]
fn fetch(
    shared: &ServerState,
    req: &BinRequest<'_>,
    key: &[u8],
    touch: Option<u32>,
    quiet: bool,
    with_key: bool,
    out: &mut Vec<u8>,
    held: &mut HeldItems,
) -> Done {
    let stats = &shared.stats;
    let mut e = shared.store.entry(key);
    // The reply is the item as found (a touch changes neither its value nor its CAS), so it is
    // encoded before the touch, which may end the item's life.
    let hit = e.item().map(|it| {
        encode_hit(
            req.opcode,
            req.opaque,
            it.cas(),
            it.flags(),
            key,
            it.value(),
            out,
        );
        it.cas()
    });
    if hit.is_some() {
        e.bump();
        if let Some(exptime) = touch {
            let exp = Expiry::from_client(i64::from(exptime), e.now());
            e.touch(exp);
        }
    }
    drop(e);
    let (cmds, hits, misses) = if touch.is_some() {
        (&stats.cmd_touch, &stats.touch_hits, &stats.touch_misses)
    } else {
        (&stats.cmd_get, &stats.get_hits, &stats.get_misses)
    };
    Stats::incr(cmds);
    match hit {
        Some(cas) => {
            Stats::incr(hits);
            // Every hit's reply holds the item until it is written, touch's too (memcached's
            // process_bin_get_or_touch keeps `resp->item` for all of them), so a later incr/decr
            // in the same batch writes a new value instead of padding in place.
            held.hold(key, cas);
            NEXT
        }
        None => {
            Stats::incr(misses);
            if quiet {
                NEXT
            } else {
                encode_miss(req.opcode, req.opaque, key, out);
                // The …K misses carry the key and are queued like a hit.
                Done {
                    flow: Flow::Continue,
                    flush: !with_key,
                }
            }
        }
    }
}

/// set/add/replace (CAS when the header has one), append/prepend: memcached's
/// `complete_update_bin`.
#[allow(clippy::too_many_arguments)]
fn store(
    shared: &ServerState,
    req: &BinRequest<'_>,
    mode: WriteMode,
    key: &[u8],
    flags: u32,
    exptime: u32,
    value: &[u8],
    quiet: bool,
    out: &mut Vec<u8>,
) -> Done {
    let stats = &shared.stats;
    Stats::incr(&stats.cmd_set);
    let mut e = shared.store.entry(key);
    let exp = Expiry::from_client(i64::from(exptime), e.now());
    // append/prepend compare a non-zero header CAS too.
    let compare = (req.cas != 0).then_some(req.cas);
    let outcome = e.store(mode, flags, exp, value, compare, false);
    if let (StoreOutcome::Error(_), WriteMode::Set) = (outcome, mode) {
        // memcached unlinks the old value when a set fails, so no stale data survives it.
        e.delete();
    }
    drop(e);
    if let WriteMode::Cas(_) = mode {
        match outcome {
            StoreOutcome::Stored(_) => Stats::incr(&stats.cas_hits),
            StoreOutcome::Exists => Stats::incr(&stats.cas_badval),
            StoreOutcome::NotFound => Stats::incr(&stats.cas_misses),
            _ => {}
        }
    }
    let status = match outcome {
        StoreOutcome::Stored(cas) => {
            if !quiet {
                encode_success(req.opcode, req.opaque, cas, out);
            }
            return NEXT;
        }
        StoreOutcome::Exists => Status::KeyExists,
        StoreOutcome::NotFound => Status::KeyNotFound,
        StoreOutcome::NotStored => match mode {
            WriteMode::Add => Status::KeyExists,
            WriteMode::Replace => Status::KeyNotFound,
            _ => Status::NotStored,
        },
        StoreOutcome::Error(StoreError::TooLarge) => {
            Stats::incr(&stats.store_too_large);
            Status::TooLarge
        }
        StoreOutcome::Error(StoreError::OutOfMemory) => {
            Stats::incr(&stats.store_no_memory);
            Status::OutOfMemory
        }
    };
    error(req, status, out)
}

/// delete/deleteq: a non-zero header CAS must match the item's.
fn delete(
    shared: &ServerState,
    req: &BinRequest<'_>,
    key: &[u8],
    quiet: bool,
    out: &mut Vec<u8>,
) -> Done {
    let stats = &shared.stats;
    let mut e = shared.store.entry(key);
    let status = match e.item().map(|it| it.cas()) {
        None => Some(Status::KeyNotFound),
        Some(have) if req.cas != 0 && req.cas != have => Some(Status::KeyExists),
        Some(_) => {
            e.delete();
            None
        }
    };
    drop(e);
    match status {
        None => {
            Stats::incr(&stats.delete_hits);
            if !quiet {
                encode_success(req.opcode, req.opaque, 0, out);
            }
            NEXT
        }
        Some(status) => {
            if status == Status::KeyNotFound {
                Stats::incr(&stats.delete_misses);
            }
            error(req, status, out)
        }
    }
}

/// increment/decrement: memcached's `process_bin_arithmetic`. A miss creates the item with the
/// initial value unless the expiration is 0xffffffff.
#[allow(clippy::too_many_arguments)]
fn counter(
    shared: &ServerState,
    req: &BinRequest<'_>,
    incr: bool,
    key: &[u8],
    delta: u64,
    initial: Option<u64>,
    exptime: u32,
    quiet: bool,
    out: &mut Vec<u8>,
    held: &HeldItems,
) -> Done {
    let stats = &shared.stats;
    let (hits, misses) = if incr {
        (&stats.incr_hits, &stats.incr_misses)
    } else {
        (&stats.decr_hits, &stats.decr_misses)
    };
    let mut e = shared.store.entry(key);
    let result = match e.item() {
        None => match initial {
            None => {
                drop(e);
                Stats::incr(misses);
                return error(req, Status::KeyNotFound, out);
            }
            Some(initial) => {
                let exp = Expiry::from_client(i64::from(exptime), e.now());
                let digits = initial.to_string();
                match e.store(WriteMode::Add, 0, exp, digits.as_bytes(), None, false) {
                    StoreOutcome::Stored(cas) => Ok((initial, cas)),
                    StoreOutcome::Error(StoreError::OutOfMemory | StoreError::TooLarge) => {
                        Err(Status::OutOfMemory)
                    }
                    _ => Err(Status::NotStored),
                }
            }
        },
        // memcached refuses an empty value before it compares the CAS.
        Some(it) if req.cas != 0 && !it.value().is_empty() && it.cas() != req.cas => {
            Err(Status::KeyExists)
        }
        Some(it) => {
            let in_place = !held.holds(key, it.cas());
            let r = e.arith_with(incr, delta, in_place);
            if r.is_ok() {
                Stats::incr(hits);
            }
            r.map_err(|err| match err {
                ArithError::NotFound => Status::KeyNotFound,
                ArithError::NonNumeric => Status::DeltaBadValue,
                ArithError::Store(_) => Status::OutOfMemory,
            })
        }
    };
    drop(e);
    match result {
        Ok((value, cas)) => {
            if !quiet {
                encode_counter(req.opcode, req.opaque, cas, value, out);
            }
            NEXT
        }
        Err(status) => error(req, status, out),
    }
}
