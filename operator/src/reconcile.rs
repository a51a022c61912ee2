//! The reconciler: fetch → validate → build → apply, wrapped in kube's `finalizer()`.
//!
//! Only this module (and the process wiring in `lib.rs`) talks to the API server and the brokers;
//! every decision is made by the pure modules (`validate`, `builders`, `scale`, `roll`, `queues`,
//! `status`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builders::{self, BuildConfig, Names, FIELD_MANAGER, HTTP_PORT, KAFKA_PORT};
use crate::crd::{MessageQueue, MessageQueueStatus, QueueStatus};
use crate::drain::{self, ClusterView, DrainPlan, RebalancePlan};
use crate::error::{Error, Result};
use crate::kafka::{
    probe_readyz, AdminClient, ClusterMetadata, ALTER_PARTITION_REASSIGNMENTS, DESCRIBE_CLUSTER,
    DESCRIBE_LOG_DIRS, LIST_PARTITION_REASSIGNMENTS, UNREGISTER_BROKER,
};
use crate::metrics::Metrics;
use crate::queues::{self, ObservedTopic, QueueAction};
use crate::roll::{self, PodView, RollInput, RollStep};
use crate::scale::{self, BrokerReport, ScaleDecision, TopicPartition};
use crate::status::{self, Observation};
use crate::validate;

/// Finalizer that runs the cleanup owner references cannot do.
pub const FINALIZER: &str = "sluice.dev/cleanup";
/// Waiting reasons that mean a container will not start by itself.
const FAILING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];
/// Restarts after which a not-ready container counts as failing even between back-offs.
const FAILING_RESTARTS: i32 = 5;
/// How long a pod may sit Pending without its PVC before the operator replaces it.
const STUCK_PENDING: Duration = Duration::from_secs(30);

/// Shared state of every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// What the builders need from the operator's settings.
    pub build: BuildConfig,
    /// Bound of every Kafka admin and /readyz call.
    pub broker_timeout: Duration,
    /// Consecutive failures per object, for the requeue backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("build", &self.build)
            .finish()
    }
}

impl Context {
    /// A context with the given client and settings.
    pub fn new(
        client: Client,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        build: BuildConfig,
    ) -> Self {
        Context {
            client,
            recorder,
            metrics,
            build,
            broker_timeout: Duration::from_secs(5),
            failures: Mutex::new(HashMap::new()),
        }
    }

    async fn publish(
        &self,
        mq: &MessageQueue,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        tracing::info!(mq = %mq.name_any(), reason, note = %note, "event");
        // kube's Recorder folds events with the same (type, reason, action, object) into one
        // series and keeps the first note; a digest of the note in `action` keeps different
        // notes apart while identical repeats still become a series.
        let digest = builders::config_hash(&BTreeMap::from([(String::new(), note.clone())]));
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(&note, 1000)),
            action: format!("{action}-{}", &digest[..8]),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &mq.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing event failed");
        }
    }

    fn backoff(&self, key: &str, failed: bool) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return Duration::from_secs(30);
        };
        if !failed {
            failures.remove(key);
            return Duration::ZERO;
        }
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        // 5s, 10s, 20s, ... capped at 5 minutes
        let secs = 5u64.saturating_mul(1u64 << (*n - 1).min(6));
        Duration::from_secs(secs.min(300))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn object_key(mq: &MessageQueue) -> String {
    format!("{}/{}", mq.namespace().unwrap_or_default(), mq.name_any())
}

