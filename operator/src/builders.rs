//! Pure builders: a validated `MessageQueue` in, the Kubernetes objects the operator applies out.
//!
//! Nothing here talks to the API server; `reconcile` applies what these return with server-side
//! apply. Every object carries the standard labels and a controller owner reference.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort,
    ServiceSpec as K8sServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{Fsync, MessageQueue};
use crate::error::{Error, Result};
use crate::security::{self, Security, INTERNAL_PORT};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "sluice-operator";
/// Pod template annotation holding the hash of the rendered broker config.
pub const CONFIG_HASH_ANNOTATION: &str = "sluice.dev/config-hash";
/// Label the StatefulSet controller puts on each pod with its ordinal (Kubernetes >= 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Kafka port of every broker.
pub const KAFKA_PORT: i32 = 9092;
/// HTTP (health, metrics) port of every broker.
pub const HTTP_PORT: i32 = 8080;
/// Inter-broker (cluster) port of every broker.
pub const CLUSTER_PORT: i32 = 9093;
/// ConfigMap key of the seeds. It is left out of the config hash: see [`build_configmap`].
pub const SEEDS_KEY: &str = "SLUICE_SEEDS";
/// Where the broker's volume is mounted (`--data-dir`).
pub const DATA_DIR: &str = "/var/lib/sluice";
/// Name of the volume claim template (PVCs are `data-<name>-<ordinal>`).
pub const DATA_VOLUME: &str = "data";
/// Name of the broker container.
pub const BROKER_CONTAINER: &str = "broker";
/// uid/gid of the broker process (distroless "nonroot").
const BROKER_UID: i64 = 65532;

/// Settings of the operator that shape what it builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    /// Image repository of the broker; the tag is the broker version.
    pub image_repository: String,
    /// Version used when `spec.version` is unset (the operator's own version).
    pub default_version: String,
    /// DNS domain of the Kubernetes cluster (`cluster.local` unless the cluster says otherwise);
    /// the brokers' seeds are `<pod>.<headless>.<ns>.svc.<domain>`.
    pub cluster_domain: String,
    /// Namespace the operator runs in: the NetworkPolicy admits it to the brokers.
    pub operator_namespace: String,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            image_repository: "ghcr.io/sluice/sluice-broker".to_string(),
            default_version: env!("CARGO_PKG_VERSION").to_string(),
            cluster_domain: "cluster.local".to_string(),
            operator_namespace: "sluice-system".to_string(),
        }
    }
}

/// Names of the children of one MessageQueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The MessageQueue's name (also the StatefulSet, client Service and PDB name).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl Names {
    /// Names of `mq`'s children.
    pub fn of(mq: &MessageQueue) -> Result<Names> {
        let namespace = mq.namespace().ok_or(Error::MissingObjectField {
            field: "metadata.namespace",
        })?;
        if mq.metadata.name.is_none() {
            return Err(Error::MissingObjectField {
                field: "metadata.name",
            });
        }
        Ok(Names {
            name: mq.name_any(),
            namespace,
        })
    }
    /// The StatefulSet.
    pub fn statefulset(&self) -> String {
        self.name.clone()
    }
    /// The headless Service that gives each pod a stable DNS name.
    pub fn headless_service(&self) -> String {
        format!("{}-brokers", self.name)
    }
    /// The client (bootstrap) Service.
    pub fn client_service(&self) -> String {
        self.name.clone()
    }
    /// The broker ConfigMap.
    pub fn configmap(&self) -> String {
        format!("{}-config", self.name)
    }
    /// The PodDisruptionBudget.
    pub fn pdb(&self) -> String {
        self.name.clone()
    }
    /// Pod of `ordinal`.
    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.name)
    }
    /// Stable DNS name of the pod of `ordinal` behind the headless Service.
    pub fn pod_dns(&self, ordinal: i32, cluster_domain: &str) -> String {
        format!(
            "{}.{}.{}.svc.{cluster_domain}",
            self.pod(ordinal),
            self.headless_service(),
            self.namespace
        )
    }
    /// PVC of `ordinal` (StatefulSet naming: `<template>-<statefulset>-<ordinal>`).
    pub fn pvc(&self, ordinal: i32) -> String {
        format!("{DATA_VOLUME}-{}-{ordinal}", self.name)
    }
    /// Bootstrap address published in status.
    pub fn bootstrap_servers(&self, port: i32) -> String {
        format!("{}.{}.svc:{port}", self.client_service(), self.namespace)
    }
}

