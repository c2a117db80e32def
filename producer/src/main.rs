use clap::Parser;

// One thread: docs/architecture.md#performance-choices.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match producer::cli::main(producer::Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("producer: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
