//! Issue #3's lookup measure: Postfix's own client (`postmap -q -`) against couchmail's socketmap, an LMDB file
//! and a PostgreSQL table built from the same addresses, with one client and with four at once; plus our own
//! socketmap client for per-lookup latency percentiles, and the server's CPU time per lookup.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Context as RunContext;
use super::postgres::{Cluster, settled_cpu_s};
use super::process::{ChildGuard, cpu_times, output, shown};
use crate::population::Population;

/// The backends compared, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Socketmap,
    Lmdb,
    Pgsql,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Socketmap => "couchmail socketmap",
            Backend::Lmdb => "LMDB file",
            Backend::Pgsql => "PostgreSQL (pgsql:)",
        }
    }
}

/// One run of `clients` concurrent `postmap -q -` processes over every query.
#[derive(Debug, Clone)]
pub struct PostmapRun {
    pub backend: Backend,
    pub clients: usize,
    pub lookups: usize,
    pub wall_s: f64,
    /// CPU seconds of the postmap processes.
    pub client_cpu_s: f64,
    /// CPU seconds of the server (couchmail, or every PostgreSQL process); `None` for LMDB, which has none.
    pub server_cpu_s: Option<f64>,
}

impl PostmapRun {
    pub fn lookups_per_s(&self) -> f64 {
        self.lookups as f64 / self.wall_s
    }

    /// Each client asks one key at a time, so its mean time per lookup is its share of the wall time.
    pub fn mean_us_per_client(&self) -> f64 {
        self.wall_s * self.clients as f64 / self.lookups as f64 * 1e6
    }
}

/// Where the client and the server of a run were allowed to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them.
    Free,
    /// Both on core 0.
    SameCore,
    /// The server on core 0, the client on core 1.
    ApartCores,
}

/// One run of our own socketmap client.
#[derive(Debug, Clone)]
pub struct OwnClientRun {
    pub clients: usize,
    pub placement: Placement,
    pub result: Value,
    pub server_cpu_s: f64,
}

#[derive(Debug, Clone, Default)]
pub struct LookupResults {
    pub n_addresses: usize,
    pub n_queries: usize,
    pub n_present: usize,
    pub lmdb_build_s: f64,
    pub lmdb_bytes: u64,
    pub pgsql_load_s: f64,
    pub postmap: Vec<PostmapRun>,
    pub own_client: Vec<OwnClientRun>,
    pub commands: Vec<String>,
}

/// The keys of every map, and the queries split for the clients.
struct Files {
    queries: PathBuf,
    /// `shards[n_clients]` holds that many files, round-robin over the queries.
    shards: Vec<Vec<PathBuf>>,
    warm_up: PathBuf,
}

