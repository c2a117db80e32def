use clap::Parser;

// One thread: docs/architecture.md#performance-choices.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match consumer::cli::main(consumer::Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
