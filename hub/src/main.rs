use clap::Parser;

// One thread: docs/architecture.md#performance-choices.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = hub::Args::parse();
    match hub::cli::main(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
