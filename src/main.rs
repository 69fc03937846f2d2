//! The `rzmap` binary: everything happens in [`rzmap::run`].

fn main() {
    std::process::exit(rzmap::run(std::env::args_os().collect()));
}
