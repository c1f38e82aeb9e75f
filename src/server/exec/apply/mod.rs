//! The one executor of the typed commands (`protocol::command`): each command's store call,
//! the unlink after a failed write, and every counter it moves (cmd_set, cas_*, get_*, touch_*,
//! delete_*, incr_*/decr_*, store_too_large, store_no_memory) live here, once, for the text,
//! meta and binary protocols. The protocol executors (`exec::text`, `exec::meta`,
//! `exec::binary`) lower their requests, call these functions and encode the typed outcome.
//!
//! Each function works on an [`Entry`] the caller locked (`Store::entry`), so a protocol that
//! builds its reply from the item (a get hit, meta's reply flags) does it under the same lock.
//! One file per command family: `store`, `fetch` (get, gat, touch), `delete`, `arith`.

pub mod arith;
pub mod delete;
pub mod fetch;
pub mod store;

#[cfg(test)]
mod tests;
