//! The `MessageQueue` custom resource (`sluice.dev/v1alpha1`).
//!
//! The CRD YAML in `crds/` is generated from these types by `sluice-operator crd`; a test fails
//! when the committed file drifts. Doc comments become the field descriptions shown by
//! `kubectl explain`, so they are written for the person filling in a manifest.
//!
//! Validation lives in two places on purpose: the CEL rules below (the API server refuses a bad
//! manifest at `kubectl apply` time, including the transition rules that compare with the old
//! object), and `validate::validate_spec`, which re-checks the rules that need no old object so a
//! spec written before a rule existed is reported on status instead of crashing a build.
//!
//! `reference.rs` turns the same schema into `docs/crd-reference.md`. This module imports
//! nothing from the rest of the operator; everything else imports it.

mod queue;
mod reference;
mod security;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use queue::{
    Delivery, Queue, QueueConfig, QueueType, DEAD_LETTER_CONFIG, DELIVERY_LIMIT_CONFIG,
    LOCK_DURATION_CONFIG, START_CONFIG,
};
pub use reference::{reference_markdown, UPSTREAM_TYPED_FIELDS};
pub use security::{
    AclOperationName, AclPermissionName, Authentication, AuthenticationType, IssuerRef,
    NetworkPolicySpec, TlsSpec, User, UserAcl, UserQuotas, OPERATOR_USER,
};

/// API group of the resource.
pub const GROUP: &str = "sluice.dev";
/// Annotation that pauses reconciliation like `spec.paused`.
pub const PAUSED_ANNOTATION: &str = "sluice.dev/paused";

/// A MessageQueue is one Kafka-compatible Sluice broker cluster together with the queues (topics)
/// declared on it. The operator creates the StatefulSet, Services, ConfigMap and
/// PodDisruptionBudget, keeps the declared queues in place, scales, heals and upgrades the brokers.
// The printcolumn entries repeat `type_ = ...` by design; clippy reads them as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "MessageQueue",
    plural = "messagequeues",
    shortname = "mq",
    category = "sluice",
    namespaced,
    status = "MessageQueueStatus",
    derive = "PartialEq",
    doc = "A Sluice message queue service: a Kafka-compatible broker cluster and its declared queues.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "Desired number of brokers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Brokers that are ready"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.currentVersion",
        description = "Broker version every pod runs"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "Summary of the conditions"
    ),
    printcolumn(
        name = "Under-Replicated",
        type_ = "integer",
        json_path = ".status.underReplicatedPartitions",
        description = "Partitions with a replica out of sync or no leader"
    ),
    printcolumn(
        name = "Auth",
        type_ = "string",
        json_path = ".spec.authentication.type",
        description = "Client authentication (empty: none)",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.queues) || self.queues.all(q, !has(q.replicationFactor) || q.replicationFactor <= self.replicas)",
        "message": "every queue's replicationFactor must be at most spec.replicas: lower the queue's replicationFactor or raise replicas",
        "fieldPath": ".queues"
    },
    {
        "rule": "!has(self.config) || !has(self.config.defaultReplicationFactor) || self.config.defaultReplicationFactor <= self.replicas",
        "message": "config.defaultReplicationFactor must be at most spec.replicas: lower it or raise replicas",
        "fieldPath": ".config.defaultReplicationFactor"
    },
    {
        "rule": "!has(self.config) || !has(self.config.minInsyncReplicas) || self.config.minInsyncReplicas <= (has(self.config.defaultReplicationFactor) ? self.config.defaultReplicationFactor : (self.replicas >= 3 ? 3 : self.replicas))",
        "message": "config.minInsyncReplicas must be at most the default replication factor (config.defaultReplicationFactor, or when unset 3 with 3 or more replicas, else replicas), or no acks=all write could succeed: lower it",
        "fieldPath": ".config.minInsyncReplicas"
    },
    {
        "rule": "!has(self.authentication) || self.authentication.type != 'plain' || has(self.tls)",
        "message": "authentication type plain sends passwords as they are: set spec.tls, or use scram-sha-512",
        "fieldPath": ".authentication.type"
    },
    {
        "rule": "!has(self.users) || size(self.users) == 0 || (has(self.authentication) && self.authentication.type != 'none')",
        "message": "users need authentication: set spec.authentication.type to scram-sha-512 (or plain with tls)",
        "fieldPath": ".users"
    }
]))]
pub struct MessageQueueSpec {
    /// Number of broker pods. Scaling up happens at once; scaling down first moves every
    /// partition copy off the brokers to be removed, and is refused when fewer brokers than a
    /// partition's replication factor would stay (see the Degraded condition).
    #[serde(default = "default_replicas")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self >= 1", "message": "replicas must be at least 1; to stop serving, delete the MessageQueue or set paused"}
    ]))]
    pub replicas: i32,

    /// Broker version to run, e.g. "0.1.0". Changing it starts a rolling upgrade, one broker at a
    /// time, highest ordinal first. Defaults to the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub version: Option<String>,

    /// Full container image override (e.g. "registry.example/sluice-broker:0.1.0"). When unset the
    /// image is the operator's broker image repository tagged with `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,

    /// Persistent storage of each broker.
    #[serde(default)]
    pub storage: Storage,

    /// Container resource requests and limits of the broker container. When unset the broker
    /// requests 100m CPU and 128Mi memory and has a 1Gi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Typed broker settings; unset fields keep the broker's defaults. Changing any of them rolls
    /// the brokers one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BrokerConfig>,

    /// Queues (Kafka topics) the operator keeps in place on the brokers. Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub queues: Vec<Queue>,

    /// What happens to a queue removed from `queues`: `Retain` leaves the topic and its data on the
    /// brokers, `Delete` deletes the topic (only topics this operator created are ever deleted).
    #[serde(default)]
    pub queue_deletion_policy: QueueDeletionPolicy,

    /// The client (bootstrap) Service.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Extra settings merged into the broker pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverrides>,

    /// PodDisruptionBudget of the broker pods.
    #[serde(default)]
    pub disruption_budget: DisruptionBudget,

    /// Keep the brokers' partition counts within one of each other by moving partitions between
    /// them (Kafka's AlterPartitionReassignments, a few at a time, only onto brokers with room
    /// for them), so new brokers take their share after a scale-up. Off by default: a move
    /// copies the partition's data from one broker to another.
    #[serde(default)]
    pub auto_rebalance: bool,

    /// TLS on the Kafka port (see `docs/operations.md`, Security). Absent: plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Client authentication; absent means `none`. With authentication (or TLS) the brokers
    /// also talk to each other over mutual TLS, with a CA the operator generates when `tls` does
    /// not give one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,

    /// Application users (need `authentication`): each gets a Secret with its password and
    /// connection settings, and the ACLs declared here. Removing a user deletes its
    /// credentials and ACLs from the brokers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub users: Vec<User>,

    /// A NetworkPolicy that admits only labelled client pods to the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,

    /// Stop reconciling: the operator changes nothing until this is false again (the annotation
    /// `sluice.dev/paused: "true"` does the same) and reports the ReconciliationPaused condition.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    3
}