/// The controller's reconcile function.
pub async fn reconcile(mq: Arc<MessageQueue>, ctx: Arc<Context>) -> Result<Action> {
    let ns = mq.namespace().ok_or(Error::MissingObjectField {
        field: "metadata.namespace",
    })?;
    let started = Instant::now();
    ctx.metrics.reconcile_started();
    let api: Api<MessageQueue> = Api::namespaced(ctx.client.clone(), &ns);
    let key = object_key(&mq);
    let result = finalizer(&api, FINALIZER, mq, |event| async {
        match event {
            FinalizerEvent::Apply(mq) => apply(&mq, &ctx).await,
            FinalizerEvent::Cleanup(mq) => cleanup(&mq, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconcile_finished(started.elapsed());
    if result.is_ok() {
        ctx.backoff(&key, false);
    }
    result
}

/// The controller's error policy: user errors wait for a change, the rest back off.
pub fn error_policy(mq: Arc<MessageQueue>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.metric_label());
    if error.is_namespace_terminating() {
        tracing::debug!(mq = %object_key(&mq), "namespace is terminating; waiting for the deletion");
        return Action::await_change();
    }
    if error.is_user_error() {
        tracing::warn!(mq = %object_key(&mq), %error, "invalid spec; waiting for a change");
        return Action::await_change();
    }
    let delay = ctx.backoff(&object_key(&mq), true);
    tracing::warn!(mq = %object_key(&mq), %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

fn ssa() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side applies `obj` and reports whether it was missing before and whether the apply
/// changed it (a no-op apply does not change the resourceVersion).
async fn apply_child<K>(api: &Api<K>, obj: &K, what: &str) -> Result<(K, ChildChange)>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let before = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::kube(format!("get {what} {name}"), e))?;
    let after = api
        .patch(&name, &ssa(), &Patch::Apply(obj))
        .await
        .map_err(|e| Error::kube(format!("apply {what} {name}"), e))?;
    let change = match before {
        None => ChildChange::Created,
        Some(b) if b.meta().resource_version != after.meta().resource_version => {
            ChildChange::Updated
        }
        Some(_) => ChildChange::Unchanged,
    };
    Ok((after, change))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildChange {
    Created,
    Updated,
    Unchanged,
}

fn pod_ordinal(pod: &Pod, sts_name: &str) -> Option<i32> {
    pod.labels()
        .get(builders::POD_INDEX_LABEL)
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            pod.name_any()
                .strip_prefix(&format!("{sts_name}-"))
                .and_then(|s| s.parse().ok())
        })
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_failing(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    for cs in statuses {
        if let Some(reason) = cs
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
        {
            if FAILING_REASONS.contains(&reason) {
                let exit = cs
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| format!(", last exit code {}", t.exit_code))
                    .unwrap_or_default();
                return Some(format!("container {} is in {reason}{exit}", cs.name));
            }
        }
        if !cs.ready && cs.restart_count >= FAILING_RESTARTS {
            return Some(format!(
                "container {} restarted {} times without becoming ready",
                cs.name, cs.restart_count
            ));
        }
    }
    None
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Everything one pass found out, for status.
#[derive(Debug, Default)]
struct PassResult {
    observation: Observation,
    queue_statuses: Vec<QueueStatus>,
    managed_queues: Vec<String>,
    current_version: Option<String>,
    pods_existing: i32,
    /// Paused: the new spec was not acted on, so observedGeneration stays where it was.
    keep_observed_generation: bool,
}

async fn apply(mq: &MessageQueue, ctx: &Context) -> Result<Action> {
    let names = Names::of(mq)?;
    let client = ctx.client.clone();
    let ns = names.namespace.clone();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let previous = mq.status.clone().unwrap_or_default();

    // fetch
    let pods = pods_api
        .list(&ListParams::default().labels(&builders::selector_string(&names.name)))
        .await
        .map_err(|e| Error::kube(format!("list pods of {}", names.name), e))?
        .items;
    let existing_sts = sts_api
        .get_opt(&names.statefulset())
        .await
        .map_err(|e| Error::kube(format!("get StatefulSet {}", names.statefulset()), e))?;

    let mut pass = PassResult::default();
    pass.observation.desired = mq.spec.replicas;
    pass.observation.max_unavailable = mq.spec.disruption_budget.max_unavailable;
    count_pods(&pods, &names, mq.spec.replicas, &mut pass);

    if mq.is_paused() {
        pass.observation.paused = true;
        pass.keep_observed_generation = true;
        pass.queue_statuses = previous.queues.clone();
        pass.managed_queues = previous.managed_queues.clone();
        if !previous
            .conditions
            .iter()
            .any(|c| c.type_ == status::PAUSED && c.status == "True")
        {
            ctx.publish(mq, EventType::Normal, "ReconciliationPaused", "Pause",
                "reconciliation paused; no changes are made until spec.paused and the sluice.dev/paused annotation are cleared".into()).await;
        }
        write_status(mq, ctx, &names, &pass).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }

    // validate
    if let Err(err) = validate::validate_spec(mq) {
        let reason = match &err {
            Error::InvalidSpec { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        if previous
            .conditions
            .iter()
            .all(|c| !(c.type_ == status::DEGRADED && c.message == reason))
        {
            ctx.publish(
                mq,
                EventType::Warning,
                "InvalidSpec",
                "Validate",
                reason.clone(),
            )
            .await;
        }
        ctx.metrics.reconcile_failed("invalid_spec");
        pass.observation.invalid_spec = Some(reason);
        pass.queue_statuses = previous.queues.clone();
        pass.managed_queues = previous.managed_queues.clone();
        write_status(mq, ctx, &names, &pass).await?;
        // the spec must change before anything else can happen
        return Ok(Action::await_change());
    }

    // build
    let existing_claim = existing_sts
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|v| v.first().cloned());
    // PVCs are created from the claim template, so they can only be smaller than the spec when
    // the spec's size differs from the template's.
    let claim_size_differs = existing_claim
        .as_ref()
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .is_some_and(|q| q.0 != mq.spec.storage.size);
    let mut children = builders::build_children(mq, &ctx.build, existing_claim)?;

    // scale-down: drain the brokers to remove first; refuse what cannot be moved
    let current_replicas = existing_sts
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    // A scale-down that finishes in this pass changes the StatefulSet and the seeds in the
    // ConfigMap after the spec was observed: that is the scale, not drift.
    let mut shrinking = false;
    if mq.spec.replicas < current_replicas {
        let outcome = scale_down(mq, ctx, &names, &pods, &previous, current_replicas).await;
        shrinking = outcome == ScaleDown::Shrink;
        if let ScaleDown::Hold { draining, refused } = outcome {
            keep_replicas(&mut children, &names, &ctx.build, current_replicas);
            if let Some(reason) = &refused {
                let already_reported = previous
                    .conditions
                    .iter()
                    .any(|c| c.type_ == status::DEGRADED && c.message == *reason);
                if !already_reported {
                    ctx.publish(
                        mq,
                        EventType::Warning,
                        "ScaleDownBlocked",
                        "Scale",
                        reason.clone(),
                    )
                    .await;
                }
            }
            pass.observation.scale_refused = refused;
            pass.observation.draining = draining;
        }
    }

    // apply
    let observed_before = previous.observed_generation;
    let spec_unchanged = observed_before.is_some() && observed_before == mq.metadata.generation;
    let (_, c) = apply_child(
        &Api::<ConfigMap>::namespaced(client.clone(), &ns),
        &children.configmap,
        "ConfigMap",
    )
    .await?;
    announce(
        ctx,
        mq,
        "ConfigMap",
        &names.configmap(),
        c,
        spec_unchanged && !shrinking,
        observed_before.is_some(),
    )
    .await;
    let (_, c) = apply_child(
        &Api::<Service>::namespaced(client.clone(), &ns),
        &children.headless_service,
        "Service",
    )
    .await?;
    announce(
        ctx,
        mq,
        "Service",
        &names.headless_service(),
        c,
        spec_unchanged,
        observed_before.is_some(),
    )
    .await;
    let (_, c) = apply_child(
        &Api::<Service>::namespaced(client.clone(), &ns),
        &children.client_service,
        "Service",
    )
    .await?;
    announce(
        ctx,
        mq,
        "Service",
        &names.client_service(),
        c,
        spec_unchanged,
        observed_before.is_some(),
    )
    .await;
    let (sts, c) = apply_child(&sts_api, &children.statefulset, "StatefulSet").await?;
    announce(
        ctx,
        mq,
        "StatefulSet",
        &names.statefulset(),
        c,
        spec_unchanged && !shrinking,
        observed_before.is_some(),
    )
    .await;
    let applied_replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    if existing_sts.is_some() && applied_replicas != current_replicas {
        ctx.publish(
            mq,
            EventType::Normal,
            "Scaled",
            "Scale",
            format!(
                "StatefulSet {} scaled from {current_replicas} to {applied_replicas} brokers",
                names.statefulset()
            ),
        )
        .await;
    }
    let (_, c) = apply_child(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
        &children.pdb,
        "PodDisruptionBudget",
    )
    .await?;
    announce(
        ctx,
        mq,
        "PodDisruptionBudget",
        &names.pdb(),
        c,
        spec_unchanged,
        observed_before.is_some(),
    )
    .await;

    if claim_size_differs {
        grow_volumes(mq, ctx, &names, applied_replicas).await?;
    }
    heal_pods(mq, ctx, &names, &pods).await?;

    // roll
    let step = plan_roll_step(ctx, &sts, &pods, &names, applied_replicas).await;
    match &step {
        RollStep::UpToDate => {}
        RollStep::Wait { reason } => pass.observation.rolling = Some(reason.clone()),
        RollStep::Delete { pod, reason } => {
            let uid = pods
                .iter()
                .find(|p| p.name_any() == *pod)
                .and_then(|p| p.metadata.uid.clone());
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid,
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match pods_api.delete(pod, &params).await {
                Ok(_) => {
                    ctx.publish(
                        mq,
                        EventType::Normal,
                        "RollingRestart",
                        "Roll",
                        reason.clone(),
                    )
                    .await;
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(Error::kube(format!("delete pod {pod}"), e)),
            }
            pass.observation.rolling = Some(reason.clone());
        }
        RollStep::Stop { pod, reason } => {
            let already_reported = previous.conditions.iter().any(|c| {
                c.type_ == status::DEGRADED && c.reason == "RollStopped" && c.message == *reason
            });
            if !already_reported {
                ctx.publish(
                    mq,
                    EventType::Warning,
                    "RollStopped",
                    "Roll",
                    reason.clone(),
                )
                .await;
            }
            tracing::warn!(pod = %pod, "roll stopped");
            pass.observation.roll_stopped = Some(reason.clone());
        }
    }

    // queues
    sync_queues(mq, ctx, &pods, &previous, &mut pass).await;

    // rebalance, only while nothing else moves brokers or partitions
    let settled = matches!(step, RollStep::UpToDate)
        && mq.spec.replicas == applied_replicas
        && current_replicas == applied_replicas
        && pass.observation.ready == mq.spec.replicas
        && pass.observation.draining.is_none()
        && pass.observation.scale_refused.is_none();
    if mq.spec.auto_rebalance && settled {
        pass.observation.rebalancing = rebalance(mq, ctx, &names, &pods).await;
    }

    write_status(mq, ctx, &names, &pass).await?;

    let requeue = if step.in_progress()
        || pass.observation.ready < mq.spec.replicas
        || pass.observation.draining.is_some()
        || pass.observation.rebalancing.is_some()
    {
        Duration::from_secs(5)
    } else if !pass.observation.queue_problems.is_empty()
        || pass.observation.scale_refused.is_some()
    {
        Duration::from_secs(30)
    } else {
        // re-check queues and brokers now and then even when nothing changes
        Duration::from_secs(120)
    };
    Ok(Action::requeue(requeue))
}

/// Keeps the StatefulSet at `replicas` (a scale-down that is not done yet), with the seeds of those
/// brokers.
fn keep_replicas(
    children: &mut builders::Children,
    names: &Names,
    build: &BuildConfig,
    replicas: i32,
) {
    if let Some(spec) = children.statefulset.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    children
        .configmap
        .data
        .get_or_insert_with(BTreeMap::new)
        .insert(
            builders::SEEDS_KEY.to_string(),
            builders::seeds(names, replicas, &build.cluster_domain),
        );
}

fn count_pods(pods: &[Pod], names: &Names, replicas: i32, pass: &mut PassResult) {
    let mut versions = BTreeSet::new();
    let mut existing = 0;
    let mut ready = 0;
    for pod in pods {
        let Some(ordinal) = pod_ordinal(pod, &names.statefulset()) else {
            continue;
        };
        if ordinal >= replicas {
            continue;
        }
        if pod.metadata.deletion_timestamp.is_none() {
            existing += 1;
        }
        if pod_ready(pod) {
            ready += 1;
        }
        versions.insert(
            pod.labels()
                .get("app.kubernetes.io/version")
                .cloned()
                .unwrap_or_default(),
        );
    }
    pass.observation.existing = existing;
    pass.observation.ready = ready;
    pass.pods_existing = existing;
    if versions.len() == 1 && existing > 0 {
        pass.current_version = versions.into_iter().next().filter(|v| !v.is_empty());
    }
}

async fn announce(
    ctx: &Context,
    mq: &MessageQueue,
    kind: &str,
    name: &str,
    change: ChildChange,
    spec_unchanged: bool,
    reconciled_before: bool,
) {
    match change {
        ChildChange::Unchanged => {}
        ChildChange::Created if !reconciled_before => {
            ctx.publish(
                mq,
                EventType::Normal,
                "Created",
                "Create",
                format!("created {kind} {name}"),
            )
            .await;
        }
        ChildChange::Created => {
            ctx.publish(
                mq,
                EventType::Warning,
                "Recreated",
                "Heal",
                format!("{kind} {name} was missing and has been recreated"),
            )
            .await;
        }
        ChildChange::Updated if spec_unchanged => {
            ctx.publish(mq, EventType::Warning, "DriftCorrected", "Heal",
                format!("{kind} {name} was changed outside the operator; the declared state was put back")).await;
        }
        ChildChange::Updated => {
            ctx.publish(
                mq,
                EventType::Normal,
                "Updated",
                "Update",
                format!("updated {kind} {name} to the new spec"),
            )
            .await;
        }
    }
}

/// What a scale-down pass decided.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScaleDown {
    /// Shrink the StatefulSet now.
    Shrink,
    /// Keep the current replicas: partitions are moving (`draining`) or something blocks
    /// (`refused`: Degraded + a Warning Event).
    Hold {
        draining: Option<String>,
        refused: Option<String>,
    },
}

fn hold_refused(reason: String) -> ScaleDown {
    ScaleDown::Hold {
        draining: None,
        refused: Some(reason),
    }
}

/// The message for a broker that does not serve an API the drain needs.
fn unsupported(pod: &str, node: i32, addr: &str, key: i16, what: &str, current: i32) -> String {
    format!(
        "broker {pod} (node {node}, {addr}) does not serve {} (Kafka API key {key}), so {what}; \
         upgrade the brokers to a version that serves it, or set replicas back to {current}",
        crate::kafka::api_name(key)
    )
}

/// One pass of a scale-down from `current` to `spec.replicas` brokers: when the brokers form one
/// cluster, move every partition off the brokers to remove (AlterPartitionReassignments, watched
/// through Metadata and ListPartitionReassignments), then unregister them (UnregisterBroker), then
/// shrink. Brokers that run as independent single nodes fall back to the guard, which lets only
/// empty brokers go.
async fn scale_down(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    previous: &MessageQueueStatus,
    current: i32,
) -> ScaleDown {
    let desired = mq.spec.replicas;
    let removed: Vec<i32> = (desired..current).collect();
    let removed_text = drain::id_list(&removed);

    // Ask the lowest ready remaining broker about the cluster.
    let asked = first_ready_broker(ctx, names, pods, desired).await;
    let Some((node, pod, mut admin)) = asked else {
        return guard(
            ctx,
            names,
            pods,
            desired,
            current,
            &format!(
                "no remaining broker (0..{}) is ready to take them",
                desired - 1
            ),
        )
        .await;
    };
    let addr = admin.addr().to_string();
    let metadata = match admin.metadata().await {
        Ok(m) => m,
        Err(e) => {
            return hold_refused(format!(
                "scale-down from {current} to {desired} waits: cannot read the cluster from broker {pod}: {e}"
            ))
        }
    };
    let clustered = metadata.brokers.keys().any(|b| *b != node)
        || admin.supports(ALTER_PARTITION_REASSIGNMENTS)
        || admin.supports(UNREGISTER_BROKER);
    if !clustered {
        return guard(
            ctx,
            names,
            pods,
            desired,
            current,
            &format!(
                "the brokers run as independent single nodes (broker {pod} knows no other broker \
                 and serves no partition moves)"
            ),
        )
        .await;
    }

    let (metadata, mut view) = match cluster_view(&mut admin).await {
        Ok(v) => v,
        Err(e) => {
            return hold_refused(format!(
                "scale-down from {current} to {desired} waits: broker {pod} (node {node}): {e}"
            ))
        }
    };
    let mut plan = drain::plan_drain(&view, desired, &removed);
    if matches!(&plan, DrainPlan::Moving { requests, .. } if !requests.is_empty()) {
        // Before anything moves: does it fit? (Asked only then, as it means a connection to
        // every broker.)
        let disks = broker_disks(ctx, names, &metadata, &view).await;
        if !disks.is_empty() {
            view = view.with_disks(disks);
            plan = drain::plan_drain(&view, desired, &removed);
        }
    }
    match plan {
        DrainPlan::Blocked { reason, .. } => hold_refused(format!(
            "scale-down from {current} to {desired} refused: {reason}"
        )),
        DrainPlan::Moving {
            requests,
            remaining,
            moving,
        } => {
            let mut draining = drain::progress(remaining, moving, &removed);
            if requests.is_empty() {
                return ScaleDown::Hold {
                    draining: Some(draining),
                    refused: None,
                };
            }
            if !admin.supports(ALTER_PARTITION_REASSIGNMENTS) {
                return hold_refused(unsupported(
                    &pod,
                    node,
                    &addr,
                    ALTER_PARTITION_REASSIGNMENTS,
                    &format!(
                        "the {remaining} partitions on brokers {removed_text} cannot be moved"
                    ),
                    current,
                ));
            }
            let moves: Vec<(TopicPartition, Vec<i32>)> = requests
                .iter()
                .map(|(tp, target)| (tp.clone(), vec![*target]))
                .collect();
            let outcomes = match admin.alter_partition_reassignments(&moves).await {
                Ok(o) => o,
                Err(e) => {
                    return hold_refused(format!(
                        "scale-down from {current} to {desired} waits: broker {pod} (node {node}) \
                         refused to move the partitions off brokers {removed_text}: {e}"
                    ))
                }
            };
            let mut accepted = Vec::new();
            let mut failed = Vec::new();
            for ((tp, result), (_, target)) in outcomes.iter().zip(&requests) {
                match result {
                    Ok(()) => accepted.push(format!("{tp} → broker {target}")),
                    Err(e) => failed.push(format!("{tp} → broker {target}: {e}")),
                }
            }
            if !accepted.is_empty() {
                ctx.publish(
                    mq,
                    EventType::Normal,
                    "Draining",
                    "Scale",
                    format!(
                        "moving {} partitions off brokers {removed_text} before scaling from \
                         {current} to {desired}: {}",
                        accepted.len(),
                        accepted.join(", ")
                    ),
                )
                .await;
            }
            if !failed.is_empty() {
                draining.push_str(&format!(
                    "; broker {pod} refused {} moves (retrying): {}",
                    failed.len(),
                    failed.join("; ")
                ));
                if !condition_says(previous, status::PROGRESSING, &draining) {
                    ctx.publish(
                        mq,
                        EventType::Warning,
                        "PartitionMoveRefused",
                        "Scale",
                        draining.clone(),
                    )
                    .await;
                }
            }
            ScaleDown::Hold {
                draining: Some(draining),
                refused: None,
            }
        }
        DrainPlan::Drained => {
            let members: Vec<i32> = removed
                .iter()
                .copied()
                .filter(|id| view.brokers.contains(id))
                .collect();
            if members.is_empty() {
                return ScaleDown::Shrink;
            }
            if !admin.supports(UNREGISTER_BROKER) {
                return hold_refused(unsupported(
                    &pod,
                    node,
                    &addr,
                    UNREGISTER_BROKER,
                    &format!(
                        "brokers {} cannot leave the cluster (their partitions are moved)",
                        drain::id_list(&members)
                    ),
                    current,
                ));
            }
            let mut refused = Vec::new();
            for id in members {
                match admin.unregister_broker(id).await {
                    Ok(()) => {
                        ctx.publish(
                            mq,
                            EventType::Normal,
                            "BrokerUnregistered",
                            "Scale",
                            format!(
                                "broker {id} (pod {}) holds no partition any more and left the cluster",
                                names.pod(id)
                            ),
                        )
                        .await;
                    }
                    Err(e) => refused.push(e.to_string()),
                }
            }
            if refused.is_empty() {
                return ScaleDown::Shrink;
            }
            let draining = format!(
                "partitions moved off brokers {removed_text}; waiting for them to leave the \
                 cluster (retrying): {}",
                refused.join("; ")
            );
            if !condition_says(previous, status::PROGRESSING, &draining) {
                ctx.publish(
                    mq,
                    EventType::Warning,
                    "BrokerRemovalRefused",
                    "Scale",
                    draining.clone(),
                )
                .await;
            }
            ScaleDown::Hold {
                draining: Some(draining),
                refused: None,
            }
        }
    }
}

/// The lowest-numbered ready broker below ordinal `below` that takes an admin connection: its
/// ordinal, pod name and the connection.
async fn first_ready_broker(
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    below: i32,
) -> Option<(i32, String, AdminClient)> {
    let mut ready: Vec<(i32, &Pod)> = pods
        .iter()
        .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((pod_ordinal(p, &names.statefulset())?, p)))
        .filter(|(o, _)| *o < below)
        .collect();
    ready.sort_by_key(|(o, _)| *o);
    for (ordinal, pod) in ready {
        let Some(ip) = pod_ip(pod) else { continue };
        match AdminClient::connect(&host_port(&ip, KAFKA_PORT), ctx.broker_timeout).await {
            Ok(admin) => return Some((ordinal, pod.name_any(), admin)),
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "broker not reachable for an admin request")
            }
        }
    }
    None
}

/// The cluster as one broker sees it: moves in flight (ListPartitionReassignments), then
/// Metadata (so a move that finishes in between shows up as done rather than as a partition
/// left behind with no move), then the registered brokers with their fencing (DescribeCluster,
/// which also lists the fenced brokers Metadata leaves out).
async fn cluster_view(
    admin: &mut AdminClient,
) -> std::result::Result<(ClusterMetadata, ClusterView), String> {
    let ongoing = if admin.supports(LIST_PARTITION_REASSIGNMENTS) {
        admin
            .list_partition_reassignments()
            .await
            .map_err(|e| format!("ListPartitionReassignments failed: {e}"))?
    } else {
        tracing::warn!(addr = %admin.addr(), "broker does not serve ListPartitionReassignments; moves are judged by Metadata alone");
        BTreeMap::new()
    };
    let metadata = admin
        .metadata()
        .await
        .map_err(|e| format!("cannot read the cluster: {e}"))?;
    let mut view = ClusterView::new(&metadata, &ongoing);
    if admin.supports(DESCRIBE_CLUSTER) {
        match admin.describe_cluster().await {
            Ok(registered) => view = view.with_registered(&registered),
            Err(e) => {
                tracing::warn!(addr = %admin.addr(), error = %e, "DescribeCluster failed; membership from Metadata")
            }
        }
    }
    Ok((metadata, view))
}

/// One pass of `spec.autoRebalance` once the brokers are settled: the next batch of moves that
/// brings their partition counts within one of each other. Returns the progress message while
/// moves are requested or in flight, None when balanced (or when the brokers cannot move
/// partitions, which is logged).
async fn rebalance(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
) -> Option<String> {
    let brokers = mq.spec.replicas;
    let (node, pod, mut admin) = first_ready_broker(ctx, names, pods, brokers).await?;
    if !admin.supports(ALTER_PARTITION_REASSIGNMENTS) {
        tracing::warn!(pod = %pod, "autoRebalance: the brokers do not serve AlterPartitionReassignments");
        return None;
    }
    let (metadata, mut view) = match cluster_view(&mut admin).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(pod = %pod, node, error = %e, "autoRebalance: cannot read the cluster");
            return None;
        }
    };
    let mut plan = drain::plan_rebalance(&view, brokers);
    if matches!(plan, RebalancePlan::Move { .. }) {
        let disks = broker_disks(ctx, names, &metadata, &view).await;
        if !disks.is_empty() {
            view = view.with_disks(disks);
            plan = drain::plan_rebalance(&view, brokers);
        }
    }
    match plan {
        RebalancePlan::Balanced => None,
        RebalancePlan::Waiting { moving } => Some(format!(
            "rebalancing: waiting for {moving} partition moves to finish"
        )),
        RebalancePlan::Move { requests, load } => {
            let moves: Vec<(TopicPartition, Vec<i32>)> = requests
                .iter()
                .map(|(tp, target)| (tp.clone(), vec![*target]))
                .collect();
            let outcomes = match admin.alter_partition_reassignments(&moves).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(pod = %pod, error = %e, "autoRebalance: moves refused");
                    return None;
                }
            };
            let accepted: Vec<String> = outcomes
                .iter()
                .zip(&requests)
                .filter(|((_, result), _)| result.is_ok())
                .map(|((tp, _), (_, target))| format!("{tp} → broker {target}"))
                .collect();
            for ((tp, result), _) in outcomes.iter().zip(&requests) {
                if let Err(e) = result {
                    tracing::warn!(partition = %tp, error = %e, "autoRebalance: move refused");
                }
            }
            if accepted.is_empty() {
                return None;
            }
            let counts: Vec<String> = load
                .iter()
                .map(|(b, n)| format!("broker {b}: {n}"))
                .collect();
            let message = format!(
                "rebalancing partitions over {brokers} brokers ({}): moving {}",
                counts.join(", "),
                accepted.join(", ")
            );
            ctx.publish(
                mq,
                EventType::Normal,
                "Rebalancing",
                "Rebalance",
                message.clone(),
            )
            .await;
            Some(message)
        }
    }
}

