//! The request structures the guard walks: a pure table (data, no logic), one block per API,
//! transcribed from Kafka's public message definitions for every request version
//! `kafka-protocol` 0.18 decodes of every API the broker decodes. It is long because Kafka has
//! many APIs; `schema.rs` parses it and the guard's tests check every block against the crate.

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
27 WriteTxnMarkers 1 flex1
  markers [WritableTxnMarker]
  .WritableTxnMarkerTopic
    name str
    partition_indexes [i32]
  .WritableTxnMarker
    producer_id i64
    producer_epoch i16
    transaction_result bool
    topics [WritableTxnMarkerTopic]
    coordinator_epoch i32
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