/// Persistent storage of each broker pod.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// PVC size per broker, a Kubernetes quantity such as "10Gi". It may grow (if the storage class
    /// allows volume expansion) but never shrink.
    #[serde(default = "default_storage_size")]
    #[schemars(length(max = 64))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "isQuantity(self)", "message": "storage.size must be a Kubernetes quantity such as 10Gi or 500Mi"},
        {"rule": "!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0",
         "message": "storage.size cannot shrink: volumes can only grow; set it to at least the current size"}
    ]))]
    pub size: String,

    /// Storage class of the broker volumes; the cluster default when unset. Cannot change after
    /// creation (volume claim templates are immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "storage.storageClassName cannot change after creation; create a new MessageQueue to move to another class"}
    ]))]
    pub storage_class_name: Option<String>,

    /// Delete the broker PVCs (and so all data) when the MessageQueue is deleted.
    #[serde(default)]
    pub delete_claim: bool,
}

fn default_storage_size() -> String {
    "10Gi".to_string()
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            size: default_storage_size(),
            storage_class_name: None,
            delete_claim: false,
        }
    }
}

/// The largest `config.maxMessageBytes`: the brokers' default `--max-request-bytes`.
pub const MAX_MESSAGE_BYTES: i64 = 104_857_600;

/// Broker-wide settings. Each maps to one broker flag (`SLUICE_*` environment variable).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerConfig {
    /// Partitions of auto-created topics (broker default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub default_partitions: Option<i32>,
    /// Copies of each partition of a topic created without a replication factor (auto-created
    /// topics, and queues without `replicationFactor`); at most `replicas`. When unset: 3 with 3
    /// or more replicas, else `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub default_replication_factor: Option<i32>,
    /// Minimum in-sync replicas for acks=all: a write with acks=all is refused while fewer
    /// copies of its partition are in sync. At most the default replication factor. When
    /// unset: 2 when the default replication factor is 3 or more, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub min_insync_replicas: Option<i32>,
    /// How long records are kept, in milliseconds; -1 keeps them forever (broker default 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub retention_ms: Option<i64>,
    /// Maximum bytes kept per partition; -1 means no limit (broker default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -1))]
    pub retention_bytes: Option<i64>,
    /// Size of one log segment file in bytes (broker default 1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 2147483647))]
    pub segment_bytes: Option<i64>,
    /// Largest record batch the broker accepts, in bytes (broker default 1048588); at most
    /// 100 MiB, the brokers' request size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 104857600))]
    pub max_message_bytes: Option<i64>,
    /// When appended data is fsynced: `always` (before acknowledging acks=all) or `interval`
    /// (every fsyncIntervalMs; faster, may lose the last interval on power loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<Fsync>,
    /// Flush interval for `fsync: interval`, in milliseconds (broker default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub fsync_interval_ms: Option<i64>,
    /// Create a topic when a client first uses it (broker default true). Declared queues are
    /// created by the operator either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_topics: Option<bool>,
}

