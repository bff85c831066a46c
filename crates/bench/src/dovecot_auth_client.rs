//! `couchmail-bench dovecot-auth-client`: logins and passdb lookups straight over Dovecot's auth sockets, timed one
//! by one, without starting a process per request as `doveadm` does.
//!
//! Logins speak the auth-client protocol (Dovecot's `auth-client` socket, as imap-login does): `AUTH` with the
//! PLAIN mechanism; Dovecot looks the user up and verifies the password.
//! Lookups speak the auth-master protocol (the `auth-userdb` socket, as `doveadm auth lookup` does): `PASS`, a
//! passdb lookup without verification.
//! Each of `--clients` connections sends one request at a time and waits for its answer; users are
//! `Population::address(first..first + count)`, each asked once, so that the auth cache never answers.
//! Protocols: Dovecot 2.3's "Authentication Protocol" (auth-client) and "Master Protocol" (auth-master) documents.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::json;

use crate::population::{PASSWORD, Population};
use crate::socketmap_client::percentile_us;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// AUTH PLAIN over the auth-client socket: lookup and password verification.
    Login,
    /// PASS over the auth-userdb socket: the passdb lookup alone.
    Lookup,
}

#[derive(Debug, clap::Args)]
pub struct Options {
    /// The socket: Dovecot's `auth-client` for logins, `auth-userdb` for lookups.
    #[arg(long)]
    socket: PathBuf,
    #[arg(long, value_enum)]
    mode: Mode,
    /// How many mailboxes the population has (it decides the addresses).
    #[arg(long)]
    mailboxes: usize,
    /// The first user asked.
    #[arg(long)]
    first: usize,
    /// How many requests, all clients together.
    #[arg(long)]
    count: usize,
    /// How many connections ask at once.
    #[arg(long, default_value_t = 1)]
    clients: usize,
}

pub fn main(options: &Options) -> Result<()> {
    let population = Population::new(options.mailboxes);
    if options.first + options.count > population.n_mailboxes {
        bail!(
            "users {}..{} are past the population's {}",
            options.first,
            options.first + options.count,
            population.n_mailboxes
        );
    }
    let next_user = AtomicUsize::new(options.first);
    let end = options.first + options.count;
    let n_clients = options.clients.max(1);
    // Connect (and finish each handshake) before the clock starts.
    let connections =
        (0..n_clients).map(|connection_idx| Connection::open(options, connection_idx)).collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let latencies = std::thread::scope(|scope| -> Result<Vec<Duration>> {
        let workers: Vec<_> = connections
            .into_iter()
            .map(|mut connection| {
                let next_user = &next_user;
                scope.spawn(move || -> Result<Vec<Duration>> {
                    let mut latencies = Vec::new();
                    loop {
                        let user_idx = next_user.fetch_add(1, Ordering::SeqCst);
                        if user_idx >= end {
                            return Ok(latencies);
                        }
                        let user = population.address(user_idx);
                        let asked = Instant::now();
                        connection.ask(&user)?;
                        latencies.push(asked.elapsed());
                    }
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for worker in workers {
            latencies.extend(worker.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??);
        }
        Ok(latencies)
    })?;
    let wall = started.elapsed();
    let mut latencies = latencies;
    latencies.sort_unstable();
    println!(
        "{}",
        json!({
            "mode": format!("{:?}", options.mode).to_lowercase(),
            "clients": n_clients,
            "requests": latencies.len(),
            "wall_s": wall.as_secs_f64(),
            "per_s": latencies.len() as f64 / wall.as_secs_f64(),
            "p50_us": percentile_us(&latencies, 0.50),
            "p99_us": percentile_us(&latencies, 0.99),
            "max_us": percentile_us(&latencies, 1.0),
        })
    );
    Ok(())
}

/// One connection to an auth socket, past its handshake.
struct Connection {
    mode: Mode,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    request_id: u64,
    line: String,
}

impl Connection {
    fn open(options: &Options, connection_idx: usize) -> Result<Connection> {
        let stream =
            UnixStream::connect(&options.socket).with_context(|| format!("connect to {}", options.socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).context("set a read timeout")?;
        let writer = stream.try_clone().context("clone the auth socket")?;
        let mut connection = Connection {
            mode: options.mode,
            writer,
            reader: BufReader::new(stream),
            request_id: 0,
            line: String::new(),
        };
        match options.mode {
            Mode::Login => {
                // A distinct client pid per connection, as each login process has its own.
                let client_pid = std::process::id().wrapping_mul(64).wrapping_add(connection_idx as u32);
                write!(connection.writer, "VERSION\t1\t2\nCPID\t{client_pid}\n").context("send the handshake")?;
                // The server lists its mechanisms and ends its handshake with DONE.
                while connection.read_line()? != "DONE" {}
            }
            Mode::Lookup => {
                writeln!(connection.writer, "VERSION\t1\t0").context("send the handshake")?;
            }
        }
        Ok(connection)
    }

    fn read_line(&mut self) -> Result<&str> {
        self.line.clear();
        let n_read = self.reader.read_line(&mut self.line).context("read from the auth socket")?;
        if n_read == 0 {
            bail!("Dovecot closed the auth connection");
        }
        Ok(self.line.trim_end_matches('\n'))
    }

    /// Sends one request for `user` and waits for its answer; anything but success is an error.
    fn ask(&mut self, user: &str) -> Result<()> {
        self.request_id += 1;
        let request_id = self.request_id;
        match self.mode {
            Mode::Login => {
                let response = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{PASSWORD}"));
                writeln!(self.writer, "AUTH\t{request_id}\tPLAIN\tservice=imap\tno-penalty\tresp={response}")
                    .context("send AUTH")?;
            }
            Mode::Lookup => {
                writeln!(self.writer, "PASS\t{request_id}\t{user}\tservice=doveadm").context("send PASS")?;
            }
        }
        let (success, answers): (&str, &[&str]) = match self.mode {
            Mode::Login => ("OK", &["OK", "FAIL", "CONT"]),
            Mode::Lookup => ("PASS", &["PASS", "NOTFOUND", "FAIL"]),
        };
        let request_id = request_id.to_string();
        loop {
            let line = self.read_line()?.to_owned();
            let mut fields = line.split('\t');
            let (Some(status), Some(answered_id)) = (fields.next(), fields.next()) else { continue };
            // The auth-master handshake (VERSION, SPID) arrives before the first answer.
            if !answers.contains(&status) || answered_id != request_id {
                continue;
            }
            if status == success {
                return Ok(());
            }
            bail!("{user}: Dovecot answered `{line}`");
        }
    }
}
