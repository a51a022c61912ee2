//! Pure builders for a MessageQueue's security: which listeners and protocols the brokers get,
//! the broker flags, the Secret volumes, the Secrets the operator generates (CA, broker
//! certificate, its own credentials, one per user), the cert-manager `Certificate` and the
//! NetworkPolicy.
//!
//! The layout, when `spec.tls` or `spec.authentication` is set:
//! - listener `CLIENT` on 9092 for applications: `SSL` (TLS only), `SASL_SSL` (TLS and
//!   authentication) or `SASL_PLAINTEXT` (authentication only);
//! - listener `INTERNAL` on 9094, `SSL` with client certificates required: the inter-broker
//!   listener, so brokers know each other by their certificates (the ACL authorizer treats the
//!   brokers' own certificate subject as a super user);
//! - the quorum port (9093) under mutual TLS;
//! - both listeners advertise the pod's DNS name, which the certificate carries
//!   (`*.<name>-brokers.<ns>.svc.<domain>`); a pod IP cannot be in a certificate.
//!
//! The certificate, key and CA reach the brokers through a Secret volume and the operator's
//! credentials through another; the brokers re-read both when they change, so a renewed
//! certificate or a new password rolls no pod. Only a change of the layout itself (the flags)
//! does, through the config hash.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec as K8sNetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use crate::builders::{
    child_meta, selector_labels, BuildConfig, Names, CLUSTER_PORT, HTTP_PORT, KAFKA_PORT,
};
use crate::crd::{
    AclOperationName, AclPermissionName, AuthenticationType, IssuerRef, MessageQueue,
    MessageQueueSpec, OPERATOR_USER,
};
use crate::error::Result;
use crate::kafka::{
    AclBinding, AclOperation, AclPatternType, AclPermission, AclResourceType, QuotasByUser,
    CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE,
};

/// Port of the `INTERNAL` (inter-broker) listener.
pub const INTERNAL_PORT: i32 = 9094;
/// Where the broker certificate Secret is mounted.
pub const TLS_DIR: &str = "/etc/sluice/tls";
/// Where the operator's credentials (the brokers' users file) are mounted.
pub const USERS_DIR: &str = "/etc/sluice/users";
/// Key of the users file in the operator credentials Secret.
pub const USERS_FILE_KEY: &str = "users";
/// Secret key of the certificate.
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the private key.
pub const TLS_KEY: &str = "tls.key";
/// Secret key of the CA certificate.
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the CA's private key (only in the operator-generated `<name>-ca`).
pub const CA_KEY: &str = "ca.key";
/// Label on client pods the default NetworkPolicy admits: `sluice.dev/client: <name>`.
pub const CLIENT_LABEL: &str = "sluice.dev/client";

/// Where the brokers' certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// The operator's own CA and certificate (`tls: {}`, or authentication without `tls`).
    Generated,
    /// The user's `kubernetes.io/tls` Secret.
    Secret(String),
    /// A cert-manager `Certificate` the operator creates.
    CertManager(IssuerRef),
}

/// The security a spec asks for; None from [`Security::of`] means plain TCP and no
/// authentication (the layout of before security existed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// TLS on the client listener.
    pub client_tls: bool,
    /// Client authentication.
    pub auth: AuthenticationType,
    /// The brokers' certificate.
    pub source: TlsSource,
}

impl Security {
    /// The security of `spec`.
    pub fn of(spec: &MessageQueueSpec) -> Option<Security> {
        let auth = spec.authentication_type();
        if spec.tls.is_none() && auth == AuthenticationType::None {
            return None;
        }
        let source = match &spec.tls {
            Some(tls) => match (&tls.secret_name, &tls.issuer_ref) {
                (Some(secret), _) => TlsSource::Secret(secret.clone()),
                (None, Some(issuer)) => TlsSource::CertManager(issuer.clone()),
                (None, None) => TlsSource::Generated,
            },
            None => TlsSource::Generated,
        };
        Some(Security {
            client_tls: spec.tls.is_some(),
            auth,
            source,
        })
    }

