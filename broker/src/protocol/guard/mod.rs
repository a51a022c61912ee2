//! Pre-decode guard: walks a request body's wire structure and refuses it when a length
//! prefix claims more than the bytes that are left, before `kafka-protocol` decodes it.
//!
//! Why: `kafka-protocol` 0.18 decodes an array with `Vec::with_capacity(count)` where `count`
//! is whatever the peer wrote, so a 13-byte Metadata request claiming 2^31-1 topics makes the
//! allocation fail and aborts the whole process. We use the crate unmodified; instead every
//! body is walked here first, element by element, so by the time the crate decodes it, every
//! array count is backed by that many encoded elements (each at least one byte), and the
//! crate's allocations are bounded by the frame size, as for an honest request.
//!
//! The walk reads only lengths and skips values; it allocates nothing on success, so it is
//! cheap enough for the produce path (record batches are one `bytes` field, skipped whole).
//!
//! The structure of each request is the [`SCHEMA`] table below: the field order, wire types,
//! versions, flexible versions and tagged fields of Kafka's public message definitions, for
//! every request version `kafka-protocol` 0.18 decodes of every API the broker decodes
//! (served, and answered with an error). Its unit tests check it against the crate at every
//! version: the crate's encoding of a default and of a populated request is walked exactly to
//! its end, and a too-large length in each array, string and bytes field is refused.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Why a request body was refused. `api`, `version` and `field` (a path such as
/// `topics[1].partitions`) name where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// A length prefix claims more than is left in the frame.
    #[error("{api} v{version}: {field} claims {claimed} {unit} but only {remaining} bytes remain")]
    TooLong {
        api: &'static str,
        version: i16,
        field: String,
        claimed: u64,
        unit: &'static str,
        remaining: usize,
    },
    /// The body ends in the middle of a field.
    #[error("{api} v{version}: body ends inside {field}")]
    Truncated {
        api: &'static str,
        version: i16,
        field: String,
    },
    /// A varint is longer than five bytes.
    #[error("{api} v{version}: {field} has an unterminated varint")]
    BadVarint {
        api: &'static str,
        version: i16,
        field: String,
    },
    /// A known tagged field's declared size does not match its value.
    #[error("{api} v{version}: {field} declares {declared} bytes but its value takes {used}")]
    TagSize {
        api: &'static str,
        version: i16,
        field: String,
        declared: usize,
        used: usize,
    },
    /// The guard has no table for this API version, so it cannot vouch for the body.
    #[error("API key {api_key} v{version}: no request structure known")]
    NoSchema { api_key: i16, version: i16 },
}

/// Walks `body` (the request after its header) of `api_key` at `version`.
///
/// Returns the number of bytes the structure takes (trailing bytes are left to the decoder,
/// which ignores them as Kafka does).
pub fn check(api_key: i16, version: i16, body: &[u8]) -> Result<usize, GuardError> {
    let schema = schema();
    let Some(api) = schema.api(api_key, version) else {
        return Err(GuardError::NoSchema { api_key, version });
    };
    let flexible = api.flex.is_some_and(|f| version >= f);
    let mut cur = Cursor { buf: body, pos: 0 };
    let walker = Walker {
        schema,
        version,
        flexible,
    };
    walker
        .walk_struct(api.root, &mut cur)
        .map_err(|f| f.into_error(api.name, version))?;
    Ok(cur.pos)
}

/// The request structures. One block per API: `key Name versions [flexN]` (flexible from
/// version N), the root struct's fields indented by two, then each nested struct as
/// `.Name` with its fields indented by four. A field is `name type [versions] [tagN]`:
/// types are `i8 i16 u16 i32 i64 f64 bool uuid` (fixed size), `str` (i16 length, compact:
/// varint length + 1), `bytes` (i32 length, compact: varint length + 1), `[T]` (i32 count,
/// compact: varint count + 1), a nested struct name, or `?Name` (an i8 presence marker then
/// the struct). Versions are `N`, `N+` or `N-M`, all versions when absent; `tagN` marks a
/// tagged field (flexible versions only) with tag N. Nullability is not recorded: a null
/// length (-1, or 0 when compact) is always accepted here and judged by the decoder.
pub const SCHEMA: &str = "
0 Produce 3-13 flex9
  transactional_id str
  acks i16
  timeout_ms i32
  topic_data [TopicProduceData]
  .PartitionProduceData
    index i32
    records bytes
  .TopicProduceData
    name str 3-12
    topic_id uuid 13+
    partition_data [PartitionProduceData]
1 Fetch 4-18 flex12
  replica_id i32 4-14
  max_wait_ms i32
  min_bytes i32
  max_bytes i32
  isolation_level i8
  session_id i32 7+
  session_epoch i32 7+
  topics [FetchTopic]
  forgotten_topics_data [ForgottenTopic] 7+
  rack_id str 11+
  cluster_id str 12+ tag0
  replica_state ReplicaState 15+ tag1
  .FetchPartition
    partition i32
    current_leader_epoch i32 9+
    fetch_offset i64
    last_fetched_epoch i32 12+
    log_start_offset i64 5+
    partition_max_bytes i32
    replica_directory_id uuid 17+ tag0
    high_watermark i64 18+ tag1
  .FetchTopic
    topic str 4-12
    topic_id uuid 13+
    partitions [FetchPartition]
  .ForgottenTopic
    topic str 7-12
    topic_id uuid 13+
    partitions [i32] 7+
  .ReplicaState
    replica_id i32 15+
    replica_epoch i64 15+