pub fn run(context: &RunContext, n_addresses: usize, n_queries: usize) -> Result<LookupResults> {
    let population = Population::new(n_addresses);
    let mut results = LookupResults {
        n_addresses,
        n_queries,
        n_present: Population::n_present(n_queries),
        ..LookupResults::default()
    };
    let files = write_queries(&context.scratch, &population, n_queries)?;

    // Postfix's configuration for postmap: nothing but the compatibility level, so that no warning is printed.
    let postfix_dir = context.scratch.join("postfix");
    std::fs::create_dir_all(&postfix_dir).context("make the postfix directory")?;
    std::fs::write(postfix_dir.join("main.cf"), "compatibility_level = 3.6\n").context("write main.cf")?;

    // The LMDB map: the same keys, each mapped to itself as the socketmap answers.
    let lmdb_source = context.scratch.join("mailboxes");
    write_table(&lmdb_source, &population)?;
    let mut command = Command::new("postmap");
    command.arg("-c").arg(&postfix_dir).arg(format!("lmdb:{}", lmdb_source.display()));
    results.commands.push(shown(&command));
    let started = Instant::now();
    output(&mut command)?;
    results.lmdb_build_s = started.elapsed().as_secs_f64();
    results.lmdb_bytes = std::fs::metadata(lmdb_source.with_extension("lmdb")).map(|meta| meta.len()).unwrap_or(0);

    // The pgsql map: a private cluster with one table.
    let cluster = Cluster::start(&context.scratch)?;
    let tsv = cluster.socket_dir().join("mailboxes.tsv");
    write_table(&tsv, &population)?;
    results.pgsql_load_s = cluster.load_mailboxes(&tsv)?;
    let pgsql_cf = context.scratch.join("pgsql-mailboxes.cf");
    std::fs::write(
        &pgsql_cf,
        format!(
            "hosts = unix:{}\nuser = postgres\ndbname = postgres\nquery = SELECT value FROM mailboxes WHERE address = '%s'\n",
            cluster.socket_dir().display()
        ),
    )
    .context("write the pgsql map")?;

    let map_of = |backend: Backend| -> String {
        match backend {
            Backend::Socketmap => format!("socketmap:unix:{}:mailboxes", context.socketmap.display()),
            Backend::Lmdb => format!("lmdb:{}", lmdb_source.display()),
            Backend::Pgsql => format!("pgsql:{}", pgsql_cf.display()),
        }
    };
    let backends = [Backend::Socketmap, Backend::Lmdb, Backend::Pgsql];
    for backend in backends {
        // A few thousand lookups first, unmeasured, so that every backend starts with warm caches.
        postmap_clients(&postfix_dir, &map_of(backend), std::slice::from_ref(&files.warm_up), &context.scratch)?;
        let mut command = Command::new("postmap");
        command.arg("-c").arg(&postfix_dir).args(["-q", "-", &map_of(backend)]);
        results.commands.push(format!("{} < QUERIES", shown(&command)));
    }
    // The backends take turns at each number of clients, so that load that comes and goes on a shared machine
    // weighs on all of them alike.
    for n_clients in [1, 4] {
        for backend in backends {
            let map = map_of(backend);
            let server_cpu_before = server_cpu_s(backend, context.serve_pid, &cluster)?;
            let client_cpu_before = cpu_times("self")?.children_s;
            let started = Instant::now();
            let found = postmap_clients(&postfix_dir, &map, &files.shards[n_clients], &context.scratch)?;
            let wall_s = started.elapsed().as_secs_f64();
            let client_cpu_s = cpu_times("self")?.children_s - client_cpu_before;
            let server_cpu_after = server_cpu_s(backend, context.serve_pid, &cluster)?;
            if found != results.n_present {
                bail!("{} found {found} keys of {n_queries}, expected {}", backend.name(), results.n_present);
            }
            eprintln!("bench: postmap {} × {n_clients}: {:.0} lookups/s", backend.name(), n_queries as f64 / wall_s);
            results.postmap.push(PostmapRun {
                backend,
                clients: n_clients,
                lookups: n_queries,
                wall_s,
                client_cpu_s,
                server_cpu_s: server_cpu_after.zip(server_cpu_before).map(|(after, before)| after - before),
            });
        }
    }
    // The report lists each backend's rows together.
    results.postmap.sort_by_key(|run| backends.iter().position(|backend| *backend == run.backend));
    drop(cluster);

    // A single client waits for the server and the server for the client, so where the scheduler puts the two
    // matters: the last two runs pin them to one core, then to two different cores (`taskset`).
    let n_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut plan = vec![(1, Placement::Free), (4, Placement::Free), (1, Placement::SameCore)];
    if n_cores >= 2 {
        plan.push((1, Placement::ApartCores));
    }
    for (n_clients, placement) in plan {
        let client_core = match placement {
            Placement::Free => None,
            Placement::SameCore => Some("0"),
            Placement::ApartCores => Some("1"),
        };
        let mut command = match client_core {
            Some(core) => {
                output(Command::new("taskset").args(["-a", "-p", "-c", "0", &context.serve_pid.to_string()]))?;
                let mut command = Command::new("taskset");
                command.args(["-c", core]).arg(&context.bench_exe);
                command
            }
            None => Command::new(&context.bench_exe),
        };
        command
            .arg("socketmap-client")
            .arg("--socket")
            .arg(&context.socketmap)
            .arg("--queries")
            .arg(&files.queries)
            .args(["--clients", &n_clients.to_string()]);
        let server_before = cpu_times(&context.serve_pid.to_string())?.own_s;
        let printed = output(&mut command);
        let server_cpu_s = cpu_times(&context.serve_pid.to_string())?.own_s - server_before;
        if client_core.is_some() {
            let all_cores = format!("0-{}", n_cores - 1);
            output(Command::new("taskset").args(["-a", "-p", "-c", &all_cores, &context.serve_pid.to_string()]))?;
        }
        let printed = printed?;
        let stdout = String::from_utf8_lossy(&printed.stdout);
        let result: Value =
            serde_json::from_str(stdout.trim()).with_context(|| format!("`{}` printed `{stdout}`", shown(&command)))?;
        let found = result["found"].as_u64().unwrap_or(0) as usize;
        if found != results.n_present {
            bail!("our socketmap client found {found} keys of {n_queries}, expected {}", results.n_present);
        }
        eprintln!("bench: socketmap-client × {n_clients} ({placement:?}): {result}");
        if client_core.is_some() {
            results.commands.push(format!("taskset -a -p -c 0 SERVE_PID; {}", shown(&command)));
        } else {
            results.commands.push(shown(&command));
        }
        results.own_client.push(OwnClientRun { clients: n_clients, placement, result, server_cpu_s });
    }
    Ok(results)
}

