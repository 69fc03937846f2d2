//! rzmap's deterministic core.
//!
//! Everything here decides *what* to send and *what a reply means*. It performs no system
//! calls (beyond reading user-named files) and contains no `unsafe`: the Linux I/O layer
//! lives in `rzmap-sys`. Each module holds one concept; see ARCHITECTURE.md for the data flow.
#![forbid(unsafe_code)]

pub mod addr;
pub mod aesrand;
pub mod cyclic;
pub mod dedup;
pub mod engine;
pub mod error;
pub mod fields;
pub mod filter;
pub mod handshake;
pub mod iter;
pub mod link;
pub mod monitor;
pub mod output;
pub mod probe;
pub mod rate;
pub mod target;
pub mod validate;
