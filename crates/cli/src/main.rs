fn main() -> std::process::ExitCode {
    pgfleet::cli::main()
}
