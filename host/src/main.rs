fn main() -> std::process::ExitCode {
    kvsync::cli::main()
}
