fn main() -> std::process::ExitCode {
    unsprawl::cli::main()
}
