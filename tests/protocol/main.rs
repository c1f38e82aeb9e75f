//! The protocol and the server's answers to it, against the real binary: the text protocol table
//! (also run against memcached), memcached's recorded binary replies, server behaviour (limits,
//! UDP, shutdown, idle timeout, stats), operator commands, and the memory limit.

#[path = "../harness/mod.rs"]
mod harness;

mod binary_reference;
mod memlimit;
mod operator_commands;
mod server_behaviour;
mod text;
