//! The typed stats snapshot: each `stats` group as an ordered list of [`Stat`]s (a name and a
//! typed value), built once from the code that owns the values (the server's counters, the
//! store, run-time settings, TLS, replication). The text `stats` command, the binary `stat`
//! command and the Prometheus endpoint all render these lists, so they cannot disagree, and
//! nothing reads a stats text back.
//!
//! `snapshot` holds the types; each group has its builder (`general`, `settings`, `items` with
//! `slabs` and `sizes`, `conns`, `replication`). The order of a list is the order memcached
//! prints its fields in, and [`Stat::write_text`] is memcached's `STAT name value\r\n` line,
//! byte for byte.

mod conns;
mod general;
mod items;
mod replication;
mod settings;
mod snapshot;

pub use conns::conns;
pub use general::general;
pub use items::{items, sizes, slabs};
pub use replication::replication;
pub use settings::settings;
pub use snapshot::{Name, Snapshot, Stat, Value};