2 ListOffsets 1-10 flex6
  replica_id i32
  isolation_level i8 2+
  topics [ListOffsetsTopic]
  timeout_ms i32 10+
  .ListOffsetsPartition
    partition_index i32
    current_leader_epoch i32 4+
    timestamp i64
  .ListOffsetsTopic
    name str
    partitions [ListOffsetsPartition]
3 Metadata 0-13 flex9
  topics [Topic]
  allow_auto_topic_creation bool 4+
  include_cluster_authorized_operations bool 8-10
  include_topic_authorized_operations bool 8+
  .Topic
    topic_id uuid 10+
    name str
8 OffsetCommit 2-9 flex8
  group_id str
  generation_id_or_member_epoch i32
  member_id str
  group_instance_id str 7+
  retention_time_ms i64 2-4
  topics [Topic]
  .Partition
    partition_index i32
    committed_offset i64
    committed_leader_epoch i32 6+
    committed_metadata str
  .Topic
    name str
    partitions [Partition]
9 OffsetFetch 1-9 flex6
  group_id str 1-7
  topics [Topic] 1-7
  groups [Group] 8+
  require_stable bool 7+
  .Group
    group_id str 8+
    member_id str 9+
    member_epoch i32 9+
    topics [Topics] 8+
  .Topic
    name str 1-7
    partition_indexes [i32] 1-7
  .Topics
    name str 8+
    partition_indexes [i32] 8+
10 FindCoordinator 0-6 flex3
  key str 0-3
  key_type i8 1+
  coordinator_keys [str] 4+
11 JoinGroup 0-9 flex6
  group_id str
  session_timeout_ms i32
  rebalance_timeout_ms i32 1+
  member_id str
  group_instance_id str 5+
  protocol_type str
  protocols [Protocol]
  reason str 8+
  .Protocol
    name str
    metadata bytes
12 Heartbeat 0-4 flex4
  group_id str
  generation_id i32
  member_id str
  group_instance_id str 3+
13 LeaveGroup 0-5 flex4
  group_id str
  member_id str 0-2
  members [MemberIdentity] 3+
  .MemberIdentity
    member_id str 3+
    group_instance_id str 3+
    reason str 5+
14 SyncGroup 0-5 flex4
  group_id str
  generation_id i32
  member_id str
  group_instance_id str 3+
  protocol_type str 5+
  protocol_name str 5+
  assignments [Assignment]
  .Assignment
    member_id str
    assignment bytes
15 DescribeGroups 0-6 flex5
  groups [str]
  include_authorized_operations bool 3+
16 ListGroups 0-5 flex3
  states_filter [str] 4+
  types_filter [str] 5+
17 SaslHandshake 0-1
  mechanism str
18 ApiVersions 0-4 flex3
  client_software_name str 3+
  client_software_version str 3+
19 CreateTopics 2-7 flex5
  topics [CreatableTopic]
  timeout_ms i32
  validate_only bool
  .CreatableReplicaAssignment
    partition_index i32
    broker_ids [i32]
  .CreatableTopic
    name str
    num_partitions i32
    replication_factor i16
    assignments [CreatableReplicaAssignment]
    configs [CreatableTopicConfig]
  .CreatableTopicConfig
    name str
    value str
20 DeleteTopics 1-6 flex4
  topics [DeleteTopicState] 6+
  topic_names [str] 1-5
  timeout_ms i32
  .DeleteTopicState
    name str 6+
    topic_id uuid 6+
21 DeleteRecords 0-2 flex2
  topics [DeleteRecordsTopic]
  timeout_ms i32
  .DeleteRecordsPartition
    partition_index i32
    offset i64
  .DeleteRecordsTopic
    name str
    partitions [DeleteRecordsPartition]
22 InitProducerId 0-5 flex2
  transactional_id str
  transaction_timeout_ms i32
  producer_id i64 3+
  producer_epoch i16 3+
23 OffsetForLeaderEpoch 2-4 flex4
  replica_id i32 3+
  topics [OffsetForLeaderTopic]
  .OffsetForLeaderPartition
    partition i32
    current_leader_epoch i32
    leader_epoch i32
  .OffsetForLeaderTopic
    topic str
    partitions [OffsetForLeaderPartition]
24 AddPartitionsToTxn 0-5 flex3
  transactions [AddPartitionsToTxnTransaction] 4+
  v3_and_below_transactional_id str 0-3
  v3_and_below_producer_id i64 0-3
  v3_and_below_producer_epoch i16 0-3
  v3_and_below_topics [AddPartitionsToTxnTopic] 0-3
  .AddPartitionsToTxnTopic
    name str
    partitions [i32]
  .AddPartitionsToTxnTransaction
    transactional_id str 4+
    producer_id i64 4+
    producer_epoch i16 4+
    verify_only bool 4+
    topics [AddPartitionsToTxnTopic] 4+
25 AddOffsetsToTxn 0-4 flex3
  transactional_id str
  producer_id i64
  producer_epoch i16
  group_id str
26 EndTxn 0-5 flex3
  transactional_id str
  producer_id i64
  producer_epoch i16
  committed bool
28 TxnOffsetCommit 0-5 flex3
  transactional_id str
  group_id str
  producer_id i64
  producer_epoch i16
  generation_id i32 3+
  member_id str 3+
  group_instance_id str 3+
  topics [Topic]
  .Partition
    partition_index i32
    committed_offset i64
    committed_leader_epoch i32 2+
    committed_metadata str
  .Topic
    name str
    partitions [Partition]
29 DescribeAcls 1-3 flex2
  resource_type_filter i8
  resource_name_filter str
  pattern_type_filter i8
  principal_filter str
  host_filter str
  operation i8
  permission_type i8
30 CreateAcls 1-3 flex2
  creations [AclCreation]
  .AclCreation
    resource_type i8
    resource_name str
    resource_pattern_type i8
    principal str
    host str
    operation i8
    permission_type i8
