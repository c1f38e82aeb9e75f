//! Request executors: synchronous, against the store, appending memcached's exact replies to
//! a connection's reply buffer. `apply` runs the typed item commands (store, fetch, delete,
//! arith) for every protocol and counts them; `text` runs the text commands and dispatches
//! meta requests to `meta`, `stats` to `stats_cmd`, the key dumps to `dump` and the operator's
//! `lru_crawler` and `slabs` commands to `admin`; `binary` runs the binary protocol and reads
//! `stats_cmd` for its `stat` command. `text`, `meta` and `binary` lower their requests, call
//! `apply` and encode its outcome; none of them imports another.

pub mod admin;
pub mod apply;
pub mod binary;
pub mod dump;
pub mod meta;
pub mod stats_cmd;
pub mod text;