/// Durability mode of the broker's log.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// fsync before acknowledging acks=all.
    Always,
    /// fsync on a timer.
    Interval,
}

impl Fsync {
    /// The broker flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Interval => "interval",
        }
    }
}

/// What happens to a queue removed from `spec.queues`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum QueueDeletionPolicy {
    /// Keep the topic and its data.
    #[default]
    Retain,
    /// Delete the topic (only topics the operator created).
    Delete,
}

/// The client Service through which applications bootstrap.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type: ClusterIP, NodePort or LoadBalancer.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port of the client Service (the brokers themselves listen on 9092).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Extra annotations of the client Service (e.g. for a cloud load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn default_service_port() -> i32 {
    9092
}

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec {
            type_: ServiceType::default(),
            port: default_service_port(),
            annotations: BTreeMap::new(),
        }
    }
}

/// Kubernetes Service type of the client Service.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Service's `spec.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Settings merged into the broker pod template. The operator's own labels, the broker container's
/// command, ports and probes cannot be overridden.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Extra pod labels (the app.kubernetes.io/* labels set by the operator win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node selector of the broker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Affinity of the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the broker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Topology spread constraints of the broker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Priority class of the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Pod security context; replaces the operator's default (runAsNonRoot, uid/gid/fsGroup 65532,
    /// seccomp RuntimeDefault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// Security context of the broker container; replaces the operator's default (non-root,
    /// read-only root filesystem, no privilege escalation, all capabilities dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
}

/// PodDisruptionBudget settings.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudget {
    /// How many broker pods voluntary disruptions (node drains) may take down at once.
    #[serde(default = "default_one")]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self >= 1", "message": "disruptionBudget.maxUnavailable must be at least 1 or node drains would block forever"}
    ]))]
    pub max_unavailable: i32,
}

impl Default for DisruptionBudget {
    fn default() -> Self {
        DisruptionBudget { max_unavailable: 1 }
    }
}

/// Observed state, written by the operator.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageQueueStatus {
    /// Available, Progressing, Degraded, Replicated and ReconciliationPaused, in the standard
    /// shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The spec generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One-word summary for `kubectl get`: Creating, Running, Progressing, Degraded, Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Broker pods that exist (the scale subresource's status replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Broker pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Label selector of the broker pods (for the scale subresource and HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Version every broker pod runs; unset while versions are mixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Version the operator is moving the brokers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Bootstrap address for clients: `<name>.<namespace>.svc:<port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// State of each declared queue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueStatus>,
    /// Queues this operator created on the brokers; only these are ever deleted under
    /// queueDeletionPolicy Delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_queues: Vec<String>,
    /// Users whose credentials and ACLs this operator manages on the brokers (declared now, or
    /// removed and not yet cleaned up); ACLs of other principals are never touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_users: Vec<String>,
    /// Partitions with a replica missing from the in-sync replicas, or with no leader (the
    /// `Replicated` condition names one); unset when no broker answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated_partitions: Option<i32>,
    /// Partitions with no leader: no in-sync replica is running, so they take no reads or
    /// writes; unset when no broker answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_partitions: Option<i32>,
}

