//! The main job: `cargo run --release` runs the whole method-vs-message comparison on this machine.
//! Like a tiny IoT Edge runtime it reads deployment.template.json, starts the local hub with its routes and
//! the producer and consumer as separate processes (real sockets, real TLS) with the identities and
//! `env` the manifest gives them, streams the consumer's tables, and stops all three cleanly.
//! The same binary is each of those processes (`method-vs-message hub|producer|consumer`).
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use local_run::{run, RunArgs};
use std::process::ExitCode;

mod compare;
mod local_run;
mod manifest;

#[derive(Debug, Parser)]
#[command(
    name = "method-vs-message",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the whole comparison locally (the default).
    Run(RunArgs),
    /// Run only the local edgeHub stand-in.
    Hub(Box<hub::Args>), // boxed: by far the largest variant (clippy::large_enum_variant)
    /// Run only the producer module.
    Producer(producer::Args),
    /// Run only the consumer module.
    Consumer(consumer::Args),
    /// Write a deployable deployment.json (real images, registry credentials) from
    /// deployment.template.json, for `az iot edge set-modules` or the portal.
    Manifest(manifest::ManifestArgs),
    /// Compare two runs' JSON output: is B slower or faster than A (docs/compare.md)?
    Compare(compare::CompareArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread per process, as for the standalone binaries (docs/architecture.md#performance-choices).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (name, result) = runtime.block_on(async {
        match cli.command {
            Some(Cmd::Hub(args)) => ("hub", hub::cli::main(*args).await),
            Some(Cmd::Producer(args)) => ("producer", producer::cli::main(args).await),
            Some(Cmd::Consumer(args)) => ("consumer", consumer::cli::main(args).await),
            Some(Cmd::Run(args)) => ("run", run(args).await),
            // Reads one file and writes another: nothing else runs on this runtime meanwhile.
            Some(Cmd::Manifest(args)) => ("manifest", manifest::run(&args)),
            Some(Cmd::Compare(args)) => ("compare", compare::run(&args)),
            None => ("run", run(cli.run).await),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<compare::Regression>() => ExitCode::from(compare::REGRESSION_EXIT),
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
