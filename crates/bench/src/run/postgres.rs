//! A private PostgreSQL cluster for the `pgsql:` map: made with `initdb` in a scratch directory, run as the
//! `postgres` user, reachable on a unix socket only, stopped (and its directory removed) when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::process::{Cleanup, output, start_daemon, stdout_of};

pub struct Cluster {
    dir: tempfile::TempDir,
    pub postmaster_pid: u32,
    /// How many children the postmaster has while no client is connected (its background processes).
    pub n_idle_children: usize,
    _cleanup: Cleanup,
}

impl Cluster {
    /// Makes and starts a cluster under `work_dir`.
    pub fn start(work_dir: &Path) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("couchmail-bench-pg")
            .tempdir_in(work_dir)
            .with_context(|| format!("make a directory in {}", work_dir.display()))?;
        output(Command::new("chown").arg("postgres:postgres").arg(dir.path()))?;
        let data = dir.path().join("data");
        output(as_postgres("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]))?;
        // No TCP listener at all: the socket in the scratch directory is the only way in.
        let server_options = format!("-c listen_addresses='' -k {}", dir.path().display());
        start_daemon(
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-o", &server_options, "-l"])
                .arg(dir.path().join("log"))
                .args(["-w", "start"]),
            &dir.path().join("pg_ctl.log"),
        )?;
        let cleanup = Cleanup::register({
            let data = data.clone();
            move || {
                let _ = as_postgres("pg_ctl").arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"]).status();
            }
        });
        let pid_file = data.join("postmaster.pid");
        let pid_text = std::fs::read_to_string(&pid_file).with_context(|| format!("read {}", pid_file.display()))?;
        let postmaster_pid: u32 = pid_text
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .with_context(|| format!("{} names no pid", pid_file.display()))?;
        let mut cluster = Cluster { dir, postmaster_pid, n_idle_children: 0, _cleanup: cleanup };
        cluster.psql("SELECT 1")?;
        super::process::wait_for_children(postmaster_pid, 0, Duration::from_millis(300));
        cluster.n_idle_children = super::process::children_of(postmaster_pid).len();
        Ok(cluster)
    }

    /// The directory holding the server's socket, as Postfix's `hosts = unix:<dir>` and libpq's `-h` want it.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs SQL through psql and returns what it printed (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> Result<String> {
        stdout_of(as_postgres("psql").arg("-h").arg(self.socket_dir()).args([
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ]))
    }

    /// Creates table `mailboxes (address, value)` from a tab-separated file readable by `postgres`, with
    /// `address` as its primary key, as a `pgsql:` map of Postfix's would have it; returns the seconds taken.
    pub fn load_mailboxes(&self, tsv: &Path) -> Result<f64> {
        let started = Instant::now();
        self.psql("CREATE TABLE mailboxes (address text PRIMARY KEY, value text NOT NULL)")?;
        self.psql(&format!("COPY mailboxes FROM '{}'", tsv.display()))?;
        self.psql("ANALYZE mailboxes")?;
        Ok(started.elapsed().as_secs_f64())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stopped = output(as_postgres("pg_ctl").arg("-D").arg(self.data_dir()).args(["-m", "fast", "-w", "stop"]));
        if let Err(error) = stopped {
            eprintln!("bench: could not stop PostgreSQL: {error:#}");
        }
    }
}

/// `program` run as the `postgres` user, from a directory that user can enter.
fn as_postgres(program: &str) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--", program]).current_dir("/");
    command
}

/// Waits up to `limit` for the cluster's children to settle back to `n_idle_children`, then returns the CPU
/// seconds of the whole cluster (see [`super::process::tree_cpu_s`]).
pub fn settled_cpu_s(cluster: &Cluster, limit: Duration) -> Result<f64> {
    super::process::wait_for_children(cluster.postmaster_pid, cluster.n_idle_children, limit);
    super::process::tree_cpu_s(cluster.postmaster_pid)
}
