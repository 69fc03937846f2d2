//! A simulated Internet built from Linux network namespaces, with exact ground truth.