/// The disk of every live broker, for placing the partitions of a drain: DescribeLogDirs asked
/// of each broker (each describes only itself), and the size of its volume from its PVC. A
/// broker that cannot be asked, or does not serve DescribeLogDirs, is left out: its room is
/// unknown and not held against the scale-down.
async fn broker_disks(
    ctx: &Context,
    names: &Names,
    metadata: &ClusterMetadata,
    view: &ClusterView,
) -> BTreeMap<i32, drain::BrokerDisk> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let mut disks = BTreeMap::new();
    for (id, addr) in &metadata.brokers {
        if view.fenced.contains(id) {
            continue;
        }
        let usage = match AdminClient::connect(addr, ctx.broker_timeout).await {
            Ok(admin) if !admin.supports(DESCRIBE_LOG_DIRS) => {
                tracing::debug!(broker = id, %addr, "broker does not serve DescribeLogDirs; its room is not checked");
                continue;
            }
            Ok(mut admin) => admin.describe_log_dirs().await,
            Err(e) => Err(e),
        };
        let usage = match usage {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(broker = id, %addr, error = %e, "cannot read the broker's disk use; its room is not checked");
                continue;
            }
        };
        if !usage.failed.is_empty() {
            tracing::warn!(broker = id, failed = ?usage.failed, "broker reports failed log directories");
        }
        let claimed = match pvcs.get_opt(&names.pvc(*id)).await {
            Ok(pvc) => pvc.as_ref().and_then(claimed_bytes),
            Err(e) => {
                tracing::warn!(pvc = %names.pvc(*id), error = %e, "cannot read the broker's volume claim");
                None
            }
        };
        if let Some(disk) = drain::broker_disk(&usage, claimed) {
            disks.insert(*id, disk);
        }
    }
    disks
}