    /// The client listener's Kafka security protocol (`security.protocol` of clients).
    pub fn client_protocol(&self) -> &'static str {
        match (self.client_tls, self.auth) {
            (true, AuthenticationType::None) => "SSL",
            (true, _) => "SASL_SSL",
            (false, AuthenticationType::None) => "PLAINTEXT",
            (false, _) => "SASL_PLAINTEXT",
        }
    }

    /// Whether clients (and the operator) authenticate with SASL.
    pub fn sasl(&self) -> bool {
        self.auth != AuthenticationType::None
    }

    /// The Secret holding `tls.crt`, `tls.key` and `ca.crt` the brokers mount.
    pub fn tls_secret(&self, names: &Names) -> String {
        match &self.source {
            TlsSource::Secret(name) => name.clone(),
            TlsSource::Generated | TlsSource::CertManager(_) => names.tls_secret(),
        }
    }

    /// Whether the operator generates the CA and certificate itself.
    pub fn generates_certificate(&self) -> bool {
        self.source == TlsSource::Generated
    }
}

impl Names {
    /// The operator-generated CA (`ca.crt`, `ca.key`).
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.name)
    }
    /// The brokers' certificate (generated, or written by cert-manager); also the
    /// cert-manager `Certificate`'s name.
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.name)
    }
    /// The operator's own SASL credentials and the brokers' users file.
    pub fn operator_credentials_secret(&self) -> String {
        format!("{}-operator-credentials", self.name)
    }
    /// The default Secret of user `user`.
    pub fn user_secret(&self, user: &str) -> String {
        format!("{}-user-{user}", self.name)
    }
    /// The NetworkPolicy.
    pub fn network_policy(&self) -> String {
        self.name.clone()
    }
}

/// The DNS names the brokers' certificate carries: every pod under the headless Service (with
/// and without the cluster domain), and the client Service's names, so a client that checks the
/// bootstrap address's name accepts it too. The first is the subject's common name.
pub fn certificate_dns_names(names: &Names, cluster_domain: &str) -> Vec<String> {
    let headless = format!("{}.{}.svc", names.headless_service(), names.namespace);
    let client = format!("{}.{}", names.client_service(), names.namespace);
    vec![
        format!("*.{headless}.{cluster_domain}"),
        format!("*.{headless}"),
        format!("{client}.svc.{cluster_domain}"),
        format!("{client}.svc"),
        client,
        names.client_service(),
    ]
}

/// Common name of the generated CA.
pub fn ca_common_name(names: &Names) -> String {
    format!("sluice {}/{} CA", names.namespace, names.name)
}

/// The brokers' DNS name of pod `$(POD_NAME)` behind the headless Service (expanded by the
/// kubelet).
fn pod_dns_template(names: &Names, cluster_domain: &str) -> String {
    format!(
        "$(POD_NAME).{}.{}.svc.{cluster_domain}",
        names.headless_service(),
        names.namespace
    )
}

/// The listener arguments that replace `--listen` and `--advertise`.
pub fn listener_args(names: &Names, cluster_domain: &str) -> Vec<String> {
    let host = pod_dns_template(names, cluster_domain);
    vec![
        "--listeners".to_string(),
        format!("CLIENT://0.0.0.0:{KAFKA_PORT},INTERNAL://0.0.0.0:{INTERNAL_PORT}"),
        "--advertised-listeners".to_string(),
        format!("CLIENT://{host}:{KAFKA_PORT},INTERNAL://{host}:{INTERNAL_PORT}"),
    ]
}

