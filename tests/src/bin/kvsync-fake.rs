//! Runs one provider fake (or the fault proxy) on 127.0.0.1 until stdin closes
//! or the process is terminated, printing `Listening: http://127.0.0.1:<port>`.
//!
//! `kvsync-fake <kind> [--port N]` where kind is one of the fakes registered in
//! `kvsync_tests::fake::by_name`, or `kvsync-fake proxy --upstream URL`.
#![expect(
    clippy::print_stdout,
    reason = "the listening address on stdout is how callers find the fake"
)]

use std::io::{BufRead, Write};

use kvsync_tests::fake::{Backend, FakeServer};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(kind) = args.first().cloned() else {
        eprintln!("usage: kvsync-fake <kind> [--port N] | proxy --upstream URL");
        return std::process::ExitCode::from(2);
    };
    let port: u16 = arg("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let backend = if kind == "proxy" {
        match arg("--upstream").map(|u| Backend::proxy(&u)) {
            Some(Ok(b)) => b,
            _ => {
                eprintln!("proxy needs --upstream URL");
                return std::process::ExitCode::from(2);
            }
        }
    } else {
        match kvsync_tests::fake::by_name(&kind) {
            Some(service) => Backend::Fake(service),
            None => {
                eprintln!("unknown fake {kind:?}");
                return std::process::ExitCode::from(2);
            }
        }
    };
    let server = match FakeServer::start(backend, port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("Listening: {}", server.url());
    let _ = std::io::stdout().flush();
    // Run until stdin is closed (the test that started us went away) or we are killed.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(server);
    std::process::ExitCode::SUCCESS
}
