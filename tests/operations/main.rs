//! Operating the binary: the command line and daemon mode, ports and the port file, faults
//! (signals under load, output limits, clients that never read).

#[path = "../harness/mod.rs"]
mod harness;

mod cli;
mod faults;
mod ports;