/// The security settings as `SLUICE_*` environment variables (in the ConfigMap, so in the
/// config hash: changing the layout rolls the brokers).
pub fn broker_env(security: &Security) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set(
        "SLUICE_LISTENER_SECURITY_PROTOCOL_MAP",
        format!("CLIENT:{},INTERNAL:SSL", security.client_protocol()),
    );
    set("SLUICE_INTER_BROKER_LISTENER_NAME", "INTERNAL".to_string());
    set(
        "SLUICE_LISTENER_SSL_CLIENT_AUTH",
        "INTERNAL:required".to_string(),
    );
    set("SLUICE_CLUSTER_SECURITY_PROTOCOL", "ssl".to_string());
    set(
        "SLUICE_SSL_CERTIFICATE_FILE",
        format!("{TLS_DIR}/{TLS_CRT}"),
    );
    set("SLUICE_SSL_KEY_FILE", format!("{TLS_DIR}/{TLS_KEY}"));
    set("SLUICE_SSL_CA_FILE", format!("{TLS_DIR}/{CA_CRT}"));
    if security.sasl() {
        // The operator always signs in with SCRAM-SHA-512; PLAIN is added for users who chose it.
        let mechanisms = match security.auth {
            AuthenticationType::Plain => "SCRAM-SHA-512,PLAIN",
            _ => "SCRAM-SHA-512",
        };
        set("SLUICE_SASL_ENABLED_MECHANISMS", mechanisms.to_string());
        set(
            "SLUICE_SASL_USERS_FILE",
            format!("{USERS_DIR}/{USERS_FILE_KEY}"),
        );
        set("SLUICE_AUTHORIZER", "acl".to_string());
        set("SLUICE_SUPER_USERS", format!("User:{OPERATOR_USER}"));
    }
    env
}

fn secret_volume(name: &str, secret: String, keys: &[&str]) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: k.to_string(),
                        path: k.to_string(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            // group-readable: the broker runs as a non-root user whose group is the fsGroup
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

/// The broker pod's Secret volumes and their mounts.
pub fn volumes(security: &Security, names: &Names) -> Vec<(Volume, VolumeMount)> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let mut out = vec![(
        secret_volume(
            "tls",
            security.tls_secret(names),
            &[TLS_CRT, TLS_KEY, CA_CRT],
        ),
        mount("tls", TLS_DIR),
    )];
    if security.sasl() {
        out.push((
            secret_volume(
                "sasl-users",
                names.operator_credentials_secret(),
                &[USERS_FILE_KEY],
            ),
            mount("sasl-users", USERS_DIR),
        ));
    }
    out
}

/// The data of the operator's credentials Secret for `password`: the user name, the password
/// and the brokers' users file.
pub fn operator_credentials_data(password: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("username".to_string(), OPERATOR_USER.to_string()),
        ("password".to_string(), password.to_string()),
        (
            USERS_FILE_KEY.to_string(),
            format!("{OPERATOR_USER}:{password}\n"),
        ),
    ])
}

/// What an application needs to connect as `user`: the data of its Secret. `ca_pem` is the CA
/// clients verify the brokers with (None without client TLS).
pub fn user_secret_data(
    security: &Security,
    user: &str,
    password: &str,
    bootstrap_servers: &str,
    ca_pem: Option<&str>,
) -> BTreeMap<String, String> {
    let mechanism = security.auth.sasl_mechanism().unwrap_or("SCRAM-SHA-512");
    let module = match security.auth {
        AuthenticationType::Plain => "org.apache.kafka.common.security.plain.PlainLoginModule",
        _ => "org.apache.kafka.common.security.scram.ScramLoginModule",
    };
    let quoted = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut data = BTreeMap::from([
        ("username".to_string(), user.to_string()),
        ("password".to_string(), password.to_string()),
        ("sasl.mechanism".to_string(), mechanism.to_string()),
        (
            "security.protocol".to_string(),
            security.client_protocol().to_string(),
        ),
        (
            "bootstrap.servers".to_string(),
            bootstrap_servers.to_string(),
        ),
        (
            "sasl.jaas.config".to_string(),
            format!(
                "{module} required username=\"{}\" password=\"{}\";",
                quoted(user),
                quoted(password)
            ),
        ),
    ]);
    if let Some(ca) = ca_pem.filter(|_| security.client_tls) {
        data.insert(CA_CRT.to_string(), ca.to_string());
    }
    data
}

/// The cert-manager `Certificate` (cert-manager.io/v1) for `issuer`, as JSON for a dynamic
/// object: its Secret is `<name>-tls`, for the brokers' DNS names, for servers and clients.
pub fn cert_manager_certificate(
    names: &Names,
    cluster_domain: &str,
    issuer: &IssuerRef,
) -> serde_json::Value {
    let dns = certificate_dns_names(names, cluster_domain);
    serde_json::json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": names.tls_secret(), "namespace": names.namespace},
        "spec": {
            "secretName": names.tls_secret(),
            "commonName": dns.first(),
            "dnsNames": dns,
            "duration": "2160h",
            "renewBefore": "720h",
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"},
            "issuerRef": {
                "name": issuer.name,
                "kind": issuer.kind.clone().unwrap_or_else(|| "Issuer".to_string()),
                "group": issuer.group.clone().unwrap_or_else(|| "cert-manager.io".to_string()),
            },
        },
    })
}

