//! Executes parsed meta commands (mg, ms, md, ma, mn, me) against the store and writes
//! memcached 1.6.18's exact reply bytes.
//!
//! Replies are built by walking the flag tokens in the order the client sent them, as memcached
//! does, because the order is visible: `t` before `T` shows the old TTL, an over-long opaque
//! aborts the reply after the flags before it have taken effect. All changes to replicated state
//! go through `Entry` methods; only local bits (FETCHED, STALE, TOKEN_SENT, KEY_BINARY) and the
//! access time are edited in place.
//!
//! `get` is mg, `update` ms/md/ma, `debug` me; `common` holds the reply pieces they share.

mod common;
mod debug;
mod get;
mod update;

use crate::protocol::meta::{MetaCommand, MetaRequest};
use crate::server::counters::Stats;
use crate::server::session::HeldItems;
use crate::store::Store;

/// Runs one meta request and appends its reply (possibly nothing, with `q`) to `out`.
/// `held` tracks the items an unwritten reply still references (see [`HeldItems`]).
pub fn execute(
    store: &Store,
    stats: &Stats,
    req: &MetaRequest<'_>,
    out: &mut Vec<u8>,
    held: &mut HeldItems,
) {
    match req {
        MetaRequest::Noop => out.extend_from_slice(b"MN\r\n"),
        MetaRequest::Debug { key } => debug::debug(store, stats, key, out),
        MetaRequest::Cmd(cmd) => match cmd.command {
            MetaCommand::Get => get::get(store, stats, cmd, out, held),
            MetaCommand::Set => update::set(store, stats, cmd, out),
            MetaCommand::Delete => update::delete(store, stats, cmd, out),
            MetaCommand::Arithmetic => update::arith(store, stats, cmd, out, held),
        },
    }
}

#[cfg(test)]
mod tests;
