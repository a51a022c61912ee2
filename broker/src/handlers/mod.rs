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
//! ([`catalog`]); Kafka's error codes ([`codes`]). Security: the requests of a connection
//! that has not authenticated yet ([`sasl`]), every request's authorization ([`authz`]), the
//! ACL APIs ([`acls`]) and the SCRAM credential APIs ([`users`]).
//!
//! May import: `protocol`, `context`, `topology`, `cluster`, `log`, `group`, `share`, `error`. Never
//! `server`, which calls [`dispatch`].

pub mod acls;
pub mod api_versions;
pub mod authz;
pub mod catalog;
pub mod codes;
pub mod configs;
pub mod fetch;
pub mod fetch_sessions;
pub mod log_offsets;
pub mod metadata;
pub mod operational;
pub mod produce;
pub mod quorum;
pub mod quotas;
pub use quotas::{Metered, Mute};
pub mod reassign;
pub mod sasl;
pub mod share;
pub mod share_admin;
pub mod share_authz;
pub mod share_store;
pub mod topics;
pub mod txn;
pub mod unserved;
pub mod users;

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
use crate::protocol::frame::Frame;
use crate::protocol::versions;
use crate::security::Principal;

/// Who sent a request: the connection's peer address, the listener it came through and the
/// principal it authenticated as (`User:ANONYMOUS` when nothing authenticated it).
#[derive(Debug, Clone)]
pub struct Caller {
    pub peer: SocketAddr,
    /// The listener's name (upper case): Metadata answers with that listener's addresses.
    pub listener: Arc<str>,
    pub principal: Principal,
    /// The connection's throttle under client quotas.
    pub mute: Arc<Mute>,
}

impl Caller {
    /// A caller on a plaintext listener that authenticated nothing (tests, tools).
    pub fn anonymous(peer: SocketAddr, listener: &str) -> Caller {
        Caller {
            peer,
            listener: listener.into(),
            principal: Principal::anonymous(),
            mute: Arc::default(),
        }
    }
}

/// What handling one request produced.
pub enum Reply {
    /// The response frame (`None`: the request gets no response, e.g. Produce with acks=0).
    Now(Option<Frame>),
    /// The response needs waiting (fsync, long poll, rebalance). The side effects that must
    /// happen in request order (appends) have already happened.
    Later(BoxFuture<'static, Result<Option<Frame>, BrokerError>>),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Now(b) => write!(f, "Now({:?} bytes)", b.as_ref().map(|b| b.len())),
            Reply::Later(_) => write!(f, "Later"),
        }
    }
}

impl Reply {
    /// An answer ready now, in one buffer.
    pub fn now(frame: Bytes) -> Reply {
        Reply::Now(Some(Frame::One(frame)))
    }
}