/// The size of a claimed volume: what was provisioned (status.capacity), else what was asked.
fn claimed_bytes(pvc: &PersistentVolumeClaim) -> Option<u64> {
    let provisioned = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"));
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    let q = provisioned.or(requested)?;
    validate::parse_quantity(&q.0).and_then(|n| u64::try_from(n).ok())
}

fn condition_says(status: &MessageQueueStatus, type_: &str, message: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.message == message)
}

/// The guard for brokers whose partitions cannot be moved: only empty brokers may go.
async fn guard(
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    desired: i32,
    current: i32,
    unmovable: &str,
) -> ScaleDown {
    let reports = broker_reports(ctx, names, pods, desired, current).await;
    match scale::scale_down_guard(current, desired, &reports, unmovable) {
        ScaleDecision::Proceed => ScaleDown::Shrink,
        ScaleDecision::Refuse { reason, .. } => hold_refused(reason),
    }
}

/// Asks each broker to be removed which partitions it leads.
async fn broker_reports(
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    desired: i32,
    current: i32,
) -> Vec<BrokerReport> {
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let mut reports = Vec::new();
    for ordinal in desired..current {
        let pod = pods
            .iter()
            .find(|p| pod_ordinal(p, &names.statefulset()) == Some(ordinal));
        let leads = match pod.and_then(pod_ip) {
            Some(ip) => {
                match AdminClient::connect(&host_port(&ip, KAFKA_PORT), ctx.broker_timeout).await {
                    Ok(mut admin) => admin
                        .metadata()
                        .await
                        .map(|m| m.led_by(ordinal))
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => {
                // A broker that never got a volume never held data.
                match pvc_api.get_opt(&names.pvc(ordinal)).await {
                    Ok(None) => Ok(Vec::new()),
                    Ok(Some(_)) => Err(format!(
                        "pod {} is not running, but its volume exists",
                        names.pod(ordinal)
                    )),
                    Err(e) => Err(format!("cannot read PVC {}: {e}", names.pvc(ordinal))),
                }
            }
        };
        reports.push(BrokerReport {
            node_id: ordinal,
            leads,
        });
    }
    reports
}

async fn plan_roll_step(
    ctx: &Context,
    sts: &StatefulSet,
    pods: &[Pod],
    names: &Names,
    replicas: i32,
) -> RollStep {
    let status = sts.status.as_ref();
    let update_revision = status.and_then(|s| s.update_revision.clone());
    let observed = status.and_then(|s| s.observed_generation) >= sts.metadata.generation;
    let mut views: Vec<PodView> = pods
        .iter()
        .filter_map(|p| {
            Some(PodView {
                name: p.name_any(),
                ordinal: pod_ordinal(p, &names.statefulset())?,
                revision: p.labels().get("controller-revision-hash").cloned(),
                ready: pod_ready(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
                failing: pod_failing(p),
                readyz: None,
            })
        })
        .collect();
    let rolling = views
        .iter()
        .any(|v| v.ordinal < replicas && v.revision.is_some() && v.revision != update_revision);
    if rolling {
        // Only during a roll: the operator checks the restarted brokers itself before moving on.
        for view in views
            .iter_mut()
            .filter(|v| v.ready && v.revision == update_revision)
        {
            let ip = pods
                .iter()
                .find(|p| p.name_any() == view.name)
                .and_then(pod_ip);
            view.readyz = Some(match ip {
                Some(ip) => probe_readyz(&host_port(&ip, HTTP_PORT), ctx.broker_timeout).await,
                None => false,
            });
        }
    }
    let step = roll::plan_roll(&RollInput {
        update_revision: update_revision.as_deref(),
        statefulset_observed: observed,
        replicas,
        pods: &views,
    });
    // Waiting with no out-of-date pod is creation or scaling, not a roll: Progressing says so
    // with its own reason.
    match step {
        RollStep::Wait { .. } if !rolling => RollStep::UpToDate,
        step => step,
    }
}

/// Requests volume growth on PVCs smaller than spec.storage.size.
async fn grow_volumes(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    replicas: i32,
) -> Result<()> {
    let Some(want) = validate::parse_quantity(&mq.spec.storage.size) else {
        return Ok(());
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    for ordinal in 0..replicas {
        let name = names.pvc(ordinal);
        let Some(pvc) = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("get PVC {name}"), e))?
        else {
            continue;
        };
        let have = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| validate::parse_quantity(&q.0));
        if have.is_some_and(|have| have < want) {
            let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": mq.spec.storage.size}}}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    ctx.publish(
                        mq,
                        EventType::Normal,
                        "VolumeExpansion",
                        "Resize",
                        format!("requested {} for PVC {name}", mq.spec.storage.size),
                    )
                    .await;
                }
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                    ctx.publish(mq, EventType::Warning, "VolumeExpansionRefused", "Resize",
                        format!("PVC {name} cannot grow to {}: {} (does the storage class allow volume expansion?)",
                            mq.spec.storage.size, e.message)).await;
                }
                Err(e) => return Err(Error::kube(format!("resize PVC {name}"), e)),
            }
        }
    }
    Ok(())
}