fn tcp_port(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_string()),
        ..NetworkPolicyPort::default()
    }
}

/// The NetworkPolicy spec: the Kafka port admits the client pods, the brokers and the
/// operator's namespace; the other broker ports the brokers and the operator's namespace.
pub fn network_policy_spec(
    names: &Names,
    client_selector: Option<&LabelSelector>,
    operator_namespace: &str,
) -> K8sNetworkPolicySpec {
    let brokers = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(&names.name)),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                operator_namespace.to_string(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let clients = NetworkPolicyPeer {
        pod_selector: Some(client_selector.cloned().unwrap_or_else(|| LabelSelector {
            match_labels: Some(BTreeMap::from([(
                CLIENT_LABEL.to_string(),
                names.name.clone(),
            )])),
            ..LabelSelector::default()
        })),
        ..NetworkPolicyPeer::default()
    };
    K8sNetworkPolicySpec {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(&names.name)),
            ..LabelSelector::default()
        }),
        policy_types: Some(vec!["Ingress".to_string()]),
        ingress: Some(vec![
            NetworkPolicyIngressRule {
                ports: Some(vec![tcp_port(KAFKA_PORT)]),
                from: Some(vec![clients, brokers.clone(), operator.clone()]),
            },
            NetworkPolicyIngressRule {
                ports: Some(vec![
                    tcp_port(INTERNAL_PORT),
                    tcp_port(CLUSTER_PORT),
                    tcp_port(HTTP_PORT),
                ]),
                from: Some(vec![brokers, operator]),
            },
        ]),
        ..K8sNetworkPolicySpec::default()
    }
}

/// The NetworkPolicy object without metadata (the builders add it).
pub fn network_policy(
    names: &Names,
    client_selector: Option<&LabelSelector>,
    operator_namespace: &str,
) -> NetworkPolicy {
    NetworkPolicy {
        spec: Some(network_policy_spec(
            names,
            client_selector,
            operator_namespace,
        )),
        ..NetworkPolicy::default()
    }
}

/// A Secret child of `mq` named `name` holding `data` (text values), with `annotations`.
pub fn secret(
    mq: &MessageQueue,
    cfg: &BuildConfig,
    name: String,
    type_: &str,
    data: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Result<Secret> {
    let mut metadata = child_meta(mq, cfg, name)?;
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations);
    }
    Ok(Secret {
        metadata,
        type_: Some(type_.to_string()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    })
}

/// The text of `key` in `secret` (None when absent, empty or not UTF-8).
pub fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|v| !v.is_empty())
}

