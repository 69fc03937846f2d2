//! The `rzmap-banner` binary.

fn main() {
    std::process::exit(rzmap_banner::cli::main(std::env::args_os()));
}