/// Pods that cannot start because their PVC or their node is gone.
async fn heal_pods(mq: &MessageQueue, ctx: &Context, names: &Names, pods: &[Pod]) -> Result<()> {
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let nodes_api: Api<Node> = Api::all(ctx.client.clone());
    let now = Timestamp::now();
    for pod in pods {
        let Some(ordinal) = pod_ordinal(pod, &names.statefulset()) else {
            continue;
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or_default();
        let age = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| now.duration_since(t.0).unsigned_abs())
            .unwrap_or_default();
        // PVC gone: the StatefulSet controller recreates a PVC only when it creates the pod.
        if phase == "Pending" && pod.metadata.deletion_timestamp.is_none() && age > STUCK_PENDING {
            let pvc = names.pvc(ordinal);
            let missing = pvc_api
                .get_opt(&pvc)
                .await
                .map_err(|e| Error::kube(format!("get PVC {pvc}"), e))?
                .is_none();
            if missing {
                delete_pod(&pods_api, pod, None).await?;
                ctx.publish(mq, EventType::Warning, "PodReplaced", "Heal",
                    format!("pod {} was stuck Pending because its volume {pvc} is gone; deleted it so the StatefulSet recreates pod and volume (the broker starts empty)", pod.name_any())).await;
                continue;
            }
        }
        // Node gone: nothing will ever stop the pod there, so force the deletion. Ready pods are
        // not checked (their kubelet just reported), which keeps the API calls per pass low.
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        if let Some(node) = node.filter(|_| !pod_ready(pod)) {
            let node_missing = match nodes_api.get_opt(&node).await {
                Ok(n) => n.is_none(),
                // without permission to read nodes, leave it to the cluster
                Err(_) => false,
            };
            if node_missing {
                delete_pod(&pods_api, pod, Some(0)).await?;
                ctx.publish(mq, EventType::Warning, "PodReplaced", "Heal",
                    format!("pod {} was bound to node {node}, which no longer exists; force-deleted it so the StatefulSet reschedules it", pod.name_any())).await;
            }
        }
    }
    Ok(())
}