/// Labels that select the broker pods of one MessageQueue.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "sluice-broker".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
    ])
}

/// The label selector string of the broker pods (status.selector, for the scale subresource).
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The standard labels of every child.
pub fn labels(name: &str, version: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert("app.kubernetes.io/component".into(), "broker".into());
    labels.insert("app.kubernetes.io/part-of".into(), "sluice".into());
    labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
    labels.insert("app.kubernetes.io/version".into(), version.into());
    labels
}

/// The version the brokers should run.
pub fn target_version(mq: &MessageQueue, cfg: &BuildConfig) -> String {
    mq.spec
        .version
        .clone()
        .unwrap_or_else(|| cfg.default_version.clone())
}

/// The broker image.
pub fn image(mq: &MessageQueue, cfg: &BuildConfig) -> String {
    mq.spec
        .image
        .clone()
        .unwrap_or_else(|| format!("{}:{}", cfg.image_repository, target_version(mq, cfg)))
}

fn owner_reference(mq: &MessageQueue) -> Result<OwnerReference> {
    if mq.metadata.uid.is_none() {
        return Err(Error::MissingObjectField {
            field: "metadata.uid",
        });
    }
    mq.controller_owner_ref(&())
        .ok_or(Error::MissingObjectField {
            field: "metadata.name",
        })
}

/// Metadata of a child named `name`: namespace, the standard labels, the controller owner
/// reference.
pub fn child_meta(mq: &MessageQueue, cfg: &BuildConfig, name: String) -> Result<ObjectMeta> {
    let names = Names::of(mq)?;
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace),
        labels: Some(labels(&names.name, &target_version(mq, cfg))),
        owner_references: Some(vec![owner_reference(mq)?]),
        ..ObjectMeta::default()
    })
}

/// The broker settings as `SLUICE_*` environment variables (the broker flag contract). Only set
/// fields appear, so the broker's own defaults apply to the rest; the replication defaults
/// are the exception: unset, they follow `replicas`
/// ([`crate::crd::MessageQueueSpec::default_replication_factor`],
/// [`crate::crd::MessageQueueSpec::min_insync_replicas`]) and appear when they differ from the brokers' own
/// default of 1, so a one-broker MessageQueue renders the same settings as before replication.
///
/// Being in the config hash, a derived default that changes with `replicas` (a scale across
/// three brokers) rolls the brokers: every broker must hold the same defaults, or topics
/// created through different brokers would get different replication factors.
pub fn broker_env(mq: &MessageQueue) -> BTreeMap<String, String> {
    fn text(value: Option<impl ToString>) -> Option<String> {
        value.map(|v| v.to_string())
    }
    let c = mq.spec.config.clone().unwrap_or_default();
    let derived =
        |explicit: Option<i32>, effective: i32| explicit.or((effective != 1).then_some(effective));
    [
        ("SLUICE_DEFAULT_PARTITIONS", text(c.default_partitions)),
        (
            "SLUICE_DEFAULT_REPLICATION_FACTOR",
            text(derived(
                c.default_replication_factor,
                mq.spec.default_replication_factor(),
            )),
        ),
        (
            "SLUICE_MIN_INSYNC_REPLICAS",
            text(derived(
                c.min_insync_replicas,
                mq.spec.min_insync_replicas(),
            )),
        ),
        ("SLUICE_RETENTION_MS", text(c.retention_ms)),
        ("SLUICE_RETENTION_BYTES", text(c.retention_bytes)),
        ("SLUICE_SEGMENT_BYTES", text(c.segment_bytes)),
        ("SLUICE_MAX_MESSAGE_BYTES", text(c.max_message_bytes)),
        ("SLUICE_FSYNC", text(c.fsync.map(Fsync::as_str))),
        ("SLUICE_FSYNC_INTERVAL_MS", text(c.fsync_interval_ms)),
        ("SLUICE_AUTO_CREATE_TOPICS", text(c.auto_create_topics)),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key.to_string(), value?)))
    .chain(
        Security::of(&mq.spec)
            .map(|s| security::broker_env(&s))
            .unwrap_or_default(),
    )
    .collect()
}