/// The CPU seconds of `backend`'s server so far.
fn server_cpu_s(backend: Backend, serve_pid: u32, cluster: &Cluster) -> Result<Option<f64>> {
    Ok(match backend {
        Backend::Socketmap => Some(cpu_times(&serve_pid.to_string())?.own_s),
        Backend::Lmdb => None,
        Backend::Pgsql => Some(settled_cpu_s(cluster, Duration::from_secs(5))?),
    })
}

/// Runs one `postmap -q - MAP` per file of `shards` at once, each reading its file; returns how many keys they
/// found (postmap prints a line per key found and nothing for a key not found).
fn postmap_clients(postfix_dir: &Path, map: &str, shards: &[PathBuf], scratch: &Path) -> Result<usize> {
    let mut clients = Vec::with_capacity(shards.len());
    for (shard_idx, shard) in shards.iter().enumerate() {
        let out_path = scratch.join(format!("postmap-{shard_idx}.out"));
        let mut command = Command::new("postmap");
        command
            .arg("-c")
            .arg(postfix_dir)
            .args(["-q", "-", map])
            .stdin(File::open(shard).with_context(|| format!("open {}", shard.display()))?)
            .stdout(File::create(&out_path).with_context(|| format!("create {}", out_path.display()))?)
            .stderr(Stdio::piped());
        let child = command.spawn().with_context(|| format!("cannot start `{}`", shown(&command)))?;
        clients.push((ChildGuard::new(child, shown(&command)), out_path));
    }
    let mut n_found = 0;
    for (mut client, out_path) in clients {
        let (status, stderr) = client.wait_with_stderr()?;
        if !status.success() {
            bail!("`postmap -q - {map}` failed ({status}): {}", stderr.trim());
        }
        let out = File::open(&out_path).with_context(|| format!("open {}", out_path.display()))?;
        n_found += BufReader::new(out).lines().count();
    }
    Ok(n_found)
}

/// Writes every query to one file, the same queries round-robin to one file per client, and a short warm-up.
fn write_queries(scratch: &Path, population: &Population, n_queries: usize) -> Result<Files> {
    let queries = population.queries(n_queries, 0x00c0_c4ba);
    let write_lines = |path: &Path, lines: &mut dyn Iterator<Item = &String>| -> Result<()> {
        let mut file =
            std::io::BufWriter::new(File::create(path).with_context(|| format!("create {}", path.display()))?);
        for line in lines {
            writeln!(file, "{line}")?;
        }
        file.flush().with_context(|| format!("write {}", path.display()))
    };
    let all = scratch.join("queries");
    write_lines(&all, &mut queries.iter())?;
    let mut shards = vec![Vec::new(); 5];
    for n_clients in [1, 4] {
        for client_idx in 0..n_clients {
            let path = scratch.join(format!("queries-{client_idx}-of-{n_clients}"));
            write_lines(&path, &mut queries.iter().skip(client_idx).step_by(n_clients))?;
            shards[n_clients].push(path);
        }
    }
    let warm_up = scratch.join("queries-warm-up");
    write_lines(&warm_up, &mut population.queries(n_queries.min(5000), 0x0077_a12e).iter())?;
    Ok(Files { queries: all, shards, warm_up })
}

/// Writes `address<TAB>address`, one mailbox a line: the source of the LMDB map (postmap's input format) and of
/// the PostgreSQL table (`COPY`'s text format).
fn write_table(path: &Path, population: &Population) -> Result<()> {
    let mut file = std::io::BufWriter::new(File::create(path).with_context(|| format!("create {}", path.display()))?);
    for user_idx in 0..population.n_mailboxes {
        let address = population.address(user_idx);
        writeln!(file, "{address}\t{address}")?;
    }
    file.flush().with_context(|| format!("write {}", path.display()))
}
