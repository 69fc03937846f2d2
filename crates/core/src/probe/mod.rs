//! Probe modules: what each probe carries.
//!
//! (Temporary: the `probes` branch owns this file; the integrator merges the module lists.)

pub mod payload;
pub mod template;
