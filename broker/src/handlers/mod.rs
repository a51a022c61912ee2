//! The Kafka API handlers: one module per group of APIs, each decode → act on the log, the
//! group coordinator or the quorum → encode. No socket I/O here: [`dispatch`] takes one request
//! frame and returns the response frame (or a future of it), which the connection task writes
//! in request order.
//!
//! Files: the data path ([`produce`], [`fetch`], [`log_offsets`]); the cluster and its topics
//! ([`metadata`], [`topics`], [`configs`], [`reassign`], [`operational`], [`quorum`]); group
//! requests go to `group::GroupCoordinator` (which answers NOT_COORDINATOR for groups it does
//! not coordinate), once `__consumer_offsets` exists; share groups ([`share`]: heartbeat, fetch,
//! acknowledge; [`share_admin`]: describe, list, delete, offsets, dead letters; [`share_store`]:
//! their state in `__share_group_state`); [`api_versions`]; the APIs answered with an error
//! ([`unserved`]); the handlers' view of the cluster metadata and its validated changes
//! ([`catalog`]); Kafka's error codes ([`codes`]).
//!
//! May import: `protocol`, `context`, `topology`, `cluster`, `log`, `group`, `share`, `error`. Never
//! `server`, which calls [`dispatch`].

pub mod api_versions;
pub mod catalog;
pub mod codes;
pub mod configs;
pub mod fetch;
pub mod log_offsets;
pub mod metadata;
pub mod operational;
pub mod produce;
pub mod quorum;
pub mod reassign;
pub mod share;
pub mod share_admin;
pub mod share_store;
pub mod topics;
pub mod unserved;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use crate::context::BrokerContext;
use crate::error::BrokerError;
use crate::group::ClientInfo;
use crate::log::LogManager;
use crate::protocol::codec::{self, api_name, respond, RawHeader};
use crate::protocol::versions;

/// What handling one request produced.
pub enum Reply {
    /// The response frame (`None`: the request gets no response, e.g. Produce with acks=0).
    Now(Option<Bytes>),
    /// The response needs waiting (fsync, long poll, rebalance). The side effects that must
    /// happen in request order (appends) have already happened.
    Later(BoxFuture<'static, Result<Option<Bytes>, BrokerError>>),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Now(b) => write!(f, "Now({:?} bytes)", b.as_ref().map(|b| b.len())),
            Reply::Later(_) => write!(f, "Later"),
        }
    }
}

/// A [`Reply::Later`] from an async block that yields a response body.
fn later<R, F>(raw: RawHeader, fut: F) -> Reply
where
    R: Encodable + HeaderVersion + Send + 'static,
    F: std::future::Future<Output = R> + Send + 'static,
{
    Reply::Later(async move { respond(raw, &fut.await).map(Some) }.boxed())
}

