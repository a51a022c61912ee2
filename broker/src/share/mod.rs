//! Share groups (KIP-932): members that share partitions, each record acquired by one member
//! under a time lock and acknowledged on its own.
//!
//! - [`partition`]: one share partition's delivery state machine (pure, unit-tested).
//! - [`coordinator`]: [`ShareCoordinator`]: the groups, their members and assignments, the
//!   share sessions of ShareFetch / ShareAcknowledge, and the share partitions; no I/O.
//!
//! The Kafka handlers (`handlers::share`) read the log and the cluster metadata and call in
//! here; dead-lettering and persistence are done by them from what the coordinator reports.
//!
//! May import: nothing of the broker but `uuid`-keyed plain data.

pub mod coordinator;
pub mod partition;

pub use coordinator::{
    AssignedTopic, DeadLetter, GroupSummary, HeartbeatReply, MemberSummary, SessionView,
    ShareConfigs, ShareCoordinator, ShareSettings,
};
pub use partition::{Acquired, ArchiveReason, Limits, SharePartition};

/// Kafka error codes the share APIs answer with.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const INVALID_REQUEST: i16 = 42;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const GROUP_NOT_EMPTY: i16 = 68;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const INVALID_RECORD_STATE: i16 = 121;
    pub const SHARE_SESSION_NOT_FOUND: i16 = 122;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
}
