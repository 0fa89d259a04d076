//! `kvsync-replay FIXTURE.json...`: replays parity fixtures through the Rust
//! host's runtime and prints one line per step (see `kvsync_tests::parity`).
#![expect(
    clippy::print_stdout,
    reason = "the replay's output is what the parity test compares"
)]

use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: kvsync-replay FIXTURE.json...");
        return std::process::ExitCode::from(2);
    }
    match kvsync_tests::parity::replay_files(&files).await {
        Ok(out) => {
            print!("{out}");
            let _ = std::io::stdout().flush();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kvsync-replay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
