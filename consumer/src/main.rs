use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match consumer::run(consumer::Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