31 DeleteAcls 1-3 flex2
  filters [DeleteAclsFilter]
  .DeleteAclsFilter
    resource_type_filter i8
    resource_name_filter str
    pattern_type_filter i8
    principal_filter str
    host_filter str
    operation i8
    permission_type i8
32 DescribeConfigs 1-4 flex4
  resources [DescribeConfigsResource]
  include_synonyms bool
  include_documentation bool 3+
  .DescribeConfigsResource
    resource_type i8
    resource_name str
    configuration_keys [str]
33 AlterConfigs 0-2 flex2
  resources [AlterConfigsResource]
  validate_only bool
  .AlterConfigsResource
    resource_type i8
    resource_name str
    configs [AlterableConfig]
  .AlterableConfig
    name str
    value str
34 AlterReplicaLogDirs 1-2 flex2
  dirs [AlterReplicaLogDir]
  .AlterReplicaLogDir
    path str
    topics [AlterReplicaLogDirTopic]
  .AlterReplicaLogDirTopic
    name str
    partitions [i32]
35 DescribeLogDirs 1-4 flex2
  topics [DescribableLogDirTopic]
  .DescribableLogDirTopic
    topic str
    partitions [i32]
36 SaslAuthenticate 0-2 flex2
  auth_bytes bytes
37 CreatePartitions 0-3 flex2
  topics [CreatePartitionsTopic]
  timeout_ms i32
  validate_only bool
  .CreatePartitionsAssignment
    broker_ids [i32]
  .CreatePartitionsTopic
    name str
    count i32
    assignments [CreatePartitionsAssignment]
38 CreateDelegationToken 1-3 flex2
  owner_principal_type str 3+
  owner_principal_name str 3+
  renewers [CreatableRenewers]
  max_lifetime_ms i64
  .CreatableRenewers
    principal_type str
    principal_name str
39 RenewDelegationToken 1-2 flex2
  hmac bytes
  renew_period_ms i64
40 ExpireDelegationToken 1-2 flex2
  hmac bytes
  expiry_time_period_ms i64
41 DescribeDelegationToken 1-3 flex2
  owners [DescribeDelegationTokenOwner]
  .DescribeDelegationTokenOwner
    principal_type str
    principal_name str
42 DeleteGroups 0-2 flex2
  groups_names [str]
43 ElectLeaders 0-2 flex2
  election_type i8 1+
  topic_partitions [TopicPartitions]
  timeout_ms i32
  .TopicPartitions
    topic str
    partitions [i32]
44 IncrementalAlterConfigs 0-1 flex1
  resources [AlterConfigsResource]
  validate_only bool
  .AlterConfigsResource
    resource_type i8
    resource_name str
    configs [AlterableConfig]
  .AlterableConfig
    name str
    config_operation i8
    value str
45 AlterPartitionReassignments 0-1 flex0
  timeout_ms i32
  allow_replication_factor_change bool 1+
  topics [ReassignableTopic]
  .ReassignablePartition
    partition_index i32
    replicas [i32]
  .ReassignableTopic
    name str
    partitions [ReassignablePartition]
46 ListPartitionReassignments 0 flex0
  timeout_ms i32
  topics [ListPartitionReassignmentsTopics]
  .ListPartitionReassignmentsTopics
    name str
    partition_indexes [i32]
47 OffsetDelete 0
  group_id str
  topics [Topic]
  .Partition
    partition_index i32
  .Topic
    name str
    partitions [Partition]
48 DescribeClientQuotas 0-1 flex1
  components [ComponentData]
  strict bool
  .ComponentData
    entity_type str
    match_type i8
    match str
49 AlterClientQuotas 0-1 flex1
  entries [EntryData]
  validate_only bool
  .EntityData
    entity_type str
    entity_name str
  .EntryData
    entity [EntityData]
    ops [OpData]
  .OpData
    key str
    value f64
    remove bool
50 DescribeUserScramCredentials 0 flex0
  users [UserName]
  .UserName
    name str
51 AlterUserScramCredentials 0 flex0
  deletions [ScramCredentialDeletion]
  upsertions [ScramCredentialUpsertion]
  .ScramCredentialDeletion
    name str
    mechanism i8
  .ScramCredentialUpsertion
    name str
    mechanism i8
    iterations i32
    salt bytes
    salted_password bytes
55 DescribeQuorum 0-2 flex0
  topics [TopicData]
  .PartitionData
    partition_index i32
  .TopicData
    topic_name str
    partitions [PartitionData]
57 UpdateFeatures 0-2 flex0
  timeout_ms i32
  feature_updates [FeatureUpdateKey]
  validate_only bool 1+
  .FeatureUpdateKey
    feature str
    max_version_level i16
    allow_downgrade bool 0
    upgrade_type i8 1+
60 DescribeCluster 0-2 flex0
  include_cluster_authorized_operations bool
  endpoint_type i8 1+
  include_fenced_brokers bool 2+
61 DescribeProducers 0 flex0
  topics [TopicRequest]
  .TopicRequest
    name str
    partition_indexes [i32]
65 DescribeTransactions 0 flex0
  transactional_ids [str]
66 ListTransactions 0-2 flex0
  state_filters [str]
  producer_id_filters [i64]
  duration_filter i64 1+
  transactional_id_pattern str 2+
64 UnregisterBroker 0 flex0
  broker_id i32
68 ConsumerGroupHeartbeat 0-1 flex0
  group_id str
  member_id str
  member_epoch i32
  instance_id str
  rack_id str
  rebalance_timeout_ms i32
  subscribed_topic_names [str]
  subscribed_topic_regex str 1+
  server_assignor str
  topic_partitions [TopicPartitions]
  .TopicPartitions
    topic_id uuid
    partitions [i32]