/// Hash of the rendered broker config. It goes on the pod template, so a config change changes
/// the template and the operator rolls the pods. FNV-1a, written out so the value never changes
/// with a Rust or dependency upgrade (a changed hash would restart every broker).
pub fn config_hash(data: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in data {
        for byte in k.bytes().chain([0u8]).chain(v.bytes()).chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The brokers' seeds (`--seeds`, the cluster contract): every replica's cluster listener by its
/// stable name behind the headless Service, this broker's own included.
pub fn seeds(names: &Names, replicas: i32, cluster_domain: &str) -> String {
    (0..replicas.max(1))
        .map(|i| format!("{}:{CLUSTER_PORT}", names.pod_dns(i, cluster_domain)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The ConfigMap of broker settings, consumed by the pods with `envFrom`: the spec's settings
/// ([`broker_env`]) plus `SLUICE_SEEDS` for `replicas` brokers.
///
/// The seeds change with every scale, so they are kept out of the config hash on the pod template:
/// a scale must not change the template (that would roll every broker). A broker reads its seeds
/// only when it starts and uses them to find the cluster: a running broker is already a member, and
/// a broker started later (a new replica, a restart) reads the list that is current then.
pub fn build_configmap(mq: &MessageQueue, cfg: &BuildConfig, replicas: i32) -> Result<ConfigMap> {
    let names = Names::of(mq)?;
    let mut data = broker_env(mq);
    data.insert(
        SEEDS_KEY.to_string(),
        seeds(&names, replicas, &cfg.cluster_domain),
    );
    Ok(ConfigMap {
        metadata: child_meta(mq, cfg, names.configmap())?,
        data: Some(data),
        ..ConfigMap::default()
    })
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// The headless Service behind the StatefulSet: stable DNS names `<pod>.<name>-brokers`.
/// Not-ready pods are published too, so brokers can find each other while starting.
pub fn build_headless_service(mq: &MessageQueue, cfg: &BuildConfig) -> Result<Service> {
    let names = Names::of(mq)?;
    Ok(Service {
        metadata: child_meta(mq, cfg, names.headless_service())?,
        spec: Some(K8sServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&names.name)),
            ports: Some(
                [
                    port("kafka", KAFKA_PORT),
                    port("http", HTTP_PORT),
                    port("cluster", CLUSTER_PORT),
                ]
                .into_iter()
                .chain(Security::of(&mq.spec).map(|_| port("internal", INTERNAL_PORT)))
                .collect(),
            ),
            ..K8sServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The client Service that applications bootstrap from.
pub fn build_client_service(mq: &MessageQueue, cfg: &BuildConfig) -> Result<Service> {
    let names = Names::of(mq)?;
    let mut metadata = child_meta(mq, cfg, names.client_service())?;
    if !mq.spec.service.annotations.is_empty() {
        metadata.annotations = Some(mq.spec.service.annotations.clone());
    }
    let mut kafka = port("kafka", mq.spec.service.port);
    kafka.target_port = Some(IntOrString::String("kafka".to_string()));
    Ok(Service {
        metadata,
        spec: Some(K8sServiceSpec {
            type_: Some(mq.spec.service.type_.as_str().to_string()),
            selector: Some(selector_labels(&names.name)),
            ports: Some(vec![kafka]),
            ..K8sServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The PodDisruptionBudget of the brokers.
pub fn build_pdb(mq: &MessageQueue, cfg: &BuildConfig) -> Result<PodDisruptionBudget> {
    let names = Names::of(mq)?;
    Ok(PodDisruptionBudget {
        metadata: child_meta(mq, cfg, names.pdb())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(mq.spec.disruption_budget.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&names.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".to_string())),
            ("memory".to_string(), Quantity("128Mi".to_string())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("1Gi".to_string()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn default_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(BROKER_UID),
        run_as_group: Some(BROKER_UID),
        fs_group: Some(BROKER_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn default_container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The broker's command-line arguments (the broker flag contract). `$(VAR)` is expanded by the
/// kubelet from the container's env. Peers reach a broker's cluster listener by its stable DNS
/// name (`$(POD_NAME).<headless>…`), never its pod IP: the metadata quorum stores the address,
/// and recreated pods get new IPs.
pub fn broker_args(names: &Names, cluster_domain: &str) -> Vec<String> {
    let cluster_advertise = format!(
        "$(POD_NAME).{}.{}.svc.{cluster_domain}:{CLUSTER_PORT}",
        names.headless_service(),
        names.namespace
    );
    let mut args: Vec<String> = [
        "--data-dir",
        DATA_DIR,
        "--listen",
        "0.0.0.0:9092",
        "--http-listen",
        "0.0.0.0:8080",
        "--cluster-listen",
        "0.0.0.0:9093",
        "--advertise",
        "$(POD_IP):9092",
        "--node-id",
        "$(POD_INDEX)",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--cluster-advertise".to_string(), cluster_advertise]);
    args
}

/// [`broker_args`] with `--listen` and `--advertise` replaced by the two listeners of a secure
/// layout ([`security::listener_args`]).
pub fn secure_broker_args(names: &Names, cluster_domain: &str) -> Vec<String> {
    let plain = broker_args(names, cluster_domain);
    let mut args = Vec::with_capacity(plain.len() + 2);
    let mut iter = plain.into_iter();
    while let Some(arg) = iter.next() {
        if arg == "--listen" || arg == "--advertise" {
            iter.next();
            continue;
        }
        args.push(arg);
    }
    args.extend(security::listener_args(names, cluster_domain));
    args
}

/// The volume claim template for a new StatefulSet. An existing StatefulSet keeps its template
/// (Kubernetes forbids changing it); growth is applied to the PVCs directly.
pub fn claim_template(mq: &MessageQueue, cfg: &BuildConfig) -> Result<PersistentVolumeClaim> {
    let names = Names::of(mq)?;
    Ok(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_string()),
            labels: Some(labels(&names.name, &target_version(mq, cfg))),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: mq.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(mq.spec.storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

/// The broker StatefulSet. `existing_claim_template` is the template of the StatefulSet already in
/// the cluster, if any; it is kept as is because volume claim templates are immutable.
pub fn build_statefulset(
    mq: &MessageQueue,
    cfg: &BuildConfig,
    existing_claim_template: Option<PersistentVolumeClaim>,
) -> Result<StatefulSet> {
    let names = Names::of(mq)?;
    let version = target_version(mq, cfg);
    let overrides = mq.spec.pod_template.clone().unwrap_or_default();
    let secure = Security::of(&mq.spec);
    let args = match &secure {
        Some(_) => secure_broker_args(&names, &cfg.cluster_domain),
        None => broker_args(&names, &cfg.cluster_domain),
    };
    let security_volumes = secure
        .as_ref()
        .map(|s| security::volumes(s, &names))
        .unwrap_or_default();

    let mut pod_labels = overrides.labels.clone();
    pod_labels.extend(labels(&names.name, &version));
    let mut pod_annotations = overrides.annotations.clone();
    pod_annotations.insert(
        CONFIG_HASH_ANNOTATION.to_string(),
        config_hash(&broker_env(mq)),
    );

    let container = Container {
        name: BROKER_CONTAINER.to_string(),
        image: Some(image(mq, cfg)),
        args: Some(args),
        env: Some(vec![
            field_env("POD_IP", "status.podIP"),
            field_env("POD_NAME", "metadata.name"),
            field_env(
                "POD_INDEX",
                &format!("metadata.labels['{POD_INDEX_LABEL}']"),
            ),
        ]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: names.configmap(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        ports: Some(
            [
                ContainerPort {
                    name: Some("kafka".to_string()),
                    container_port: KAFKA_PORT,
                    protocol: Some("TCP".to_string()),
                    ..ContainerPort::default()
                },
                ContainerPort {
                    name: Some("http".to_string()),
                    container_port: HTTP_PORT,
                    protocol: Some("TCP".to_string()),
                    ..ContainerPort::default()
                },
                ContainerPort {
                    name: Some("cluster".to_string()),
                    container_port: CLUSTER_PORT,
                    protocol: Some("TCP".to_string()),
                    ..ContainerPort::default()
                },
            ]
            .into_iter()
            .chain(secure.as_ref().map(|_| ContainerPort {
                name: Some("internal".to_string()),
                container_port: INTERNAL_PORT,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            }))
            .collect(),
        ),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        resources: Some(mq.spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(
            overrides
                .container_security_context
                .clone()
                .unwrap_or_else(default_container_security_context),
        ),
        volume_mounts: Some(
            [
                VolumeMount {
                    name: DATA_VOLUME.to_string(),
                    mount_path: DATA_DIR.to_string(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "tmp".to_string(),
                    mount_path: "/tmp".to_string(),
                    ..VolumeMount::default()
                },
            ]
            .into_iter()
            .chain(security_volumes.iter().map(|(_, m)| m.clone()))
            .collect(),
        ),
        ..Container::default()
    };

    let none_if_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
    let pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(
            [Volume {
                name: "tmp".to_string(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]
            .into_iter()
            .chain(security_volumes.into_iter().map(|(v, _)| v))
            .collect(),
        ),
        security_context: Some(
            overrides
                .security_context
                .clone()
                .unwrap_or_else(default_pod_security_context),
        ),
        termination_grace_period_seconds: Some(60),
        automount_service_account_token: Some(false),
        node_selector: none_if_empty(&overrides.node_selector),
        affinity: overrides.affinity.clone(),
        tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
        topology_spread_constraints: (!overrides.topology_spread_constraints.is_empty())
            .then(|| overrides.topology_spread_constraints.clone()),
        priority_class_name: overrides.priority_class_name.clone(),
        ..PodSpec::default()
    };

    let claim = match existing_claim_template {
        Some(existing) => existing,
        None => claim_template(mq, cfg)?,
    };

    Ok(StatefulSet {
        metadata: child_meta(mq, cfg, names.statefulset())?,
        spec: Some(StatefulSetSpec {
            replicas: Some(mq.spec.replicas),
            service_name: Some(names.headless_service()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&names.name)),
                ..LabelSelector::default()
            },
            // The operator drives restarts itself: one broker at a time, highest ordinal first,
            // checking each restarted broker before the next.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_string()),
                ..StatefulSetUpdateStrategy::default()
            }),
            pod_management_policy: Some("Parallel".to_string()),
            // PVCs outlive the StatefulSet; the finalizer deletes them only with deleteClaim.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_string()),
                    when_scaled: Some("Retain".to_string()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

/// The NetworkPolicy of `spec.networkPolicy`, or None when it is not enabled.
pub fn build_network_policy(mq: &MessageQueue, cfg: &BuildConfig) -> Result<Option<NetworkPolicy>> {
    let Some(spec) = mq.spec.network_policy.as_ref().filter(|n| n.enabled) else {
        return Ok(None);
    };
    let names = Names::of(mq)?;
    let mut policy = security::network_policy(
        &names,
        spec.client_selector.as_ref(),
        &cfg.operator_namespace,
    );
    policy.metadata = child_meta(mq, cfg, names.network_policy())?;
    Ok(Some(policy))
}

/// Every child of one MessageQueue, ready to apply.
#[derive(Debug, Clone)]
pub struct Children {
    /// Broker settings.
    pub configmap: ConfigMap,
    /// Stable pod DNS.
    pub headless_service: Service,
    /// Bootstrap Service.
    pub client_service: Service,
    /// The brokers.
    pub statefulset: StatefulSet,
    /// Disruption budget.
    pub pdb: PodDisruptionBudget,
    /// The NetworkPolicy, when `spec.networkPolicy.enabled`.
    pub network_policy: Option<NetworkPolicy>,
}

/// Builds every child.
pub fn build_children(
    mq: &MessageQueue,
    cfg: &BuildConfig,
    existing_claim_template: Option<PersistentVolumeClaim>,
) -> Result<Children> {
    Ok(Children {
        configmap: build_configmap(mq, cfg, mq.spec.replicas)?,
        headless_service: build_headless_service(mq, cfg)?,
        client_service: build_client_service(mq, cfg)?,
        statefulset: build_statefulset(mq, cfg, existing_claim_template)?,
        pdb: build_pdb(mq, cfg)?,
        network_policy: build_network_policy(mq, cfg)?,
    })
}

#[cfg(test)]
#[path = "builders_tests.rs"]
mod tests;
