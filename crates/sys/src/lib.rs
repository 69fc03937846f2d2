//! rzmap's Linux I/O layer: the only crate with `unsafe`, behind small safe wrappers.
