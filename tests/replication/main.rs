//! Replication: in-process nodes (the library's Store and Replicator over loopback), randomized
//! merge histories, and real processes (pairs, meshes, convergence across cuts and full resyncs,
//! arithmetic, the failover barrier, clock skew, delayed flush, SIGHUP reload, start-up next to
//! broken peers, binary writes); the hand-run measurements are in `bench` (ignored).

#[path = "../harness/mod.rs"]
mod harness;

mod arith;
mod barrier;
mod bench;
mod binary;
mod clock;
mod convergence;
mod flush;
mod in_process;
mod merge;
mod processes;
mod reload;
mod startup;
