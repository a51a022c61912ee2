//! Sluice e2e harness: the pod runner's pod-to-process translation and helpers shared by the
//! end-to-end tests in `tests/`.

pub mod harness;
pub mod hosts;
pub mod mq;
pub mod partition;
pub mod podspec;
