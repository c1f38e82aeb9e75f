//! repcached: a memcached-compatible cache server whose nodes replicate every write to each other.
//!
//! The library owns everything; `main.rs` only parses the command line and calls [`server::run`].

pub mod config;
pub mod numbers;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod store;