/// The ACL bindings `spec.users` declare, one per user, resource and operation, for the
/// principal `User:<name>` from any host.
pub fn desired_acls(spec: &MessageQueueSpec) -> Vec<AclBinding> {
    let mut out = Vec::new();
    for user in &spec.users {
        for acl in &user.acls {
            use AclPatternType::{Literal, Prefixed};
            use AclResourceType::{Group, Topic, TransactionalId};
            let named = [
                (&acl.queue, Topic, Literal),
                (&acl.queue_prefix, Topic, Prefixed),
                (&acl.group, Group, Literal),
                (&acl.group_prefix, Group, Prefixed),
                (&acl.transactional_id, TransactionalId, Literal),
                (&acl.transactional_id_prefix, TransactionalId, Prefixed),
            ];
            let Some((name, resource_type, pattern)) = named
                .into_iter()
                .find_map(|(n, t, p)| n.as_ref().map(|n| (n, t, p)))
            else {
                continue;
            };
            for op in &acl.operations {
                out.push(AclBinding {
                    resource_type,
                    resource_name: name.clone(),
                    pattern,
                    principal: principal(&user.name),
                    host: "*".to_string(),
                    operation: operation(*op),
                    permission: match acl.permission {
                        AclPermissionName::Allow => AclPermission::Allow,
                        AclPermissionName::Deny => AclPermission::Deny,
                    },
                });
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The client quotas `spec.users` declare, by user (users without any are left out).
pub fn desired_quotas(spec: &MessageQueueSpec) -> QuotasByUser {
    spec.users
        .iter()
        .filter_map(|user| {
            let q = user.quotas.as_ref()?;
            let values: BTreeMap<String, i64> = [
                (PRODUCER_BYTE_RATE, q.producer_byte_rate),
                (CONSUMER_BYTE_RATE, q.consumer_byte_rate),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect();
            (!values.is_empty()).then(|| (user.name.clone(), values))
        })
        .collect()
}

/// The Kafka principal of SASL user `user`.
pub fn principal(user: &str) -> String {
    format!("User:{user}")
}

fn operation(op: AclOperationName) -> AclOperation {
    match op {
        AclOperationName::Read => AclOperation::Read,
        AclOperationName::Write => AclOperation::Write,
        AclOperationName::Create => AclOperation::Create,
        AclOperationName::Delete => AclOperation::Delete,
        AclOperationName::Alter => AclOperation::Alter,
        AclOperationName::Describe => AclOperation::Describe,
        AclOperationName::DescribeConfigs => AclOperation::DescribeConfigs,
        AclOperationName::AlterConfigs => AclOperation::AlterConfigs,
        AclOperationName::All => AclOperation::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            name: "orders".into(),
            namespace: "shop".into(),
        }
    }

    fn secure(client_tls: bool, auth: AuthenticationType) -> Security {
        Security {
            client_tls,
            auth,
            source: TlsSource::Generated,
        }
    }

    #[test]
    fn the_certificate_names_every_pod_and_the_bootstrap_service() {
        assert_eq!(
            certificate_dns_names(&names(), "cluster.local"),
            [
                "*.orders-brokers.shop.svc.cluster.local",
                "*.orders-brokers.shop.svc",
                "orders.shop.svc.cluster.local",
                "orders.shop.svc",
                "orders.shop",
                "orders",
            ]
        );
    }

    #[test]
    fn a_user_secret_has_everything_a_client_needs() {
        let data = user_secret_data(
            &secure(true, AuthenticationType::ScramSha512),
            "app",
            "pw\"1",
            "orders.shop.svc:9092",
            Some("CA"),
        );
        assert_eq!(data["username"], "app");
        assert_eq!(data["password"], "pw\"1");
        assert_eq!(data["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(data["security.protocol"], "SASL_SSL");
        assert_eq!(data["bootstrap.servers"], "orders.shop.svc:9092");
        assert_eq!(data["ca.crt"], "CA");
        assert_eq!(
            data["sasl.jaas.config"],
            "org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"app\" password=\"pw\\\"1\";"
        );
        let no_tls = user_secret_data(
            &secure(false, AuthenticationType::ScramSha512),
            "app",
            "pw",
            "b:9092",
            Some("CA"),
        );
        assert_eq!(no_tls["security.protocol"], "SASL_PLAINTEXT");
        assert!(
            !no_tls.contains_key("ca.crt"),
            "the internal CA is no client's business"
        );
        let plain = user_secret_data(
            &secure(true, AuthenticationType::Plain),
            "app",
            "pw",
            "b:9092",
            None,
        );
        assert_eq!(plain["sasl.mechanism"], "PLAIN");
        assert!(plain["sasl.jaas.config"].contains("PlainLoginModule"));
    }

    #[test]
    fn declared_quotas_are_kept_per_user_and_users_without_any_left_out() {
        let spec: MessageQueueSpec = serde_yaml::from_str(
            r#"
authentication: {type: scram-sha-512}
users:
- {name: app, quotas: {producerByteRate: 1024, consumerByteRate: 2048}}
- {name: reader, quotas: {consumerByteRate: 4096}}
- {name: empty, quotas: {}}
- name: free
"#,
        )
        .expect("spec");
        let got = desired_quotas(&spec);
        let want = |kv: &[(&str, i64)]| -> BTreeMap<String, i64> {
            kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        assert_eq!(
            got,
            BTreeMap::from([
                (
                    "app".to_string(),
                    want(&[(PRODUCER_BYTE_RATE, 1024), (CONSUMER_BYTE_RATE, 2048)])
                ),
                ("reader".to_string(), want(&[(CONSUMER_BYTE_RATE, 4096)])),
            ])
        );
    }

    #[test]
    fn declared_acls_become_one_binding_per_operation() {
        let spec: MessageQueueSpec = serde_yaml::from_str(
            r#"
authentication: {type: scram-sha-512}
users:
- name: app
  acls:
  - {queue: orders, operations: [read, write]}
  - {groupPrefix: app-, operations: [read]}
  - {queuePrefix: audit., operations: [all], permission: deny}
  - {transactionalIdPrefix: app-, operations: [write]}
- name: other
"#,
        )
        .expect("spec");
        let acls = desired_acls(&spec);
        assert_eq!(acls.len(), 5);
        assert!(acls
            .iter()
            .all(|b| b.principal == "User:app" && b.host == "*"));
        assert!(acls.contains(&AclBinding {
            resource_type: AclResourceType::Topic,
            resource_name: "orders".into(),
            pattern: AclPatternType::Literal,
            principal: "User:app".into(),
            host: "*".into(),
            operation: AclOperation::Write,
            permission: AclPermission::Allow,
        }));
        assert!(acls.contains(&AclBinding {
            resource_type: AclResourceType::Group,
            resource_name: "app-".into(),
            pattern: AclPatternType::Prefixed,
            principal: "User:app".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        }));
        assert!(acls.iter().any(|b| b.resource_name == "audit."
            && b.operation == AclOperation::All
            && b.permission == AclPermission::Deny));
        assert!(acls.contains(&AclBinding {
            resource_type: AclResourceType::TransactionalId,
            resource_name: "app-".into(),
            pattern: AclPatternType::Prefixed,
            principal: "User:app".into(),
            host: "*".into(),
            operation: AclOperation::Write,
            permission: AclPermission::Allow,
        }));
    }

    #[test]
    fn the_operator_credentials_hold_the_brokers_users_file() {
        let data = operator_credentials_data("s3cret");
        assert_eq!(data["username"], OPERATOR_USER);
        assert_eq!(data[USERS_FILE_KEY], "sluice-operator:s3cret\n");
    }

    #[test]
    fn the_cert_manager_certificate_asks_for_server_and_client_use() {
        let issuer = IssuerRef {
            name: "corp-ca".into(),
            kind: Some("ClusterIssuer".into()),
            group: None,
        };
        let cert = cert_manager_certificate(&names(), "cluster.local", &issuer);
        assert_eq!(cert["apiVersion"], "cert-manager.io/v1");
        assert_eq!(cert["kind"], "Certificate");
        assert_eq!(cert["metadata"]["name"], "orders-tls");
        assert_eq!(cert["spec"]["secretName"], "orders-tls");
        assert_eq!(
            cert["spec"]["dnsNames"][0],
            "*.orders-brokers.shop.svc.cluster.local"
        );
        assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
        assert_eq!(cert["spec"]["issuerRef"]["group"], "cert-manager.io");
        let usages = cert["spec"]["usages"].as_array().expect("usages");
        assert!(usages.contains(&serde_json::json!("server auth")));
        assert!(usages.contains(&serde_json::json!("client auth")));
    }

    #[test]
    fn security_of_a_spec_picks_the_certificate_source() {
        let spec = |yaml: &str| -> MessageQueueSpec { serde_yaml::from_str(yaml).expect("spec") };
        assert_eq!(Security::of(&spec("{}")), None);
        let s = Security::of(&spec("{tls: {issuerRef: {name: ca}}}")).expect("secure");
        assert!(matches!(s.source, TlsSource::CertManager(_)));
        assert_eq!(s.tls_secret(&names()), "orders-tls");
        let s = Security::of(&spec("{tls: {secretName: mine}}")).expect("secure");
        assert_eq!(s.tls_secret(&names()), "mine");
        assert!(!s.generates_certificate());
        let s = Security::of(&spec("{authentication: {type: scram-sha-512}}")).expect("secure");
        assert!(s.generates_certificate() && !s.client_tls && s.sasl());
    }
}
