//! mg/ms/md/ma lowered to the typed commands (`protocol::command`): memcached's meta mode
//! mapping and CAS rules, written down once.

use super::types::{MetaCmd, SetMode};
use crate::protocol::command::{ArithCommand, Create, DeleteCommand, StoreCommand, StoreMode};

impl MetaCmd<'_> {
    /// ms: a `C` turns set and replace into cas; add ignores it; append/prepend compare it.
    pub fn store_command(&self) -> StoreCommand<'_> {
        let f = &self.flags;
        let mode = match (self.set_mode, f.cas) {
            (SetMode::Set | SetMode::Replace, Some(c)) => StoreMode::Cas(c),
            (SetMode::Set, None) => StoreMode::Set,
            (SetMode::Replace, None) => StoreMode::Replace,
            (SetMode::Add, _) => StoreMode::Add,
            (SetMode::Append, _) => StoreMode::Append,
            (SetMode::Prepend, _) => StoreMode::Prepend,
        };
        StoreCommand {
            mode,
            key: &self.key,
            flags: f.client_flags,
            // No `T` is no expiry, as 0 is.
            exptime: f.ttl.unwrap_or(0),
            data: self.data,
            compare: f.cas,
            allow_stale: f.set_stale && matches!(mode, StoreMode::Cas(_)),
            key_binary: f.key_binary,
            alloc_first: true,
        }
    }

    /// ma: `N` creates a missing counter with `J` (its TTL is applied while the reply is
    /// built, so the counter is created without one).
    pub fn arith_command(&self) -> ArithCommand<'_> {
        let f = &self.flags;
        ArithCommand {
            key: &self.key,
            incr: self.incr,
            delta: f.delta,
            compare: f.cas,
            create: f.vivify.map(|_| Create {
                initial: f.initial,
                exptime: 0,
            }),
        }
    }

    /// md: `C` compares exactly (a mismatch counts as a miss), `I` invalidates instead.
    pub fn delete_command(&self) -> DeleteCommand<'_> {
        let f = &self.flags;
        DeleteCommand {
            key: &self.key,
            compare: f.cas,
            invalidate: f.set_stale.then_some(f.ttl),
            mismatch_is_miss: true,
        }
    }
}
