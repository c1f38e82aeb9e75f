//! Authentication and attacks, against the real binary: ascii authentication (-Y), the guards
//! around logins and replication secrets, client TLS (-Z), attacks on the replication port and a
//! listen-only node's lockout under a flood.

#[path = "../harness/mod.rs"]
mod harness;

mod ascii_auth;
mod auth_guard;
mod client_tls;
mod repl_attacks;
mod repl_lockout;
