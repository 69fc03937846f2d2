//! Output modules.
