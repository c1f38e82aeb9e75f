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

use super::apply::{self, arith::ArithOutcome, delete::DeleteOutcome};
use crate::protocol::binary::{
    encode_counter, encode_error, encode_hit, encode_miss, encode_sasl_mechs, encode_sasl_ok,
    encode_success, encode_version, lower, BinRequest, Command, Status,
};
use crate::protocol::command::{ArithCommand, DeleteCommand, StoreCommand};
use crate::protocol::reply::VERSION;
use crate::protocol::StoreMode;
use crate::server::counters::Stats;
use crate::server::session::{Flow, HeldItems};
use crate::server::shared::ServerState;
use crate::store::{StoreError, StoreOutcome};

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
            let cmd = lower::store(req.cas, mode, key, flags, exptime, value);
            store(shared, req, &cmd, quiet, out)
        }
        Command::Concat {
            append,
            key,
            value,
            quiet,
        } => {
            let cmd = lower::concat(req.cas, append, key, value);
            store(shared, req, &cmd, quiet, out)
        }
        Command::Delete { key, quiet } => {
            let cmd = lower::delete(req.cas, key);
            delete(shared, req, &cmd, quiet, out)
        }
        Command::Counter {
            incr,
            key,
            delta,
            initial,
            exptime,
            quiet,
        } => {
            let cmd = lower::counter(req.cas, incr, key, delta, initial, exptime);
            counter(shared, req, &cmd, quiet, out, held)
        }
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
    let mut e = shared.store.entry(key);
    let hit = apply::fetch::fetch(&mut e, &shared.stats, touch.map(i64::from), |it| {
        encode_hit(
            req.opcode,
            req.opaque,
            it.cas(),
            it.flags(),
            key,
            it.value(),
            out,
        )
    });
    drop(e);
    match hit {
        Some(cas) => {
            // Every hit's reply holds the item until it is written, touch's too (memcached's
            // process_bin_get_or_touch keeps `resp->item` for all of them), so a later incr/decr
            // in the same batch writes a new value instead of padding in place.
            held.hold(key, cas);
            NEXT
        }
        None if quiet => NEXT,
        None => {
            encode_miss(req.opcode, req.opaque, key, out);
            // The …K misses carry the key and are queued like a hit.
            Done {
                flow: Flow::Continue,
                flush: !with_key,
            }
        }
    }
}

/// set/add/replace (CAS when the header has one), append/prepend: memcached's
/// `complete_update_bin`.
fn store(
    shared: &ServerState,
    req: &BinRequest<'_>,
    cmd: &StoreCommand<'_>,
    quiet: bool,
    out: &mut Vec<u8>,
) -> Done {
    let outcome = apply::store::store(&mut shared.store.entry(cmd.key), &shared.stats, cmd);
    let status = match outcome {
        StoreOutcome::Stored(cas) => {
            if !quiet {
                encode_success(req.opcode, req.opaque, cas, out);
            }
            return NEXT;
        }
        StoreOutcome::Exists => Status::KeyExists,
        StoreOutcome::NotFound => Status::KeyNotFound,
        StoreOutcome::NotStored => match cmd.mode {
            StoreMode::Add => Status::KeyExists,
            StoreMode::Replace => Status::KeyNotFound,
            _ => Status::NotStored,
        },
        StoreOutcome::Error(StoreError::TooLarge) => Status::TooLarge,
        StoreOutcome::Error(StoreError::OutOfMemory) => Status::OutOfMemory,
    };
    error(req, status, out)
}

/// delete/deleteq.
fn delete(
    shared: &ServerState,
    req: &BinRequest<'_>,
    cmd: &DeleteCommand<'_>,
    quiet: bool,
    out: &mut Vec<u8>,
) -> Done {
    match apply::delete::delete(&mut shared.store.entry(cmd.key), &shared.stats, cmd) {
        DeleteOutcome::Deleted | DeleteOutcome::Invalidated => {
            if !quiet {
                encode_success(req.opcode, req.opaque, 0, out);
            }
            NEXT
        }
        DeleteOutcome::NotFound => error(req, Status::KeyNotFound, out),
        DeleteOutcome::Exists => error(req, Status::KeyExists, out),
    }
}

/// increment/decrement: memcached's `process_bin_arithmetic`.
fn counter(
    shared: &ServerState,
    req: &BinRequest<'_>,
    cmd: &ArithCommand<'_>,
    quiet: bool,
    out: &mut Vec<u8>,
    held: &HeldItems,
) -> Done {
    let mut e = shared.store.entry(cmd.key);
    let outcome = apply::arith::arith(&mut e, &shared.stats, cmd, held);
    drop(e);
    let status = match outcome {
        ArithOutcome::Done { value, cas, .. } => {
            if !quiet {
                encode_counter(req.opcode, req.opaque, cas, value, out);
            }
            return NEXT;
        }
        ArithOutcome::NotFound => Status::KeyNotFound,
        ArithOutcome::Exists => Status::KeyExists,
        ArithOutcome::NonNumeric => Status::DeltaBadValue,
        ArithOutcome::NoMemory | ArithOutcome::CreateFailed => Status::OutOfMemory,
    };
    error(req, status, out)
}
