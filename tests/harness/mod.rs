//! The one harness of the integration-test crates (tests/{protocol,security,replication,
//! operations}/main.rs include it with `#[path]`): real server processes and the reference
//! memcached ([`server`]), one blocking client ([`client`]), binary frames ([`binary`]),
//! in-process replication nodes and a link proxy ([`nodes`]), and the fake replication peer
//! ([`peer`]). Each crate uses part of it, hence `dead_code` is allowed here.
#![allow(dead_code)]

pub mod binary;
pub mod client;
pub mod flood;
pub mod nodes;
pub mod peer;
pub mod pki;
pub mod server;

pub use client::Client;
pub use nodes::*;
pub use server::*;

use std::time::Duration;

/// How long a server may take to accept a connection, and a reply to arrive.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The `-Y` login: a `set` whose data block is "USER PASSWORD" (the key is ignored).
pub fn ascii_login(user_pass: &str) -> Vec<u8> {
    format!("set k 0 0 {}\r\n{user_pass}\r\n", user_pass.len()).into_bytes()
}

/// Borrows a list of owned arguments (built with `format!`) as the `&[&str]` the launchers take.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
