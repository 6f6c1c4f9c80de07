//! Shared helpers for the meshcast example programs.