69 ConsumerGroupDescribe 0-1 flex0
  group_ids [str]
  include_authorized_operations bool
71 GetTelemetrySubscriptions 0 flex0
  client_instance_id uuid
72 PushTelemetry 0 flex0
  client_instance_id uuid
  subscription_id i32
  terminating bool
  compression_type i8
  metrics bytes
74 ListConfigResources 0-1 flex0
  resource_types [i8] 1+
75 DescribeTopicPartitions 0 flex0
  topics [TopicRequest]
  response_partition_limit i32
  cursor ?Cursor
  .Cursor
    topic_name str
    partition_index i32
  .TopicRequest
    name str
76 ShareGroupHeartbeat 1 flex1
  group_id str
  member_id str
  member_epoch i32
  rack_id str
  subscribed_topic_names [str]
77 ShareGroupDescribe 1 flex1
  group_ids [str]
  include_authorized_operations bool
78 ShareFetch 1 flex1
  group_id str
  member_id str
  share_session_epoch i32
  max_wait_ms i32
  min_bytes i32
  max_bytes i32
  max_records i32
  batch_size i32
  topics [FetchTopic]
  forgotten_topics_data [ForgottenTopic]
  .AcknowledgementBatch
    first_offset i64
    last_offset i64
    acknowledge_types [i8]
  .FetchPartition
    partition_index i32
    acknowledgement_batches [AcknowledgementBatch]
  .FetchTopic
    topic_id uuid
    partitions [FetchPartition]
  .ForgottenTopic
    topic_id uuid
    partitions [i32]
79 ShareAcknowledge 1 flex1
  group_id str
  member_id str
  share_session_epoch i32
  topics [AcknowledgeTopic]
  .AcknowledgePartition
    partition_index i32
    acknowledgement_batches [AcknowledgementBatch]
  .AcknowledgeTopic
    topic_id uuid
    partitions [AcknowledgePartition]
  .AcknowledgementBatch
    first_offset i64
    last_offset i64
    acknowledge_types [i8]
90 DescribeShareGroupOffsets 0 flex0
  groups [Group]
  .Group
    group_id str
    topics [Topic]
  .Topic
    topic_name str
    partitions [i32]
91 AlterShareGroupOffsets 0 flex0
  group_id str
  topics [Topic]
  .Partition
    partition_index i32
    start_offset i64
  .Topic
    topic_name str
    partitions [Partition]
92 DeleteShareGroupOffsets 0 flex0
  group_id str
  topics [Topic]
  .Topic
    topic_name str
";

/// A wire type of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    /// Fixed size in bytes.
    Fixed(usize),
    Str,
    Bytes,
    Array(Box<Ty>),
    /// Index into [`Schema::structs`].
    Struct(usize),
    /// An i8 presence marker (1 = present), then the struct.
    OptStruct(usize),
}

#[derive(Debug)]
struct Field {
    name: &'static str,
    ty: Ty,
    min: i16,
    max: i16,
    tag: Option<u32>,
}