async fn delete_pod(api: &Api<Pod>, pod: &Pod, grace: Option<u32>) -> Result<()> {
    let params = DeleteParams {
        grace_period_seconds: grace,
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete pod {}", pod.name_any()), e)),
    }
}

/// Applies `queues[]` through every ready broker. The brokers form one cluster, so the first
/// one does the work and the rest find nothing to do; asking each still reports a broker
/// whose view of the metadata lags or that cannot be reached.
async fn sync_queues(
    mq: &MessageQueue,
    ctx: &Context,
    pods: &[Pod],
    previous: &MessageQueueStatus,
    pass: &mut PassResult,
) {
    let desired = &mq.spec.queues;
    let managed: BTreeSet<String> = previous.managed_queues.iter().cloned().collect();
    let mut created = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    let mut problems: BTreeMap<String, String> = BTreeMap::new();
    let mut observed_for_status: Option<Vec<ObservedTopic>> = None;
    let mut ready_pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    ready_pods.sort_by_key(|p| p.name_any());
    let policy = mq.spec.queue_deletion_policy;
    let any_ready = !ready_pods.is_empty();

    for pod in ready_pods {
        let Some(ip) = pod_ip(pod) else { continue };
        let addr = host_port(&ip, KAFKA_PORT);
        let mut admin = match AdminClient::connect(&addr, ctx.broker_timeout).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "broker not reachable for queue sync");
                continue;
            }
        };
        let observed = match admin.observe_topics().await {
            Ok((_, observed)) => observed,
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), error = %e, "reading topics failed");
                continue;
            }
        };
        let plan = queues::diff_queues(desired, &observed, &managed, policy);
        for (name, problem) in plan.problems {
            problems.insert(name, problem);
        }
        let mut changed = false;
        for action in &plan.actions {
            let result = match action {
                QueueAction::Create {
                    name,
                    partitions,
                    replication_factor,
                    configs,
                } => admin
                    .create_topic(name, *partitions, *replication_factor, configs)
                    .await
                    .map(|()| {
                        created.insert(name.clone());
                        format!(
                            "created queue {name} with {partitions} partitions on {}",
                            pod.name_any()
                        )
                    }),
                QueueAction::AddPartitions { name, total } => {
                    admin.create_partitions(name, *total).await.map(|()| {
                        format!(
                            "queue {name} now has {total} partitions on {}",
                            pod.name_any()
                        )
                    })
                }
                QueueAction::AlterConfigs { name, set, delete } => admin
                    .alter_topic_configs(name, set, delete)
                    .await
                    .map(|()| {
                        format!(
                            "updated configs of queue {name} on {} (set {:?}, reset {:?})",
                            pod.name_any(),
                            set,
                            delete
                        )
                    }),
                QueueAction::Delete { name } => admin.delete_topic(name).await.map(|()| {
                    deleted.insert(name.clone());
                    format!(
                        "deleted queue {name} from {} (queueDeletionPolicy Delete)",
                        pod.name_any()
                    )
                }),
            };
            match result {
                Ok(note) => {
                    changed = true;
                    ctx.publish(mq, EventType::Normal, "QueueApplied", "Queue", note)
                        .await;
                }
                Err(e) => {
                    problems.insert(action.name().to_string(), e.to_string());
                    ctx.publish(
                        mq,
                        EventType::Warning,
                        "QueueFailed",
                        "Queue",
                        e.to_string(),
                    )
                    .await;
                }
            }
        }
        if observed_for_status.is_none() {
            let after = if changed {
                admin
                    .observe_topics()
                    .await
                    .map(|(_, o)| o)
                    .unwrap_or(observed)
            } else {
                observed
            };
            observed_for_status = Some(after);
        }
    }

    match observed_for_status {
        Some(observed) => {
            pass.queue_statuses = queues::queue_statuses(desired, &observed, &problems);
            pass.managed_queues =
                queues::next_managed(desired, &managed, &created, &deleted, policy)
                    .into_iter()
                    .collect();
        }
        None => {
            // no broker answered: keep what was known, say why
            pass.managed_queues = previous.managed_queues.clone();
            pass.queue_statuses = desired
                .iter()
                .map(|q| QueueStatus {
                    name: q.name.clone(),
                    ready: previous.queues.iter().any(|s| s.name == q.name && s.ready),
                    partitions: previous
                        .queues
                        .iter()
                        .find(|s| s.name == q.name)
                        .and_then(|s| s.partitions),
                    message: Some(if any_ready {
                        "no ready broker answered; state from the last successful check".into()
                    } else {
                        "waiting for a ready broker".into()
                    }),
                })
                .collect();
        }
    }
    pass.observation.queue_problems = pass
        .queue_statuses
        .iter()
        .filter(|q| !q.ready)
        .filter_map(|q| problems.get(&q.name).map(|p| format!("{}: {p}", q.name)))
        .collect();
}

