//! rzmap-banner: connects to the hosts a scan found and records their first response.
//!
//! The counterpart of ZMap's `banner-grab-tcp`. Addresses come from stdin (bare, rzmap csv or
//! rzmap json lines), one record per host goes to the output.
#![forbid(unsafe_code)]

pub mod cli;
pub mod grab;
pub mod input;
pub mod limits;
pub mod output;
pub mod queue;
pub mod reader;