impl Field {
    fn present(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

#[derive(Debug)]
struct StructDef {
    fields: Vec<Field>,
}

#[derive(Debug)]
struct Api {
    name: &'static str,
    min: i16,
    max: i16,
    flex: Option<i16>,
    root: usize,
}

#[derive(Debug)]
struct Schema {
    apis: HashMap<i16, Api>,
    structs: Vec<StructDef>,
}

impl Schema {
    fn api(&self, key: i16, version: i16) -> Option<&Api> {
        self.apis
            .get(&key)
            .filter(|a| a.min <= version && version <= a.max)
    }
}

fn schema() -> &'static Schema {
    static PARSED: OnceLock<Schema> = OnceLock::new();
    // SCHEMA is a constant; `schema_table_parses` checks that it parses.
    PARSED.get_or_init(|| parse(SCHEMA).unwrap_or_else(|e| panic!("guard schema table: {e}")))
}

/// Parses `versions` of the table (`N`, `N+`, `N-M`) within the API's `min..=max`.
fn parse_versions(s: &str, max: i16) -> Option<(i16, i16)> {
    if let Some(lo) = s.strip_suffix('+') {
        return Some((lo.parse().ok()?, max));
    }
    if let Some((lo, hi)) = s.split_once('-') {
        return Some((lo.parse().ok()?, hi.parse().ok()?));
    }
    let v = s.parse().ok()?;
    Some((v, v))
}

fn parse(text: &'static str) -> Result<Schema, String> {
    struct PendingField {
        line: usize,
        key: i16,
        owner: usize,
        name: &'static str,
        ty: &'static str,
        min: i16,
        max: i16,
        tag: Option<u32>,
    }
    let mut apis = HashMap::new();
    let mut structs: Vec<StructDef> = Vec::new();
    let mut pending: Vec<PendingField> = Vec::new();
    // Struct names are local to their API block.
    let mut names: HashMap<(i16, &'static str), usize> = HashMap::new();
    let mut current: Option<(i16, i16, usize)> = None; // key, max version, current struct
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let err = |what: &str| format!("line {line_no} {line:?}: {what}");
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let words: Vec<&'static str> = trimmed.split_whitespace().collect();
        if indent == 0 {
            let (key, name, versions) = match words.as_slice() {
                [k, n, v, ..] => (*k, *n, *v),
                _ => return Err(err("API line needs `key Name versions`")),
            };
            let key: i16 = key.parse().map_err(|_| err("bad API key"))?;
            let (min, max) = parse_versions(versions, i16::MAX)
                .filter(|(a, b)| a <= b)
                .ok_or_else(|| err("bad versions"))?;
            let flex = match words.get(3) {
                Some(f) => Some(
                    f.strip_prefix("flex")
                        .and_then(|v| v.parse::<i16>().ok())
                        .ok_or_else(|| err("expected flexN"))?,
                ),
                None => None,
            };
            let root = structs.len();
            structs.push(StructDef { fields: Vec::new() });
            names.insert((key, name), root);
            let api = Api {
                name,
                min,
                max,
                flex,
                root,
            };
            if apis.insert(key, api).is_some() {
                return Err(err("API listed twice"));
            }
            current = Some((key, max, root));
            continue;
        }
        let Some((key, max, owner)) = current.as_mut() else {
            return Err(err("field before any API"));
        };
        if let Some(name) = trimmed.strip_prefix('.') {
            *owner = structs.len();
            structs.push(StructDef { fields: Vec::new() });
            if names.insert((*key, name), *owner).is_some() {
                return Err(err("struct listed twice"));
            }
            continue;
        }
        let (name, ty) = match words.as_slice() {
            [n, t, ..] => (*n, *t),
            _ => return Err(err("field needs `name type`")),
        };
        let (mut fmin, mut fmax, mut tag) = (apis.get(key).map_or(0, |a: &Api| a.min), *max, None);
        for w in &words[2..] {
            if let Some(t) = w.strip_prefix("tag") {
                tag = Some(t.parse().map_err(|_| err("bad tag"))?);
            } else {
                (fmin, fmax) = parse_versions(w, *max).ok_or_else(|| err("bad versions"))?;
            }
        }
        pending.push(PendingField {
            line: line_no,
            key: *key,
            owner: *owner,
            name,
            ty,
            min: fmin,
            max: fmax,
            tag,
        });
    }
    // Resolve types once every struct of every block is known.
    for f in pending {
        let ty = parse_ty(f.ty, f.key, &names)
            .ok_or_else(|| format!("line {}: unknown type {:?}", f.line, f.ty))?;
        structs[f.owner].fields.push(Field {
            name: f.name,
            ty,
            min: f.min,
            max: f.max,
            tag: f.tag,
        });
    }
    Ok(Schema { apis, structs })
}

fn parse_ty(s: &str, key: i16, names: &HashMap<(i16, &'static str), usize>) -> Option<Ty> {
    Some(match s {
        "i8" | "bool" => Ty::Fixed(1),
        "i16" | "u16" => Ty::Fixed(2),
        "i32" | "u32" => Ty::Fixed(4),
        "i64" | "f64" => Ty::Fixed(8),
        "uuid" => Ty::Fixed(16),
        "str" => Ty::Str,
        "bytes" => Ty::Bytes,
        _ => {
            if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Ty::Array(Box::new(parse_ty(inner, key, names)?))
            } else if let Some(name) = s.strip_prefix('?') {
                Ty::OptStruct(*names.get(&(key, name))?)
            } else {
                Ty::Struct(*names.get(&(key, s))?)
            }
        }
    })
}

/// A failed walk, with the path built on the way out (only on the error path).
#[derive(Debug)]
struct Fail {
    kind: FailKind,
    path: Vec<String>,
}

#[derive(Debug)]
enum FailKind {
    TooLong {
        claimed: u64,
        unit: &'static str,
        remaining: usize,
    },
    Truncated,
    BadVarint,
    TagSize {
        declared: usize,
        used: usize,
    },
}

impl Fail {
    fn new(kind: FailKind) -> Fail {
        Fail {
            kind,
            path: Vec::new(),
        }
    }

    fn under(mut self, segment: impl Into<String>) -> Fail {
        self.path.push(segment.into());
        self
    }

    fn into_error(self, api: &'static str, version: i16) -> GuardError {
        let field = join_path(self.path.iter().rev().map(String::as_str));
        match self.kind {
            FailKind::TooLong {
                claimed,
                unit,
                remaining,
            } => GuardError::TooLong {
                api,
                version,
                field,
                claimed,
                unit,
                remaining,
            },
            FailKind::Truncated => GuardError::Truncated {
                api,
                version,
                field,
            },
            FailKind::BadVarint => GuardError::BadVarint {
                api,
                version,
                field,
            },
            FailKind::TagSize { declared, used } => GuardError::TagSize {
                api,
                version,
                field,
                declared,
                used,
            },
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip(&mut self, n: usize) -> Result<(), Fail> {
        if n > self.remaining() {
            return Err(Fail::new(FailKind::Truncated));
        }
        self.pos += n;
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        let mut out = [0u8; N];
        let src = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or_else(|| Fail::new(FailKind::Truncated))?;
        out.copy_from_slice(src);
        self.pos += N;
        Ok(out)
    }

    fn uvarint(&mut self) -> Result<u32, Fail> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.take::<1>()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Fail::new(FailKind::BadVarint))
    }

    /// A length or count: classic `i16`/`i32`, or compact (varint + 1). `None` is null.
    fn length(&mut self, flexible: bool, wide: bool) -> Result<Option<u64>, Fail> {
        if flexible {
            return Ok(self.uvarint()?.checked_sub(1).map(u64::from));
        }
        let n = if wide {
            i64::from(i32::from_be_bytes(self.take::<4>()?))
        } else {
            i64::from(i16::from_be_bytes(self.take::<2>()?))
        };
        // Negative (-1 is null; others are refused by the decoder, and allocate nothing).
        Ok(u64::try_from(n).ok())
    }
}

struct Walker<'s> {
    schema: &'s Schema,
    version: i16,
    flexible: bool,
}

