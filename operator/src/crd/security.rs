//! Security of a MessageQueue (`spec.tls`, `spec.authentication`, `spec.users[]`,
//! `spec.networkPolicy`): encryption on the wire, who may connect, and what each user may do.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Name of the SASL user the operator itself connects as; no declared user may take it.
pub const OPERATOR_USER: &str = "sluice-operator";

/// TLS on the client listener. `{}` lets the operator generate a CA and the brokers'
/// certificate (kept in the Secrets `<name>-ca` and `<name>-tls`, renewed before they expire);
/// `secretName` uses a `kubernetes.io/tls` Secret of yours; `issuerRef` has cert-manager issue
/// the certificate. The brokers' certificate must name every broker
/// (`*.<name>-brokers.<namespace>.svc` and `.svc.<cluster domain>`) and carry both the
/// serverAuth and clientAuth usages: brokers also present it to each other.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.secretName) && has(self.issuerRef))",
        "message": "tls: set secretName or issuerRef, not both (or neither, to let the operator generate a CA)"
    }
]))]
pub struct TlsSpec {
    /// A `kubernetes.io/tls` Secret in the MessageQueue's namespace with `tls.crt`, `tls.key` and
    /// `ca.crt`. Replacing its content takes effect without restarting the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// A cert-manager issuer: the operator creates a `Certificate` named `<name>-tls` whose
    /// Secret (also `<name>-tls`) the brokers use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// A cert-manager issuer reference.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the Issuer or ClusterIssuer.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub kind: Option<String>,
    /// API group of the issuer (default `cert-manager.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub group: Option<String>,
}

/// How clients authenticate.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// `none` (anyone who reaches the port may do anything), `scram-sha-512` (SASL/SCRAM: the
    /// password never crosses the wire) or `plain` (SASL/PLAIN: the password is sent, so only
    /// with `tls`). With authentication the brokers check Kafka ACLs on every request: users
    /// may do what their `acls` allow and nothing else.
    #[serde(default, rename = "type")]
    pub type_: AuthenticationType,
}

/// SASL mechanism clients use.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum AuthenticationType {
    /// No authentication.
    #[default]
    #[serde(rename = "none")]
    None,
    /// SASL/SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// SASL/PLAIN (only with TLS).
    #[serde(rename = "plain")]
    Plain,
}

impl AuthenticationType {
    /// The Kafka `sasl.mechanism` name; None without authentication.
    pub fn sasl_mechanism(self) -> Option<&'static str> {
        match self {
            AuthenticationType::None => None,
            AuthenticationType::ScramSha512 => Some("SCRAM-SHA-512"),
            AuthenticationType::Plain => Some("PLAIN"),
        }
    }
}

/// An application user: the operator keeps its password in a Secret the application mounts and
/// its ACLs on the brokers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The SASL user name: lower-case letters, digits, '-' and '.'.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')", "message": "user name may only contain lower-case letters, digits, '-' and '.', and must start and end with a letter or digit"},
        {"rule": "self != 'sluice-operator'", "message": "the user name sluice-operator is the operator's own; choose another name"}
    ]))]
    pub name: String,
    /// The Secret holding `username`, `password`, `sasl.mechanism`, `security.protocol`,
    /// `bootstrap.servers` and (with TLS) `ca.crt`; default `<name>-user-<user>`. The operator
    /// generates the password when the Secret has none; writing a new `password` into it rotates
    /// the user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// What the user may do. Nothing is allowed that no entry allows; a `deny` wins over any
    /// `allow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub acls: Vec<UserAcl>,
    /// Byte rates the user's clients are held to, on each broker (Kafka's client quotas on the
    /// user: all its connections to one broker together). Unset: no limit. Removing a rate,
    /// or the user, removes its quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<UserQuotas>,
}

/// A user's client quotas, in bytes per second on each broker.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserQuotas {
    /// Record bytes the user may produce per second to each broker (Kafka's
    /// `producer_byte_rate`); beyond it the broker delays the user's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub producer_byte_rate: Option<i64>,
    /// Record bytes the user may fetch per second from each broker (Kafka's
    /// `consumer_byte_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consumer_byte_rate: Option<i64>,
}

/// One permission: exactly one of `queue`, `queuePrefix`, `group`, `groupPrefix`,
/// `transactionalId` and `transactionalIdPrefix`, the operations, and allow or deny.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.queue) ? 1 : 0) + (has(self.queuePrefix) ? 1 : 0) + (has(self.group) ? 1 : 0) + (has(self.groupPrefix) ? 1 : 0) + (has(self.transactionalId) ? 1 : 0) + (has(self.transactionalIdPrefix) ? 1 : 0) == 1",
        "message": "each ACL names exactly one of queue, queuePrefix, group, groupPrefix, transactionalId or transactionalIdPrefix"
    }
]))]
pub struct UserAcl {
    /// A queue (topic), by exact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub queue: Option<String>,
    /// Every queue whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub queue_prefix: Option<String>,
    /// A consumer (or share) group, by exact name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub group: Option<String>,
    /// Every group whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub group_prefix: Option<String>,
    /// A transactional id (`transactional.id` of a transactional producer, or of a Kafka
    /// Streams application with exactly-once processing), by exact name. Its producer needs
    /// `write` on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub transactional_id: Option<String>,
    /// Every transactional id that starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub transactional_id_prefix: Option<String>,
    /// Kafka operations: `read`, `write`, `create`, `delete`, `alter`, `describe`,
    /// `describeConfigs`, `alterConfigs` or `all`. `read`, `write`, `delete` and `alter` imply
    /// `describe`. A consumer needs `read` on its queue and on its group.
    #[schemars(length(min = 1, max = 9))]
    pub operations: Vec<AclOperationName>,
    /// `allow` (default) or `deny`.
    #[serde(default)]
    pub permission: AclPermissionName,
}

/// A Kafka ACL operation.
#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AclOperationName {
    /// Consume, fetch offsets, join a group.
    Read,
    /// Produce.
    Write,
    /// Create topics.
    Create,
    /// Delete topics or groups.
    Delete,
    /// Change partitions.
    Alter,
    /// Metadata, offsets, group descriptions.
    Describe,
    /// Read topic configs.
    DescribeConfigs,
    /// Change topic configs.
    AlterConfigs,
    /// Every operation.
    All,
}

/// Whether an ACL allows or denies.
#[derive(
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AclPermissionName {
    /// Allow the operations.
    #[default]
    Allow,
    /// Deny the operations, whatever else allows them.
    Deny,
}

/// A NetworkPolicy in front of the brokers.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy `<name>`: the brokers' Kafka port then admits only pods matching
    /// `clientSelector` (in the MessageQueue's namespace), the brokers themselves and the
    /// operator's namespace; the brokers' other ports only the brokers and the operator.
    #[serde(default)]
    pub enabled: bool,
    /// Client pods admitted to the Kafka port; default: pods labelled
    /// `sluice.dev/client: <name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_selector: Option<LabelSelector>,
}