/// A [`Reply::Later`] from an async block that yields a response body.
fn later<R, F>(raw: RawHeader, fut: F) -> Reply
where
    R: Encodable + HeaderVersion + Send + 'static,
    F: std::future::Future<Output = R> + Send + 'static,
{
    Reply::Later(async move { respond(raw, &fut.await).map(|b| Some(b.into())) }.boxed())
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
/// apart so the fuzz targets (`crate::fuzzing`) run exactly this path. `authorizer`: whether
/// the broker has one (without, the ACL APIs are answered SECURITY_DISABLED here).
pub fn route(
    peer: SocketAddr,
    key: ApiKey,
    raw: RawHeader,
    frame: Bytes,
    authorizer: bool,
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
    // "security is disabled" instead of "not supported") and answered SECURITY_DISABLED when
    // there is no authorizer. SASL requests reach this point on listeners without SASL, or
    // after the client authenticated: answered with an error.
    if versions::advertised(key).is_none()
        || (versions::ACL_APIS.contains(&key) && !authorizer)
        || versions::SASL_APIS.contains(&key)
    {
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

/// Handles one request frame (header + body, without the length prefix) of an authenticated
/// `caller`, authorized request by request (see [`authz`]).
pub async fn dispatch(
    ctx: &Arc<BrokerContext>,
    caller: &Caller,
    frame: Bytes,
) -> Result<Reply, BrokerError> {
    let peer = caller.peer;
    let raw = codec::peek_header(peer, &frame)?;
    let key = api_key(peer, raw)?;
    ctx.metrics.request(key);
    let authorizer = ctx.security.authorizer.is_some();
    let (header, mut body) = match route(peer, key, raw, frame, authorizer)? {
        Routed::Answered(reply) => return Ok(Reply::now(reply)),
        Routed::Serve { header, body } => (header, body),
    };
    let v = raw.api_version;
    let access = authz::Access::new(ctx, caller);
    if let Some(op) = authz::cluster_operation(key) {
        if !access.cluster(op) {
            ctx.metrics
                .error_code(&api_name(raw.api_key), authz::CLUSTER_AUTHORIZATION_FAILED);
            return refuse_cluster(peer, key, raw, &mut body, op).map(Reply::now);
        }
    }

    macro_rules! req {
        ($t:ty) => {
            codec::decode_body::<$t>(peer, raw, &mut body)?
        };
    }
    macro_rules! now {
        ($e:expr) => {
            Reply::now(respond(raw, &$e)?)
        };
    }
    // Group requests: `__consumer_offsets` is created first if the cluster has none yet (a
    // client may skip FindCoordinator on a single broker); the coordinator decides the rest.
    macro_rules! group {
        ($method:ident, $t:ty, $check:path) => {{
            let req = req!($t);
            if let Some(refused) = $check(&access, &req) {
                return Ok(now!(refused));
            }
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                ctx.groups.$method(v, req).await
            })
        }};
    }

    let reply = match key {
        ApiKey::Produce => {
            // Share-partition leaders write their state through the leader of
            // `__share_group_state` (`share_store`): the one client write to an internal topic.
            let cluster_write = header.client_id.as_ref().map(|c| c.as_str())
                == Some(quorum::FORWARD_CLIENT_ID)
                && *caller.listener == *ctx.inter_broker_listener
                && access.cluster(authz::Operation::ClusterAction);
            let req = req!(ProduceRequest);
            let throttle = match Metered::of(ctx, caller, &header) {
                Some(m) if !cluster_write => m.record(
                    ctx,
                    crate::quota::PRODUCER_BYTE_RATE,
                    produce::bytes_of(&req),
                ),
                _ => 0,
            };
            produce::handle(ctx, raw, req, &access, cluster_write, throttle).await?
        }
        ApiKey::Fetch => {
            let metered = Metered::of(ctx, caller, &header);
            fetch::handle(ctx, raw, req!(FetchRequest), &access, metered)?
        }
        ApiKey::ListOffsets => {
            let mut req = req!(ListOffsetsRequest);
            let refused = authz::list_offsets(&access, &mut req);
            let mut resp = log_offsets::list_offsets(ctx, v, req);
            resp.topics.extend(refused);
            now!(resp)
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut req = req!(OffsetForLeaderEpochRequest);
            let refused = authz::offset_for_leader_epoch(&access, &mut req);
            let mut resp = log_offsets::offset_for_leader_epoch(ctx, req);
            resp.topics.extend(refused);
            now!(resp)
        }
        ApiKey::Metadata => {
            now!(metadata::metadata(ctx, v, req!(MetadataRequest), caller, &access).await)
        }
        ApiKey::ListConfigResources => {
            let req = req!(ListConfigResourcesRequest);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                configs::list_config_resources(&ctx, v, req).await
            })
        }
        ApiKey::DescribeCluster => now!(metadata::describe_cluster(
            ctx,
            v,
            req!(DescribeClusterRequest),
            caller
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
            let mut req = req!(DescribeProducersRequest);
            let refused = authz::describe_producers(&access, &mut req);
            let mut resp = operational::describe_producers(ctx, req);
            resp.topics.extend(refused);
            now!(resp)
        }
        ApiKey::ElectLeaders => {
            now!(operational::elect_leaders(ctx, v, req!(ElectLeadersRequest)).await)
        }
        ApiKey::DescribeTopicPartitions => now!(metadata::describe_topic_partitions(
            ctx,
            req!(DescribeTopicPartitionsRequest),
            &access
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
            let req = req!(FindCoordinatorRequest);
            now!(metadata::find_coordinator(ctx, v, req, caller, &access).await)
        }
        ApiKey::InitProducerId => {
            let req = req!(InitProducerIdRequest);
            let idempotent = req.transactional_id.as_ref().is_none_or(|t| t.is_empty());
            if idempotent
                && !access.cluster(authz_op::IdempotentWrite)
                && !access.any_of_type(authz_op::Write, authz_res::Topic)
            {
                ctx.metrics
                    .error_code("InitProducerId", authz::CLUSTER_AUTHORIZATION_FAILED);
                now!(InitProducerIdResponse::default()
                    .with_error_code(authz::CLUSTER_AUTHORIZATION_FAILED)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1))
            } else if idempotent {
                now!(produce::init_producer_id(ctx, req).await)
            } else {
                let ctx = Arc::clone(ctx);
                let access = access.clone();
                later(raw, async move {
                    offsets_topic(&ctx).await;
                    txn::init_producer_id(&ctx, req, &access).await
                })
            }
        }
        ApiKey::AddPartitionsToTxn => {
            let req = req!(AddPartitionsToTxnRequest);
            let (ctx, access) = (Arc::clone(ctx), access.clone());
            later(raw, async move {
                txn::add_partitions_to_txn(&ctx, v, req, &access).await
            })
        }
        ApiKey::AddOffsetsToTxn => {
            let req = req!(AddOffsetsToTxnRequest);
            let (ctx, access) = (Arc::clone(ctx), access.clone());
            later(raw, async move {
                txn::add_offsets_to_txn(&ctx, req, &access).await
            })
        }
        ApiKey::EndTxn => {
            let req = req!(EndTxnRequest);
            let (ctx, access) = (Arc::clone(ctx), access.clone());
            later(raw, async move { txn::end_txn(&ctx, req, &access).await })
        }
        ApiKey::TxnOffsetCommit => {
            let mut req = req!(TxnOffsetCommitRequest);
            let refused = authz::txn_offset_commit(&access, &mut req);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                let mut resp = match (req.topics.is_empty(), txn::check_txn_offsets(&ctx, &req)) {
                    (true, _) => TxnOffsetCommitResponse::default(),
                    (false, Some(code)) => txn::refuse_txn_offsets(req, code),
                    (false, None) => ctx.groups.txn_offset_commit(v, req).await,
                };
                resp.topics.extend(refused);
                resp
            })
        }
        ApiKey::DescribeTransactions => now!(txn::describe_transactions(
            ctx,
            req!(DescribeTransactionsRequest),
            &access
        )),
        ApiKey::WriteTxnMarkers => {
            let req = req!(WriteTxnMarkersRequest);
            let ctx = Arc::clone(ctx);
            later(raw, async move { txn::write_txn_markers(&ctx, req).await })
        }
        ApiKey::ListTransactions => now!(txn::list_transactions(
            ctx,
            req!(ListTransactionsRequest),
            &access
        )),
        ApiKey::CreateTopics => {
            let mut req = req!(CreateTopicsRequest);
            let refused = authz::create_topics(&access, &mut req);
            let mut resp = topics::create_topics(ctx, v, req).await;
            resp.topics.extend(refused);
            now!(resp)
        }
        ApiKey::DeleteTopics => {
            let mut req = req!(DeleteTopicsRequest);
            let refused = authz::delete_topics(ctx, &access, &mut req);
            let mut resp = topics::delete_topics(ctx, v, req).await;
            resp.responses.extend(refused);
            now!(resp)
        }
        ApiKey::DeleteRecords => {
            let mut req = req!(DeleteRecordsRequest);
            let refused = authz::delete_records(&access, &mut req);
            let mut resp = topics::delete_records(ctx, req).await;
            resp.topics.extend(refused);
            now!(resp)
        }
        ApiKey::CreatePartitions => {
            let mut req = req!(CreatePartitionsRequest);
            let refused = authz::create_partitions(&access, &mut req);
            let mut resp = topics::create_partitions(ctx, req).await;
            resp.results.extend(refused);
            now!(resp)
        }
        ApiKey::DescribeConfigs => {
            let mut req = req!(DescribeConfigsRequest);
            let refused = authz::describe_configs(&access, &mut req);
            let mut resp = configs::describe_configs(ctx, v, req).await;
            resp.results.extend(refused);
            now!(resp)
        }
        ApiKey::AlterConfigs => {
            let mut req = req!(AlterConfigsRequest);
            let refused = authz::alter_configs(&access, &mut req);
            let mut resp = configs::alter_configs(ctx, req).await;
            resp.responses.extend(refused);
            now!(resp)
        }
        ApiKey::IncrementalAlterConfigs => {
            let mut req = req!(IncrementalAlterConfigsRequest);
            let refused = authz::incremental_alter_configs(&access, &mut req);
            let mut resp = configs::incremental_alter_configs(ctx, req).await;
            resp.responses.extend(refused);
            now!(resp)
        }
        ApiKey::DescribeAcls => now!(acls::describe(ctx, req!(DescribeAclsRequest))),
        ApiKey::CreateAcls => now!(acls::create(ctx, req!(CreateAclsRequest)).await),
        ApiKey::DeleteAcls => now!(acls::delete(ctx, req!(DeleteAclsRequest)).await),
        ApiKey::DescribeClientQuotas => {
            now!(quotas::describe_client_quotas(
                ctx,
                &req!(DescribeClientQuotasRequest)
            ))
        }
        ApiKey::AlterClientQuotas => {
            let req = req!(AlterClientQuotasRequest);
            let ctx = Arc::clone(ctx);
            later(
                raw,
                async move { quotas::alter_client_quotas(&ctx, req).await },
            )
        }
        ApiKey::DescribeUserScramCredentials => now!(users::describe(
            ctx,
            req!(DescribeUserScramCredentialsRequest)
        )),
        ApiKey::AlterUserScramCredentials => {
            now!(users::alter(ctx, req!(AlterUserScramCredentialsRequest)).await)
        }
        ApiKey::JoinGroup => {
            let req = req!(JoinGroupRequest);
            if let Some(refused) = authz::join_group(&access, &req) {
                return Ok(now!(refused));
            }
            let ctx = Arc::clone(ctx);
            let client = client_info(&header, peer);
            later(raw, async move {
                offsets_topic(&ctx).await;
                ctx.groups.join_group_from(v, req, client).await
            })
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let req = req!(ConsumerGroupHeartbeatRequest);
            if let Some(refused) = authz::consumer_group_heartbeat(&access, &req) {
                return Ok(now!(refused));
            }
            let ctx = Arc::clone(ctx);
            let client = client_info(&header, peer);
            let visible = authz::topic_filter(&access);
            later(raw, async move {
                offsets_topic(&ctx).await;
                ctx.groups.consumer_heartbeat(v, req, client, visible).await
            })
        }
        ApiKey::ConsumerGroupDescribe => {
            let mut req = req!(ConsumerGroupDescribeRequest);
            let refused = authz::consumer_group_describe(&access, &mut req);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                let mut resp = ctx.groups.consumer_group_describe(v, req).await;
                authz::consumer_group_describe_topics(&access, &mut resp);
                resp.groups.extend(refused);
                resp
            })
        }
        ApiKey::SyncGroup => group!(sync_group, SyncGroupRequest, authz::sync_group),
        ApiKey::Heartbeat => group!(heartbeat, HeartbeatRequest, authz::heartbeat),
        ApiKey::LeaveGroup => group!(leave_group, LeaveGroupRequest, authz::leave_group),
        ApiKey::OffsetCommit => {
            let mut req = req!(OffsetCommitRequest);
            let (group_ok, refused) = authz::offset_commit(&access, &mut req);
            if !group_ok {
                return Ok(now!(OffsetCommitResponse::default().with_topics(refused)));
            }
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                let mut resp = ctx.groups.offset_commit(v, req).await;
                resp.topics.extend(refused);
                resp
            })
        }
        ApiKey::OffsetFetch => {
            let mut req = req!(OffsetFetchRequest);
            let check = authz::offset_fetch(&access, v, &mut req);
            if check.group_refused {
                return Ok(now!(authz::offset_fetch_refused(v, &req)));
            }
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                let mut resp = ctx.groups.offset_fetch(v, req).await;
                authz::finish_offset_fetch(&access, v, check, &mut resp);
                resp
            })
        }
        ApiKey::ListGroups => {
            // Lists what this broker coordinates; never creates the offsets topic (admin tools
            // send it to every broker).
            let req = req!(ListGroupsRequest);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                let mut resp = share_admin::list_groups(ctx, v, req).await;
                authz::list_groups(&access, &mut resp);
                resp
            })
        }
        ApiKey::DescribeGroups => {
            let mut req = req!(DescribeGroupsRequest);
            let refused = authz::describe_groups(&access, &mut req);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                let mut resp = ctx.groups.describe_groups(v, req).await;
                resp.groups.extend(refused);
                resp
            })
        }
        ApiKey::DeleteGroups => {
            let mut req = req!(DeleteGroupsRequest);
            let refused = authz::delete_groups(&access, &mut req);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                let mut resp = share_admin::delete_groups(ctx, v, req).await;
                resp.results.extend(refused);
                resp
            })
        }
        ApiKey::OffsetDelete => {
            let mut req = req!(OffsetDeleteRequest);
            let (group_ok, refused) = authz::offset_delete(&access, &mut req);
            if !group_ok {
                return Ok(now!(OffsetDeleteResponse::default()
                    .with_error_code(authz::GROUP_AUTHORIZATION_FAILED)));
            }
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                offsets_topic(&ctx).await;
                let mut resp = ctx.groups.delete_offsets(req).await;
                if resp.error_code == 0 {
                    resp.topics.extend(refused);
                }
                resp
            })
        }
        ApiKey::DescribeShareGroupOffsets => {
            let mut req = req!(DescribeShareGroupOffsetsRequest);
            let refused = share_authz::describe_offsets(&access, &mut req);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                let mut resp = share_admin::describe_offsets(ctx, req).await;
                resp.groups.extend(refused);
                resp
            })
        }
        // As Kafka: READ on the group (DELETE to delete offsets) and READ on each topic.
        ApiKey::AlterShareGroupOffsets => {
            let req = req!(AlterShareGroupOffsetsRequest);
            if !access.group(authz::Operation::Read, req.group_id.as_str()) {
                return Ok(now!(AlterShareGroupOffsetsResponse::default()
                    .with_error_code(authz::GROUP_AUTHORIZATION_FAILED)));
            }
            let readable: std::collections::BTreeSet<String> = req
                .topics
                .iter()
                .map(|t| t.topic_name.to_string())
                .filter(|t| access.topic(authz::Operation::Read, t))
                .collect();
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                share_admin::alter_offsets(ctx, req, &|t| readable.contains(t)).await
            })
        }
        ApiKey::DeleteShareGroupOffsets => {
            let req = req!(DeleteShareGroupOffsetsRequest);
            if !access.group(authz::Operation::Delete, req.group_id.as_str()) {
                return Ok(now!(DeleteShareGroupOffsetsResponse::default()
                    .with_error_code(authz::GROUP_AUTHORIZATION_FAILED)));
            }
            let readable: std::collections::BTreeSet<String> = req
                .topics
                .iter()
                .map(|t| t.topic_name.to_string())
                .filter(|t| access.topic(authz::Operation::Read, t))
                .collect();
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                share_admin::delete_offsets(ctx, req, &|t| readable.contains(t)).await
            })
        }
        ApiKey::ShareGroupHeartbeat => {
            let req = req!(ShareGroupHeartbeatRequest);
            if let Some(refused) = share_authz::heartbeat(&access, &req) {
                return Ok(now!(refused));
            }
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
        ApiKey::ShareGroupDescribe => {
            let mut req = req!(ShareGroupDescribeRequest);
            let refused = share_authz::describe(&access, &mut req);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                let mut resp = share_admin::describe(ctx, req).await;
                resp.groups.extend(refused);
                resp
            })
        }
        ApiKey::ShareFetch => {
            let req = req!(ShareFetchRequest);
            if let Some(refused) = share_authz::fetch(ctx, &access, &req) {
                return Ok(now!(refused));
            }
            // A share consumer's records count against its `consumer_byte_rate` as a
            // consumer's do.
            let metered = Metered::of(ctx, caller, &header);
            let ctx = Arc::clone(ctx);
            later(raw, async move {
                let mut resp = share::fetch(Arc::clone(&ctx), req).await;
                if let Some(m) = metered {
                    let bytes = share::record_bytes(&resp);
                    resp.throttle_time_ms = m.record(&ctx, crate::quota::CONSUMER_BYTE_RATE, bytes);
                }
                resp
            })
        }
        ApiKey::ShareAcknowledge => {
            let req = req!(ShareAcknowledgeRequest);
            if let Some(refused) = share_authz::acknowledge(ctx, &access, &req) {
                return Ok(now!(refused));
            }
            later(raw, share::acknowledge_request(Arc::clone(ctx), req))
        }
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