impl Walker<'_> {
    fn walk_struct(&self, idx: usize, cur: &mut Cursor<'_>) -> Result<(), Fail> {
        let def = &self.schema.structs[idx];
        for f in def
            .fields
            .iter()
            .filter(|f| f.tag.is_none() && f.present(self.version))
        {
            self.walk_ty(&f.ty, cur).map_err(|e| e.under(f.name))?;
        }
        if !self.flexible {
            return Ok(());
        }
        let count = cur.uvarint().map_err(|e| e.under("tagged fields"))?;
        for _ in 0..count {
            let tag = cur.uvarint().map_err(|e| e.under("tagged fields"))?;
            let size = cur.uvarint().map_err(|e| e.under(format!("tag {tag}")))? as usize;
            if size > cur.remaining() {
                return Err(Fail::new(FailKind::TooLong {
                    claimed: size as u64,
                    unit: "bytes",
                    remaining: cur.remaining(),
                })
                .under(format!("tag {tag}")));
            }
            let known = def
                .fields
                .iter()
                .find(|f| f.tag == Some(tag) && f.present(self.version));
            match known {
                Some(f) => {
                    // The crate decodes a known tagged field from the stream without bounding
                    // it by `size`: walk it within exactly `size` bytes.
                    let mut sub = Cursor {
                        buf: &cur.buf[cur.pos..cur.pos + size],
                        pos: 0,
                    };
                    self.walk_ty(&f.ty, &mut sub).map_err(|e| e.under(f.name))?;
                    if sub.pos != size {
                        return Err(Fail::new(FailKind::TagSize {
                            declared: size,
                            used: sub.pos,
                        })
                        .under(f.name));
                    }
                    cur.pos += size;
                }
                None => cur.skip(size)?,
            }
        }
        Ok(())
    }

    fn walk_ty(&self, ty: &Ty, cur: &mut Cursor<'_>) -> Result<(), Fail> {
        match ty {
            Ty::Fixed(n) => cur.skip(*n),
            Ty::Str | Ty::Bytes => {
                let Some(len) = cur.length(self.flexible, *ty == Ty::Bytes)? else {
                    return Ok(());
                };
                self.claim(cur, len, "bytes")?;
                cur.skip(len as usize)
            }
            Ty::Array(elem) => {
                let Some(count) = cur.length(self.flexible, true)? else {
                    return Ok(());
                };
                // Every element takes at least one byte: a larger count cannot be honest.
                self.claim(cur, count, "elements")?;
                for i in 0..count {
                    self.walk_ty(elem, cur)
                        .map_err(|e| e.under(format!("[{i}]")))?;
                }
                Ok(())
            }
            Ty::Struct(idx) => self.walk_struct(*idx, cur),
            Ty::OptStruct(idx) => {
                let [present] = cur.take::<1>()?;
                if present == 1 {
                    self.walk_struct(*idx, cur)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn claim(&self, cur: &Cursor<'_>, claimed: u64, unit: &'static str) -> Result<(), Fail> {
        if claimed > cur.remaining() as u64 {
            return Err(Fail::new(FailKind::TooLong {
                claimed,
                unit,
                remaining: cur.remaining(),
            }));
        }
        Ok(())
    }
}

/// Joins path segments outermost first: `topics`, `[1]`, `name` → `topics[1].name`.
fn join_path<'a>(segments: impl Iterator<Item = &'a str>) -> String {
    let mut field = String::new();
    for seg in segments {
        if !field.is_empty() && !seg.starts_with('[') {
            field.push('.');
        }
        field.push_str(seg);
    }
    if field.is_empty() {
        field.push_str("the body");
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Request;

    use crate::protocol::versions;

    /// Every request type the broker decodes: the served APIs (protocol::versions) and
    /// the ones answered with an error (handlers::unsupported_api, handlers::unserved).
    macro_rules! for_each_request {
        ($m:ident) => {
            $m!(ProduceRequest);
            $m!(FetchRequest);
            $m!(ListOffsetsRequest);
            $m!(MetadataRequest);
            $m!(OffsetCommitRequest);
            $m!(OffsetFetchRequest);
            $m!(FindCoordinatorRequest);
            $m!(JoinGroupRequest);
            $m!(HeartbeatRequest);
            $m!(LeaveGroupRequest);
            $m!(SyncGroupRequest);
            $m!(DescribeGroupsRequest);
            $m!(ListGroupsRequest);
            $m!(SaslHandshakeRequest);
            $m!(ApiVersionsRequest);
            $m!(CreateTopicsRequest);
            $m!(DeleteTopicsRequest);
            $m!(DeleteRecordsRequest);
            $m!(InitProducerIdRequest);
            $m!(OffsetForLeaderEpochRequest);
            $m!(AddPartitionsToTxnRequest);
            $m!(AddOffsetsToTxnRequest);
            $m!(EndTxnRequest);
            $m!(TxnOffsetCommitRequest);
            $m!(DescribeAclsRequest);
            $m!(CreateAclsRequest);
            $m!(DeleteAclsRequest);
            $m!(DescribeConfigsRequest);
            $m!(AlterConfigsRequest);
            $m!(AlterReplicaLogDirsRequest);
            $m!(DescribeLogDirsRequest);
            $m!(SaslAuthenticateRequest);
            $m!(CreatePartitionsRequest);
            $m!(CreateDelegationTokenRequest);
            $m!(RenewDelegationTokenRequest);
            $m!(ExpireDelegationTokenRequest);
            $m!(DescribeDelegationTokenRequest);
            $m!(DeleteGroupsRequest);
            $m!(ElectLeadersRequest);
            $m!(IncrementalAlterConfigsRequest);
            $m!(AlterPartitionReassignmentsRequest);
            $m!(ListPartitionReassignmentsRequest);
            $m!(OffsetDeleteRequest);
            $m!(DescribeClientQuotasRequest);
            $m!(AlterClientQuotasRequest);
            $m!(DescribeUserScramCredentialsRequest);
            $m!(AlterUserScramCredentialsRequest);
            $m!(DescribeQuorumRequest);
            $m!(UpdateFeaturesRequest);
            $m!(DescribeClusterRequest);
            $m!(DescribeProducersRequest);
            $m!(UnregisterBrokerRequest);
            $m!(DescribeTransactionsRequest);
            $m!(ListTransactionsRequest);
            $m!(ConsumerGroupHeartbeatRequest);
            $m!(ConsumerGroupDescribeRequest);
            $m!(GetTelemetrySubscriptionsRequest);
            $m!(PushTelemetryRequest);
            $m!(ListConfigResourcesRequest);
            $m!(DescribeTopicPartitionsRequest);
            $m!(ShareGroupHeartbeatRequest);
            $m!(ShareGroupDescribeRequest);
            $m!(ShareFetchRequest);
            $m!(ShareAcknowledgeRequest);
            $m!(DescribeShareGroupOffsetsRequest);
            $m!(AlterShareGroupOffsetsRequest);
            $m!(DeleteShareGroupOffsetsRequest);
        };
    }

    /// Writes a request of the table's structure: every array with two elements, every
    /// string and bytes value `"ab"`, every number 1, every optional struct and every known
    /// tagged field present. The `poison`-th length prefix (in write order) instead claims
    /// far more than the frame holds; its field path is recorded.
    struct Gen<'s> {
        schema: &'s Schema,
        version: i16,
        flexible: bool,
        poison: Option<usize>,
        seen: usize,
        path: Vec<String>,
        poisoned: Option<String>,
    }

    impl Gen<'_> {
        fn uvarint(out: &mut Vec<u8>, mut v: u32) {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }

        /// Writes a length prefix of `n` (or a huge one when this is the poisoned prefix).
        fn length(&mut self, out: &mut Vec<u8>, n: u32, wide: bool) {
            let poisoned = self.poison == Some(self.seen);
            self.seen += 1;
            if poisoned {
                self.poisoned = Some(join_path(self.path.iter().map(String::as_str)));
            }
            match (self.flexible, wide, poisoned) {
                (true, _, false) => Self::uvarint(out, n + 1),
                (true, _, true) => Self::uvarint(out, u32::MAX),
                (false, true, false) => out.extend_from_slice(&(n as i32).to_be_bytes()),
                (false, true, true) => out.extend_from_slice(&i32::MAX.to_be_bytes()),
                (false, false, false) => out.extend_from_slice(&(n as i16).to_be_bytes()),
                (false, false, true) => out.extend_from_slice(&i16::MAX.to_be_bytes()),
            }
        }

        fn gen_struct(&mut self, idx: usize, out: &mut Vec<u8>) {
            let schema = self.schema;
            let version = self.version;
            let def = &schema.structs[idx];
            for f in def
                .fields
                .iter()
                .filter(|f| f.tag.is_none() && f.present(version))
            {
                self.path.push(f.name.to_string());
                self.gen_ty(&f.ty, out);
                self.path.pop();
            }
            if !self.flexible {
                return;
            }
            let mut tagged: Vec<&Field> = def
                .fields
                .iter()
                .filter(|f| f.tag.is_some() && f.present(version))
                .collect();
            tagged.sort_by_key(|f| f.tag);
            Self::uvarint(out, tagged.len() as u32);
            for f in tagged {
                let mut value = Vec::new();
                self.path.push(f.name.to_string());
                self.gen_ty(&f.ty, &mut value);
                self.path.pop();
                Self::uvarint(out, f.tag.unwrap_or_default());
                Self::uvarint(out, value.len() as u32);
                out.extend_from_slice(&value);
            }
        }

        fn gen_ty(&mut self, ty: &Ty, out: &mut Vec<u8>) {
            match ty {
                Ty::Fixed(n) => {
                    out.extend(std::iter::repeat_n(0u8, n - 1));
                    out.push(1);
                }
                Ty::Str | Ty::Bytes => {
                    self.length(out, 2, *ty == Ty::Bytes);
                    out.extend_from_slice(b"ab");
                }
                Ty::Array(elem) => {
                    self.length(out, 2, true);
                    for i in 0..2 {
                        self.path.push(format!("[{i}]"));
                        self.gen_ty(elem, out);
                        self.path.pop();
                    }
                }
                Ty::Struct(idx) => self.gen_struct(*idx, out),
                Ty::OptStruct(idx) => {
                    out.push(1);
                    self.gen_struct(*idx, out);
                }
            }
        }
    }

    fn generate(key: i16, version: i16, poison: Option<usize>) -> (Vec<u8>, Option<String>) {
        let schema = schema();
        let api = schema.api(key, version).expect("api in table");
        let mut g = Gen {
            schema,
            version,
            flexible: api.flex.is_some_and(|f| version >= f),
            poison,
            seen: 0,
            path: Vec::new(),
            poisoned: None,
        };
        let mut out = Vec::new();
        g.gen_struct(api.root, &mut out);
        (out, g.poisoned)
    }

    /// Checks the table against the crate for every version `R` decodes; returns how many
    /// poisoned frames were refused.
    fn check_against_crate<R: Request + Default>() -> usize {
        let name = std::any::type_name::<R>();
        let key = R::KEY;
        let api = schema()
            .apis
            .get(&key)
            .unwrap_or_else(|| panic!("{name}: no table"));
        assert_eq!(
            (api.min, api.max),
            (R::VERSIONS.min, R::VERSIONS.max),
            "{name}: the table covers exactly the versions the crate decodes"
        );
        let mut refused = 0;
        for v in R::VERSIONS.min..=R::VERSIONS.max {
            // The crate's encoding of a default request.
            let mut buf = BytesMut::new();
            R::default()
                .encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("{name} v{v}: encode default: {e:#}"));
            assert_eq!(
                check(key, v, &buf),
                Ok(buf.len()),
                "{name} v{v}: default request walked to its end"
            );

            // A populated request: the crate must read exactly these bytes and write them
            // back unchanged, so the table and the crate agree on every field at this version.
            let (populated, _) = generate(key, v, None);
            let mut bytes = Bytes::from(populated.clone());
            let decoded = R::decode(&mut bytes, v)
                .unwrap_or_else(|e| panic!("{name} v{v}: crate decodes the populated body: {e:#}"));
            assert!(
                bytes.is_empty(),
                "{name} v{v}: crate left {} bytes of the populated body",
                bytes.len()
            );
            let mut again = BytesMut::new();
            decoded
                .encode(&mut again, v)
                .unwrap_or_else(|e| panic!("{name} v{v}: re-encode: {e:#}"));
            assert_eq!(
                &again[..],
                &populated[..],
                "{name} v{v}: crate re-encodes the populated body byte for byte"
            );
            assert_eq!(
                check(key, v, &again),
                Ok(again.len()),
                "{name} v{v}: populated request walked to its end"
            );

            // Each length prefix in turn claims too much: refused, naming that field.
            for poison in 0.. {
                let (bad, path) = generate(key, v, Some(poison));
                let Some(path) = path else { break };
                match check(key, v, &bad) {
                    Err(GuardError::TooLong { field, .. }) => {
                        assert_eq!(field, path, "{name} v{v}: refusal names the field")
                    }
                    other => panic!("{name} v{v}: huge length at {path}: {other:?}"),
                }
                refused += 1;
            }
        }
        refused
    }

    #[test]
    fn schema_table_parses() {
        let s = parse(SCHEMA).expect("parses");
        assert_eq!(s.apis.len(), 67);
    }

    #[test]
    fn table_matches_the_crate_at_every_version_and_refuses_every_huge_length() {
        let mut apis = 0;
        let mut refused = 0;
        macro_rules! one {
            ($t:ty) => {
                refused += check_against_crate::<$t>();
                apis += 1;
            };
        }
        for_each_request!(one);
        eprintln!("{apis} APIs checked, {refused} poisoned frames refused");
        assert_eq!(apis, schema().apis.len(), "every table entry is checked");
        assert!(refused > 1000, "{refused} poisoned frames refused");
    }

    #[test]
    fn every_served_version_has_a_table() {
        for key in versions::SUPPORTED_APIS {
            let (min, max) = versions::advertised(*key).expect("served");
            // Produce v0-v2 are refused without decoding (v2 is decoded as v3).
            let min = if *key == ApiKey::Produce {
                versions::PRODUCE_MIN_SERVED
            } else {
                min
            };
            for v in min..=max {
                assert!(schema().api(*key as i16, v).is_some(), "{key:?} v{v}");
            }
        }
    }

    #[test]
    fn huge_metadata_topic_counts_are_refused_classic_and_compact() {
        let classic = [0x7f, 0xff, 0xff, 0xff];
        let e = check(3, 0, &classic).expect_err("classic");
        assert_eq!(
            e.to_string(),
            "Metadata v0: topics claims 2147483647 elements but only 0 bytes remain"
        );
        // v12: compact count 0xffffffff - 1, then the request's other fields.
        let compact = [0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0, 0];
        let e = check(3, 12, &compact).expect_err("compact");
        assert!(
            matches!(&e, GuardError::TooLong { field, claimed: 4294967294, remaining: 3, .. } if field == "topics"),
            "{e}"
        );
    }

    #[test]
    fn nested_huge_counts_name_the_path() {
        // Produce v3: transactional id null, acks, timeout, one topic "t" whose partition
        // array claims a billion elements.
        let mut body = vec![0xff, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b't'];
        body.extend_from_slice(&1_000_000_000i32.to_be_bytes());
        let e = check(0, 3, &body).expect_err("nested");
        assert_eq!(
            e.to_string(),
            "Produce v3: topic_data[0].partition_data claims 1000000000 elements but only 0 bytes remain"
        );
    }

    #[test]
    fn truncated_and_unknown_bodies_are_refused() {
        assert!(matches!(
            check(3, 0, &[0, 0, 0, 1, 0]),
            Err(GuardError::Truncated { .. })
        ));
        assert_eq!(
            check(9999, 0, &[]),
            Err(GuardError::NoSchema {
                api_key: 9999,
                version: 0
            })
        );
        assert!(matches!(
            check(3, 12, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(GuardError::BadVarint { .. })
        ));
    }

    #[test]
    fn known_tagged_fields_must_fill_their_declared_size() {
        // Fetch v12 with tagged field 0 (cluster id) declaring 5 bytes but holding a
        // 1-byte string and 4 bytes of something else.
        let mut body = vec![0u8; 17]; // replica id, max wait, min bytes, max bytes, isolation
        body.extend_from_slice(&[0; 8]); // session id, epoch
        body.extend_from_slice(&[1, 1, 1]); // topics, forgotten, rack id: empty
        body.extend_from_slice(&[1, 0, 5, 2, b'x', 0, 0, 0]);
        let e = check(1, 12, &body).expect_err("tag size");
        assert!(
            matches!(
                e,
                GuardError::TagSize {
                    declared: 5,
                    used: 2,
                    ..
                }
            ),
            "{e}"
        );
    }
}
