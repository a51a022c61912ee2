//! The classic consumer-group coordinator (JoinGroup / SyncGroup / Heartbeat / LeaveGroup,
//! OffsetCommit / OffsetFetch, ListGroups / DescribeGroups / DeleteGroups) and the durable
//! committed-offset store.
//!
//! THIS FILE IS THE INTERFACE CONTRACT between the coordinator and the server's dispatcher.
//! The dispatcher decodes a request, calls the matching method with the request's API version,
//! and encodes what it returns. The bodies below are a temporary stand-in that answers
//! COORDINATOR_NOT_AVAILABLE until the real coordinator lands behind the same signatures.

use std::path::PathBuf;

use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};

/// Errors opening or persisting the coordinator's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One committed offset, for metrics (consumer lag) and introspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Where committed offsets are persisted.
    pub dir: PathBuf,
    /// Smallest / largest session timeout a member may ask for (`group.min/max.session.timeout.ms`).
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// Delay before the first rebalance of an empty group completes (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: i32,
}

/// The consumer-group coordinator. Shared behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct GroupCoordinator {
    #[allow(dead_code)]
    config: GroupConfig,
}

const COORDINATOR_NOT_AVAILABLE: i16 = 15;

impl GroupCoordinator {
    /// Opens the offset store under `config.dir` (creating it) and loads committed offsets.
    pub fn open(config: GroupConfig) -> Result<GroupCoordinator, GroupError> {
        Ok(GroupCoordinator { config })
    }

    /// Starts the background task that expires members whose session timed out. Stops when
    /// `shutdown` is cancelled.
    pub fn spawn_expiry(
        self: &std::sync::Arc<Self>,
        _shutdown: tokio_util::sync::CancellationToken,
    ) {
    }

    pub async fn join_group(&self, _version: i16, _req: JoinGroupRequest) -> JoinGroupResponse {
        JoinGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
    }
    pub async fn sync_group(&self, _version: i16, _req: SyncGroupRequest) -> SyncGroupResponse {
        SyncGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
    }
    pub async fn heartbeat(&self, _version: i16, _req: HeartbeatRequest) -> HeartbeatResponse {
        HeartbeatResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
    }
    pub async fn leave_group(&self, _version: i16, _req: LeaveGroupRequest) -> LeaveGroupResponse {
        LeaveGroupResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
    }
    pub async fn offset_commit(
        &self,
        _version: i16,
        _req: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        OffsetCommitResponse::default()
    }
    pub async fn offset_fetch(
        &self,
        _version: i16,
        _req: OffsetFetchRequest,
    ) -> OffsetFetchResponse {
        OffsetFetchResponse::default().with_error_code(COORDINATOR_NOT_AVAILABLE)
    }
    pub async fn list_groups(&self, _version: i16, _req: ListGroupsRequest) -> ListGroupsResponse {
        ListGroupsResponse::default()
    }
    pub async fn describe_groups(
        &self,
        _version: i16,
        _req: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        DescribeGroupsResponse::default()
    }
    pub async fn delete_groups(
        &self,
        _version: i16,
        _req: DeleteGroupsRequest,
    ) -> DeleteGroupsResponse {
        DeleteGroupsResponse::default()
    }

    /// Drops committed offsets of a deleted topic.
    pub fn forget_topic(&self, _topic: &str) {}

    /// Every committed offset (for consumer-lag metrics).
    pub fn committed_offsets(&self) -> Vec<CommittedOffset> {
        Vec::new()
    }

    /// Persists everything (shutdown).
    pub fn flush(&self) -> Result<(), GroupError> {
        Ok(())
    }
}
