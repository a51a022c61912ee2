//! Sluice e2e harness.
