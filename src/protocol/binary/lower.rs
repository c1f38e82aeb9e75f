//! Binary requests lowered to the typed commands (`protocol::command`): the header CAS rules
//! and the counter creation rule of memcached's `proto_bin.c`, written down once.

use crate::protocol::command::{ArithCommand, Create, DeleteCommand, StoreCommand, StoreMode};

/// set/add/replace: a non-zero header CAS makes any of them a compare-and-swap (memcached
/// switches to `NREAD_CAS` whatever the opcode).
pub fn store<'a>(
    cas: u64,
    mode: StoreMode,
    key: &'a [u8],
    flags: u32,
    exptime: u32,
    value: &'a [u8],
) -> StoreCommand<'a> {
    let mode = if cas == 0 { mode } else { StoreMode::Cas(cas) };
    StoreCommand::new(mode, key, flags, i64::from(exptime), value)
}

/// append/prepend: a non-zero header CAS must match.
pub fn concat<'a>(cas: u64, append: bool, key: &'a [u8], value: &'a [u8]) -> StoreCommand<'a> {
    let mode = if append {
        StoreMode::Append
    } else {
        StoreMode::Prepend
    };
    StoreCommand {
        compare: (cas != 0).then_some(cas),
        ..StoreCommand::new(mode, key, 0, 0, value)
    }
}

/// increment/decrement: a miss creates the counter with `initial` (`None`: the expiration was
/// 0xffffffff, memcached's "don't create"); a non-zero header CAS must match.
pub fn counter(
    cas: u64,
    incr: bool,
    key: &[u8],
    delta: u64,
    initial: Option<u64>,
    exptime: u32,
) -> ArithCommand<'_> {
    ArithCommand {
        compare: (cas != 0).then_some(cas),
        create: initial.map(|initial| Create {
            initial,
            exptime: i64::from(exptime),
        }),
        ..ArithCommand::new(key, incr, delta)
    }
}

/// delete: a non-zero header CAS must match (a mismatch is not counted as a miss).
pub fn delete(cas: u64, key: &[u8]) -> DeleteCommand<'_> {
    DeleteCommand {
        compare: (cas != 0).then_some(cas),
        ..DeleteCommand::new(key)
    }
}
