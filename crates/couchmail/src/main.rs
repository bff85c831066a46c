//! The `couchmail` binary: parse the command line, load the configuration,
//! run the command, and map what went wrong to a documented exit code.
//!
//! Only this crate reads argv and the environment (ARCHITECTURE.md
//! invariant); everything below it is handed plain values.
//! Errors are printed as `error: …` and a `hint: …` line with the next step;
//! the exit codes are listed in `couchmail --help` and docs/cli.md, and
//! decided in one place, [`exit::classify`].

mod cli;
mod cmd;
mod config;
mod exit;
mod output;
mod render;
mod sieve_check;
mod store;
mod transfer;
mod up;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::cli::{Cli, Command};
use crate::config::{Config, LogFormat, Overrides, Sources};
use crate::exit::{Exit, Failure};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(Exit::Usage as u8));
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(&err),
    }
}

/// Prints `err` with its hint and answers its exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    let (exit, hint) = exit::classify(err);
    if exit == Exit::Ok {
        return ExitCode::SUCCESS;
    }
    tracing::debug!(error = ?err, "command failed");
    eprintln!("error: {err:#}");
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
    exit.into()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env = config::process_env();
    let (dev, flags) = match &cli.command {
        Command::Up(args) => (
            args.dev,
            Overrides {
                store: cli.store.clone(),
                listen: args.listen.clone(),
                data_dir: args.data_dir.clone(),
                no_daemons: args.no_daemons,
            },
        ),
        Command::Render(args) => (args.dev, Overrides { store: cli.store.clone(), ..Overrides::default() }),
        _ => (false, Overrides { store: cli.store.clone(), ..Overrides::default() }),
    };
    let config = config::read_config_file(cli.config.as_deref(), &env)
        .and_then(|file| Config::load(Sources { file, env, flags, dev }))
        .map_err(|err| {
            Failure::new(Exit::Usage, format!("{err:#}"))
                .hint("correct the configuration (docs/config.md lists every key) and run the command again")
        })?;
    let is_up = matches!(cli.command, Command::Up(_));
    init_logging(&config, if is_up { LevelFilter::INFO } else { LevelFilter::WARN });
    tracing::debug!(?config, "configuration loaded");

    if is_up {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return runtime.block_on(up::run(config, cli.json));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if let Command::Render(args) = &cli.command {
        return runtime.block_on(render::run(&config, &args.out, cli.json));
    }
    if let Command::Migrate(args) = cli.command {
        return runtime.block_on(cmd::migrate::run(args, &config, cli.json));
    }
    runtime.block_on(async {
        let directory = cmd::open_directory(&config).await?;
        let context = cmd::Context { directory, json: cli.json, config };
        cmd::run(cli.command, &context).await
    })
}

/// Logs to stderr: `RUST_LOG` when set, else the configured level, else
/// `default`.
fn init_logging(config: &Config, default: LevelFilter) {
    let level = config.log.level.unwrap_or(default);
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => {
            EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::default().add_directive(level.into()))
        }
        _ => EnvFilter::default().add_directive(level.into()),
    };
    // Colours only for a person at a terminal, not in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let installed = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(err) = installed {
        eprintln!("warning: cannot set up logging: {err}");
    }
}