async fn write_status(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pass: &PassResult,
) -> Result<()> {
    let previous = mq.status.clone().unwrap_or_default();
    let (conditions, phase) = status::conditions(
        &previous.conditions,
        &pass.observation,
        mq.metadata.generation,
        Timestamp::now(),
    );
    let observed_generation = if pass.keep_observed_generation {
        previous.observed_generation
    } else {
        mq.metadata.generation
    };
    let new_status = MessageQueueStatus {
        conditions,
        observed_generation,
        phase: Some(phase),
        replicas: Some(pass.pods_existing),
        ready_replicas: Some(pass.observation.ready),
        selector: Some(builders::selector_string(&names.name)),
        current_version: pass.current_version.clone(),
        target_version: Some(builders::target_version(mq, &ctx.build)),
        bootstrap_servers: Some(names.bootstrap_servers(mq.spec.service.port)),
        queues: pass.queue_statuses.clone(),
        managed_queues: pass.managed_queues.clone(),
    };
    if mq.status.as_ref() == Some(&new_status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "MessageQueue",
        "status": new_status,
    });
    let api: Api<MessageQueue> = Api::namespaced(ctx.client.clone(), &names.namespace);
    api.patch_status(&names.name, &ssa(), &Patch::Apply(&patch))
        .await
        .map_err(|e| Error::kube(format!("apply status of {}", object_key(mq)), e))?;
    Ok(())
}

