//! The rzmap application: command line, config files, resolution into a scan configuration,
//! and the wiring of the core and the I/O layer. `main.rs` is a thin wrapper around [`run`].

pub mod rst_guard;