use crate::security::acl::Operation as authz_op;
use crate::security::acl::ResourceType as authz_res;

/// The response of a cluster-level API whose caller lacks `op` on the cluster: the error at
/// the top, or on every item for the APIs without a top-level error.
fn refuse_cluster(
    peer: SocketAddr,
    key: ApiKey,
    raw: RawHeader,
    body: &mut Bytes,
    op: authz_op,
) -> Result<Bytes, BrokerError> {
    use kafka_protocol::protocol::StrBytes;
    const DENIED: i16 = authz::CLUSTER_AUTHORIZATION_FAILED;
    let msg = authz::cluster_denied_message(op);
    macro_rules! req {
        ($t:ty) => {
            codec::decode_body::<$t>(peer, raw, body)?
        };
    }
    match key {
        ApiKey::DescribeCluster => {
            let _ = req!(DescribeClusterRequest);
            respond(
                raw,
                &DescribeClusterResponse::default()
                    .with_error_code(DENIED)
                    .with_error_message(msg),
            )
        }
        ApiKey::DescribeLogDirs => {
            let _ = req!(DescribeLogDirsRequest);
            respond(
                raw,
                &DescribeLogDirsResponse::default().with_error_code(DENIED),
            )
        }
        ApiKey::ListPartitionReassignments => {
            let _ = req!(ListPartitionReassignmentsRequest);
            respond(
                raw,
                &ListPartitionReassignmentsResponse::default()
                    .with_error_code(DENIED)
                    .with_error_message(msg),
            )
        }
        ApiKey::AlterPartitionReassignments => {
            let _ = req!(AlterPartitionReassignmentsRequest);
            respond(
                raw,
                &AlterPartitionReassignmentsResponse::default()
                    .with_error_code(DENIED)
                    .with_error_message(msg),
            )
        }
        ApiKey::DescribeQuorum => {
            let _ = req!(DescribeQuorumRequest);
            respond(
                raw,
                &DescribeQuorumResponse::default()
                    .with_error_code(DENIED)
                    .with_error_message(msg),
            )
        }
        ApiKey::ListConfigResources => {
            let _ = req!(ListConfigResourcesRequest);
            respond(
                raw,
                &ListConfigResourcesResponse::default().with_error_code(DENIED),
            )
        }
        ApiKey::UnregisterBroker => {
            let _ = req!(UnregisterBrokerRequest);
            respond(
                raw,
                &UnregisterBrokerResponse::default()
                    .with_error_code(DENIED)
                    .with_error_message(msg),
            )
        }
        ApiKey::ElectLeaders => {
            use kafka_protocol::messages::elect_leaders_response::{
                PartitionResult, ReplicaElectionResult,
            };
            let req = req!(ElectLeadersRequest);
            let results = req
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    ReplicaElectionResult::default()
                        .with_topic(t.topic)
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(DENIED)
                                })
                                .collect(),
                        )
                })
                .collect();
            respond(
                raw,
                &ElectLeadersResponse::default()
                    .with_error_code(DENIED)
                    .with_replica_election_results(results),
            )
        }
        ApiKey::DescribeAcls => {
            let _ = req!(DescribeAclsRequest);
            respond(
                raw,
                &DescribeAclsResponse::default()
                    .with_error_code(DENIED)
                    .with_error_message(msg),
            )
        }
        ApiKey::CreateAcls => {
            use kafka_protocol::messages::create_acls_response::AclCreationResult;
            let req = req!(CreateAclsRequest);
            let results = req
                .creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(DENIED)
                        .with_error_message(msg.clone())
                })
                .collect();
            respond(raw, &CreateAclsResponse::default().with_results(results))
        }
        ApiKey::DeleteAcls => {
            use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
            let req = req!(DeleteAclsRequest);
            let results = req
                .filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(DENIED)
                        .with_error_message(msg.clone())
                })
                .collect();
            respond(
                raw,
                &DeleteAclsResponse::default().with_filter_results(results),
            )
        }
        ApiKey::DescribeClientQuotas => {
            let _ = req!(DescribeClientQuotasRequest);
            respond(
                raw,
                &DescribeClientQuotasResponse::default()
                    .with_error_code(DENIED)
                    .with_error_message(msg),
            )
        }
        ApiKey::AlterClientQuotas => {
            let req = req!(AlterClientQuotasRequest);
            respond(raw, &quotas::alter_refused(req, DENIED, msg))
        }
        ApiKey::DescribeUserScramCredentials => {
            let _ = req!(DescribeUserScramCredentialsRequest);
            respond(
                raw,
                &DescribeUserScramCredentialsResponse::default()
                    .with_error_code(DENIED)
                    .with_error_message(msg),
            )
        }
        ApiKey::AlterUserScramCredentials => {
            use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
            let req = req!(AlterUserScramCredentialsRequest);
            let mut names: Vec<StrBytes> = req.deletions.into_iter().map(|d| d.name).collect();
            names.extend(req.upsertions.into_iter().map(|u| u.name));
            names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            names.dedup();
            let results = names
                .into_iter()
                .map(|u| {
                    AlterUserScramCredentialsResult::default()
                        .with_user(u)
                        .with_error_code(DENIED)
                        .with_error_message(msg.clone())
                })
                .collect();
            respond(
                raw,
                &AlterUserScramCredentialsResponse::default().with_results(results),
            )
        }
        ApiKey::WriteTxnMarkers => {
            let req = req!(WriteTxnMarkersRequest);
            respond(raw, &txn::refuse_markers(req, DENIED))
        }
        _ => Err(BrokerError::UnsupportedApi {
            peer,
            api: api_name(raw.api_key),
            api_key: raw.api_key,
            api_version: raw.api_version,
        }),
    }
}

/// Makes sure `__consumer_offsets` exists before a group request is served. A failure is
/// logged; the coordinator then answers the request COORDINATOR_NOT_AVAILABLE.
/// Who sent a group request (DescribeGroups and ConsumerGroupDescribe report it).
fn client_info(header: &RequestHeader, peer: SocketAddr) -> ClientInfo {
    ClientInfo {
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
    }
}

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