/// Runs blocking storage work (metadata files, fsync) off the async workers.
pub async fn blocking<T, F>(ctx: &Arc<BrokerContext>, f: F) -> T
where
    F: FnOnce(&LogManager) -> T + Send + 'static,
    T: Send + 'static,
{
    let logs = Arc::clone(&ctx.logs);
    match tokio::task::spawn_blocking(move || f(&logs)).await {
        Ok(t) => t,
        // The closure panicked: a bug; propagate it rather than invent a result.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A request frame after the steps that come before its handler ([`route`]).
#[derive(Debug)]
pub enum Routed {
    /// Answered without a handler: ApiVersions, Produce v0–v2, the APIs answered with an error.
    Answered(Bytes),
    /// For the handler of `key`: the decoded request header, and the body still to decode
    /// (each handler's arm decodes it through the pre-decode guard).
    Serve { header: RequestHeader, body: Bytes },
}

/// The API key of a peeked header, or the error that closes the connection.
pub fn api_key(peer: SocketAddr, raw: RawHeader) -> Result<ApiKey, BrokerError> {
    ApiKey::try_from(raw.api_key).map_err(|()| BrokerError::UnknownApiKey {
        peer,
        api_key: raw.api_key,
        api_version: raw.api_version,
    })
}

/// Everything [`dispatch`] does with a frame before a handler runs, none of which needs broker
/// state: the APIs answered without a handler, the version check and the header decode. Kept
/// apart so the fuzz targets (`crate::fuzzing`) run exactly this path.
pub fn route(
    peer: SocketAddr,
    key: ApiKey,
    raw: RawHeader,
    frame: Bytes,
) -> Result<Routed, BrokerError> {
    let mut body = frame;
    if key == ApiKey::ApiVersions {
        return api_versions::reply(peer, raw, &mut body).map(Routed::Answered);
    }
    if key == ApiKey::Produce && (0..versions::PRODUCE_MIN_SERVED).contains(&raw.api_version) {
        codec::decode_header(peer, key, raw, &mut body)?;
        return produce::reject_old_version(peer, raw, body).map(Routed::Answered);
    }
    // ACL requests are advertised (as Kafka without an authorizer does, so tools report
    // "security is disabled" instead of "not supported") and answered SECURITY_DISABLED.
    if versions::advertised(key).is_none() || versions::ACL_APIS.contains(&key) {
        if let Some(reply) = unserved::answer(peer, key, raw, &mut body)? {
            return Ok(Routed::Answered(reply));
        }
    }
    if !versions::is_served(key, raw.api_version) {
        return Err(if versions::advertised(key).is_some() {
            BrokerError::UnsupportedVersion {
                peer,
                api: api_name(raw.api_key),
                api_key: raw.api_key,
                api_version: raw.api_version,
            }
        } else {
            BrokerError::UnsupportedApi {
                peer,
                api: api_name(raw.api_key),
                api_key: raw.api_key,
                api_version: raw.api_version,
            }
        });
    }
    let header = codec::decode_header(peer, key, raw, &mut body)?;
    Ok(Routed::Serve { header, body })
}

/// Handles one request frame (header + body, without the length prefix).
pub async fn dispatch(
    ctx: &Arc<BrokerContext>,
    peer: SocketAddr,
    frame: Bytes,
) -> Result<Reply, BrokerError> {
    let raw = codec::peek_header(peer, &frame)?;
    let key = api_key(peer, raw)?;
    ctx.metrics.request(key);
    let (header, mut body) = match route(peer, key, raw, frame)? {
        Routed::Answered(reply) => return Ok(Reply::Now(Some(reply))),
        Routed::Serve { header, body } => (header, body),
    };
    let v = raw.api_version;

    macro_rules! req {
        ($t:ty) => {
            codec::decode_body::<$t>(peer, raw, &mut body)?
        };
    }
    macro_rules! now {
        ($e:expr) => {
            Reply::Now(Some(respond(raw, &$e)?))
        };
    }
    // Group requests: `__consumer_offsets` is created first if the cluster has none yet (a
    // client may skip FindCoordinator on a single broker); the coordinator decides the rest.
    macro_rules! group {
        ($method:ident, $t:ty) => {{
            let req = req!($t);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                ctx.groups.$method(v, req).await
            })
        }};
    }

    let reply = match key {
        ApiKey::Produce => produce::handle(ctx, raw, req!(ProduceRequest))?,
        ApiKey::Fetch => fetch::handle(ctx, raw, req!(FetchRequest))?,
        ApiKey::ListOffsets => now!(log_offsets::list_offsets(ctx, v, req!(ListOffsetsRequest))),
        ApiKey::OffsetForLeaderEpoch => now!(log_offsets::offset_for_leader_epoch(
            ctx,
            req!(OffsetForLeaderEpochRequest)
        )),
        ApiKey::Metadata => now!(metadata::metadata(ctx, v, req!(MetadataRequest)).await),
        ApiKey::DescribeCluster => now!(metadata::describe_cluster(
            ctx,
            v,
            req!(DescribeClusterRequest)
        )),
        ApiKey::AlterPartitionReassignments => {
            now!(reassign::alter(ctx, req!(AlterPartitionReassignmentsRequest)).await)
        }
        ApiKey::ListPartitionReassignments => {
            now!(reassign::list(ctx, req!(ListPartitionReassignmentsRequest)))
        }
        ApiKey::DescribeLogDirs => now!(operational::describe_log_dirs(
            ctx,
            req!(DescribeLogDirsRequest)
        )),
        ApiKey::DescribeProducers => {
            now!(operational::describe_producers(
                ctx,
                req!(DescribeProducersRequest)
            ))
        }
        ApiKey::ElectLeaders => {
            now!(operational::elect_leaders(ctx, v, req!(ElectLeadersRequest)).await)
        }
        ApiKey::DescribeTopicPartitions => now!(metadata::describe_topic_partitions(
            ctx,
            req!(DescribeTopicPartitionsRequest)
        )),
        ApiKey::DescribeQuorum => {
            let req = req!(DescribeQuorumRequest);
            let client_id = header.client_id.as_ref().map(|c| c.to_string());
            later(
                raw,
                quorum::describe_quorum(Arc::clone(ctx), v, client_id, req),
            )
        }
        ApiKey::UnregisterBroker => {
            now!(quorum::unregister_broker(ctx, req!(UnregisterBrokerRequest)).await)
        }
        ApiKey::FindCoordinator => {
            now!(metadata::find_coordinator(ctx, v, req!(FindCoordinatorRequest)).await)
        }
        ApiKey::InitProducerId => {
            now!(produce::init_producer_id(ctx, req!(InitProducerIdRequest)).await)
        }
        ApiKey::CreateTopics => {
            now!(topics::create_topics(ctx, v, req!(CreateTopicsRequest)).await)
        }
        ApiKey::DeleteTopics => {
            now!(topics::delete_topics(ctx, v, req!(DeleteTopicsRequest)).await)
        }
        ApiKey::DeleteRecords => {
            now!(topics::delete_records(ctx, req!(DeleteRecordsRequest)).await)
        }
        ApiKey::CreatePartitions => {
            now!(topics::create_partitions(ctx, req!(CreatePartitionsRequest)).await)
        }
        ApiKey::DescribeConfigs => {
            now!(configs::describe_configs(ctx, v, req!(DescribeConfigsRequest)).await)
        }
        ApiKey::AlterConfigs => now!(configs::alter_configs(ctx, req!(AlterConfigsRequest)).await),
        ApiKey::IncrementalAlterConfigs => {
            now!(
                configs::incremental_alter_configs(ctx, req!(IncrementalAlterConfigsRequest)).await
            )
        }
        ApiKey::JoinGroup => {
            let req = req!(JoinGroupRequest);
            let ctx = Arc::clone(ctx);
            let client = ClientInfo {
                client_id: header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                client_host: format!("/{}", peer.ip()),
            };
            later(raw, async move {
                offsets_topic(&ctx).await;
                ctx.groups.join_group_from(v, req, client).await
            })
        }
        ApiKey::SyncGroup => group!(sync_group, SyncGroupRequest),
        ApiKey::Heartbeat => group!(heartbeat, HeartbeatRequest),
        ApiKey::LeaveGroup => group!(leave_group, LeaveGroupRequest),
        ApiKey::OffsetCommit => group!(offset_commit, OffsetCommitRequest),
        ApiKey::OffsetFetch => group!(offset_fetch, OffsetFetchRequest),
        ApiKey::ListGroups => {
            // Lists what this broker coordinates; never creates the offsets topic (admin tools
            // send it to every broker).
            let req = req!(ListGroupsRequest);
            later(raw, share_admin::list_groups(Arc::clone(ctx), v, req))
        }
        ApiKey::DescribeGroups => group!(describe_groups, DescribeGroupsRequest),
        ApiKey::DeleteGroups => {
            let req = req!(DeleteGroupsRequest);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                share_admin::delete_groups(ctx, v, req).await
            })
        }
        ApiKey::DescribeShareGroupOffsets => later(
            raw,
            share_admin::describe_offsets(Arc::clone(ctx), req!(DescribeShareGroupOffsetsRequest)),
        ),
        ApiKey::ShareGroupHeartbeat => {
            let req = req!(ShareGroupHeartbeatRequest);
            let client = (
                header
                    .client_id
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                format!("/{}", peer.ip()),
            );
            later(raw, share::heartbeat(Arc::clone(ctx), req, client))
        }
        ApiKey::ShareGroupDescribe => later(
            raw,
            share_admin::describe(Arc::clone(ctx), req!(ShareGroupDescribeRequest)),
        ),
        ApiKey::ShareFetch => later(raw, share::fetch(Arc::clone(ctx), req!(ShareFetchRequest))),
        ApiKey::ShareAcknowledge => later(
            raw,
            share::acknowledge_request(Arc::clone(ctx), req!(ShareAcknowledgeRequest)),
        ),
        _ => {
            return Err(BrokerError::UnsupportedApi {
                peer,
                api: api_name(raw.api_key),
                api_key: raw.api_key,
                api_version: raw.api_version,
            })
        }
    };
    Ok(reply)
}

/// Makes sure `__consumer_offsets` exists before a group request is served. A failure is
/// logged; the coordinator then answers the request COORDINATOR_NOT_AVAILABLE.
async fn offsets_topic(ctx: &Arc<BrokerContext>) {
    if let Err(e) = catalog::ensure_offsets_topic(ctx).await {
        tracing::warn!(error = %e, "no offsets topic for a group request");
    }
}

/// A Kafka topic-name-ish `StrBytes` from a `&str`.
pub fn sb(s: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.to_string())
}

/// An optional `StrBytes` from an optional `&str`.
pub fn opt_sb(s: Option<&str>) -> Option<kafka_protocol::protocol::StrBytes> {
    s.map(sb)
}

/// An error message field from any error.
pub fn err_msg(e: &impl std::fmt::Display) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(sb(&e.to_string()))
}