/// Deletion: PVCs when deleteClaim is true. Never blocks a namespace deletion: when the namespace
/// is terminating or the API refuses, the finalizer is removed anyway.
async fn cleanup(mq: &MessageQueue, ctx: &Context) -> Result<Action> {
    let names = Names::of(mq)?;
    if !mq.spec.storage.delete_claim {
        ctx.publish(mq, EventType::Normal, "ClaimsRetained", "Delete",
            format!("MessageQueue deleted; broker volumes data-{}-* are kept (storage.deleteClaim is false)", names.name)).await;
        return Ok(Action::await_change());
    }
    let ns_api: Api<Namespace> = Api::all(ctx.client.clone());
    let terminating = matches!(
        ns_api.get_opt(&names.namespace).await,
        Ok(Some(ns)) if ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
    );
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let prefix = format!("{}-{}-", builders::DATA_VOLUME, names.name);
    let result = async {
        let pvcs = api
            .list(&ListParams::default().labels(&builders::selector_string(&names.name)))
            .await?;
        let mut deleted = Vec::new();
        for pvc in pvcs.items {
            let name = pvc.name_any();
            if !name.starts_with(&prefix) {
                continue;
            }
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted.push(name),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, kube::Error>(deleted)
    }
    .await;
    match result {
        Ok(deleted) => {
            ctx.publish(
                mq,
                EventType::Normal,
                "ClaimsDeleted",
                "Delete",
                format!(
                    "deleted broker volumes {} (storage.deleteClaim is true)",
                    deleted.join(", ")
                ),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) if terminating || matches!(&e, kube::Error::Api(r) if r.code < 500) => {
            tracing::warn!(mq = %object_key(mq), error = %e, terminating, "PVC cleanup skipped; removing the finalizer anyway");
            Ok(Action::await_change())
        }
        Err(e) => Err(Error::kube(format!("delete PVCs of {}", object_key(mq)), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod parses")
    }

    #[test]
    fn crash_looping_container_is_failing() {
        let p = pod(r#"
metadata: {name: mq-2}
status:
  containerStatuses:
  - {name: broker, ready: false, restartCount: 2, image: x, imageID: "", state: {waiting: {reason: CrashLoopBackOff}}, lastState: {terminated: {exitCode: 2}}}
"#);
        assert_eq!(
            pod_failing(&p).expect("failing"),
            "container broker is in CrashLoopBackOff, last exit code 2"
        );
    }

    #[test]
    fn many_restarts_without_ready_is_failing_but_a_running_pod_is_not() {
        let p = pod(r#"
metadata: {name: mq-2}
status:
  containerStatuses:
  - {name: broker, ready: false, restartCount: 7, image: x, imageID: "", state: {running: {}}}
"#);
        assert!(pod_failing(&p).is_some());
        let ok = pod(r#"
metadata: {name: mq-2}
status:
  conditions: [{type: Ready, status: "True"}]
  containerStatuses:
  - {name: broker, ready: true, restartCount: 0, image: x, imageID: "", state: {running: {}}}
"#);
        assert!(pod_failing(&ok).is_none());
        assert!(pod_ready(&ok));
    }

    #[test]
    fn ordinal_comes_from_the_pod_index_label_or_the_name() {
        let labelled = pod("metadata: {name: other, labels: {apps.kubernetes.io/pod-index: '4'}}");
        assert_eq!(pod_ordinal(&labelled, "mq"), Some(4));
        let named = pod("metadata: {name: mq-7}");
        assert_eq!(pod_ordinal(&named, "mq"), Some(7));
        assert_eq!(pod_ordinal(&pod("metadata: {name: unrelated}"), "mq"), None);
    }

    #[test]
    fn ipv6_pod_addresses_are_bracketed() {
        assert_eq!(host_port("10.0.0.1", 9092), "10.0.0.1:9092");
        assert_eq!(host_port("fd00::1", 9092), "[fd00::1]:9092");
    }

    #[test]
    fn long_event_notes_are_truncated_on_a_char_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1000);
        assert!(t.len() <= 1004);
        assert!(t.ends_with('…'));
    }
}
