//! Differential vectors.
