fn main() -> std::process::ExitCode {
    pgfleet::commands::main()
}