/// State of one declared queue.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Queue name.
    pub name: String,
    /// The queue exists with the declared partitions and configs.
    pub ready: bool,
    /// Partitions the queue has on the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Copies of each partition on the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// Why it is not ready, or what was last done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Records stored in the queue: the sum over its partitions of log end minus log start.
    /// Refreshed at most every `--queue-counts-interval-secs` (60 by default); unset when a
    /// partition's leader did not answer (unknown, not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<i64>,
    /// Only `type: queue`: records not yet acknowledged by its share group, the sum over
    /// partitions of log end minus the share partition's start offset; with several share
    /// groups, the largest (the group furthest behind); with none yet, every stored record (a
    /// work queue's first consumer starts at the earliest record). Includes `inFlight`. Unset
    /// when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    /// Only `type: queue`: records share consumers acquired and have not acknowledged yet,
    /// summed over the share groups reading it. Unset when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<i64>,
    /// Only `type: queue`: how many share groups read it. Unset when they could not be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_groups: Option<i32>,
    /// Only `type: stream`: records its consumer group furthest behind has not consumed, the
    /// sum over partitions of log end minus the group's committed offset (a partition the
    /// group has not committed counts whole). Unset when no consumer group reads it, or when
    /// the groups could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Only `type: stream`: how many consumer groups have committed offsets of it. Unset when
    /// they could not be listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_groups: Option<i32>,
}

impl QueueStatus {
    /// The same status without message counts (for a pass that did not read them).
    pub fn without_counts(self) -> QueueStatus {
        QueueStatus {
            messages: None,
            backlog: None,
            in_flight: None,
            share_groups: None,
            lag: None,
            consumer_groups: None,
            ..self
        }
    }
}

/// The default replication factor when `config.defaultReplicationFactor` is unset, for
/// `replicas` brokers: 3, or every broker when there are fewer.
pub fn default_replication_factor_for(replicas: i32) -> i32 {
    replicas.clamp(1, 3)
}

/// The default `min.insync.replicas` when `config.minInsyncReplicas` is unset, for a default
/// replication factor `rf`: 2 from 3 copies on (a write survives one broker loss while one
/// broker is down), else 1 (with 2 copies, 2 would stop acks=all writes whenever one broker
/// restarts).
pub fn min_insync_replicas_for(rf: i32) -> i32 {
    if rf >= 3 {
        2
    } else {
        1
    }
}

impl MessageQueueSpec {
    /// The default replication factor the brokers get: `config.defaultReplicationFactor`, or
    /// [`default_replication_factor_for`] `replicas`.
    pub fn default_replication_factor(&self) -> i32 {
        self.config
            .as_ref()
            .and_then(|c| c.default_replication_factor)
            .unwrap_or_else(|| default_replication_factor_for(self.replicas))
    }

    /// The default `min.insync.replicas` the brokers get: `config.minInsyncReplicas`, or
    /// [`min_insync_replicas_for`] the default replication factor.
    pub fn min_insync_replicas(&self) -> i32 {
        self.config
            .as_ref()
            .and_then(|c| c.min_insync_replicas)
            .unwrap_or_else(|| min_insync_replicas_for(self.default_replication_factor()))
    }

    /// The client authentication mechanism (`none` when unset).
    pub fn authentication_type(&self) -> AuthenticationType {
        self.authentication
            .as_ref()
            .map(|a| a.type_)
            .unwrap_or_default()
    }

    /// The replication factor a queue is created with: its own, or the default.
    pub fn queue_replication_factor(&self, queue: &Queue) -> i32 {
        queue
            .replication_factor
            .unwrap_or_else(|| self.default_replication_factor())
    }
}

impl MessageQueue {
    /// True when `spec.paused` or the `sluice.dev/paused: "true"` annotation is set.
    pub fn is_paused(&self) -> bool {
        self.spec.paused
            || self
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PAUSED_ANNOTATION))
                .is_some_and(|v| v == "true")
    }
}

/// The CRD as JSON, with doc-comment line wraps joined so `kubectl explain` reflows descriptions
/// itself (blank-line paragraph breaks are kept).
pub fn crd_value() -> serde_json::Value {
    use kube::CustomResourceExt;
    fn reflow(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    match (k.as_str(), child) {
                        ("description", serde_json::Value::String(text)) => {
                            *text = text
                                .split("\n\n")
                                .map(|para| {
                                    para.split('\n')
                                        .map(str::trim)
                                        .collect::<Vec<_>>()
                                        .join(" ")
                                })
                                .collect::<Vec<_>>()
                                .join("\n\n");
                        }
                        (_, child) => reflow(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(reflow),
            _ => {}
        }
    }
    // A CRD always serialises (plain data); Null would fail the drift test loudly.
    let mut value = serde_json::to_value(MessageQueue::crd()).unwrap_or_default();
    reflow(&mut value);
    value
}

fn default_one() -> i32 {
    1
}
