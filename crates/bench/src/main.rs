//! `couchmail-bench`: the programs `cargo xtask bench` drives, and the driver itself.
//!
//! Performance is measured here, never asserted in tests.
//! The driver (`couchmail-bench all`) runs every benchmark of issues #2 to #5 beside its alternative in one run and
//! writes docs/benchmarks.md; the other subcommands are the processes it starts, kept separate so that each one's
//! memory and CPU time can be read from /proc on its own:
//!
//! - `serve`: a couchmail over a synthetic index, serving the socketmap (through `couchmail_lookup::Maps`) and
//!   Dovecot's auth endpoint (through `couchmail_lookup::Accounts`), as `couchmail up` wires them.
//! - `socketmap-client`: our own socketmap client, which times every lookup (Postfix's `postmap` cannot: it
//!   buffers its output until it exits).
//! - `dovecot-auth-client`: logins and passdb lookups straight over Dovecot's auth sockets, timed one by one,
//!   without a `doveadm` process per request.
//! - `follow`: the index follower and socketmap server of `couchmail up` over a real store (SQLite or CouchDB),
//!   timing the start-up build (issue #4).
//! - `write-latency`: creates mailboxes one at a time through a store and times each until that socketmap answers
//!   it (issue #4).
//! - `policy-serve` and `policy-client`: couchmail's Postfix policy service over a greylisting state full of passed
//!   triplets, and a load generator speaking the policy protocol to it (issue #5).
//!
//! The driver needs root (it runs PostgreSQL as `postgres` and a private Dovecot), the Debian packages
//! postfix, postfix-lmdb, postfix-pgsql, postgresql, dovecot-core and dovecot-auth-lua, and pouchdb-server (the
//! stand-in for CouchDB that `cargo xtask packages` installs).

mod dovecot_auth_client;
mod follow;
mod policy;
mod population;
mod run;
mod serve;
mod socketmap_client;
mod store;
mod write_latency;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "couchmail-bench", about = "CouchMail's benchmarks (run them with `cargo xtask bench`)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every benchmark and writes the report.
    All(run::Options),
    /// Serves the socketmap and the Dovecot auth endpoint from a synthetic index until stdin closes.
    Serve(serve::Options),
    /// Looks a file of keys up over the socketmap and prints throughput and latency percentiles as JSON.
    SocketmapClient(socketmap_client::Options),
    /// Logs in or looks users up over Dovecot's auth sockets and prints throughput and percentiles as JSON.
    DovecotAuthClient(dovecot_auth_client::Options),
    /// Follows a store's changes feed into an index, as `couchmail up` does, and serves the socketmap from it
    /// until stdin closes; prints the start-up build's figures as JSON once the index is ready.
    Follow(follow::Options),
    /// Creates mailboxes one at a time through a store and times each until the socketmap answers it; prints
    /// percentiles as JSON.
    WriteLatency(write_latency::Options),
    /// Serves couchmail's Postfix policy over an index and a greylisting state full of passed triplets until
    /// stdin closes (issue #5).
    PolicyServe(policy::ServeOptions),
    /// Asks the policy service for passed triplets over one or more connections and prints decisions per second
    /// and percentiles as JSON.
    PolicyClient(policy::ClientOptions),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::All(options) => run::all(&options),
        Command::Serve(options) => serve::main(&options),
        Command::SocketmapClient(options) => socketmap_client::main(&options),
        Command::DovecotAuthClient(options) => dovecot_auth_client::main(&options),
        Command::Follow(options) => follow::main(&options),
        Command::WriteLatency(options) => write_latency::main(&options),
        Command::PolicyServe(options) => policy::serve_main(&options),
        Command::PolicyClient(options) => policy::client_main(&options),
    }
}

/// Where the driver keeps its scratch files by default: memory, so that the disk is not what is measured.
fn default_work_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() { shm } else { std::env::temp_dir() }
}
