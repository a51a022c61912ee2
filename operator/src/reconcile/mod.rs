//! The reconciler: fetch → validate → build → apply, wrapped in kube's `finalizer()`.
//!
//! Only this module (and the process wiring in `lib.rs`) talks to the API server and the brokers;
//! every decision is made by the pure modules (`validate`, `builders`, `scale`, `drain`, `roll`,
//! `queues`, `status`), which never import from here.
//!
//! `apply` only puts the phases of one pass in order; each phase has its own file:
//! - `observe`: what the pods say (ordinal, readiness, failure, address); pure;
//! - `cache`: the children as the controller's watches hold them, and the apply skipped when
//!   the cached child already is what this process last applied;
//! - `children`: server-side apply of the ConfigMap, Services, StatefulSet and PDB, and the
//!   Events that say what changed;
//! - `scale_down`: the drain of the brokers to remove, the empty-broker check where partitions
//!   cannot move, and the refusals;
//! - `rebalance`: `spec.autoRebalance` once the brokers are settled;
//! - `brokers`: the admin questions the phases ask (which broker to ask, the cluster it sees,
//!   the room on each broker's disk, the partitions' replication health);
//! - `pods`: healing pods whose volume or node is gone, the next roll step, volume growth;
//! - `queue_sync`: `spec.queues` applied through the brokers;
//! - `pacing`: whether the brokers are settled and when to look again; pure;
//! - `finish`: the status write, the early stops (paused, invalid spec) and the cleanup on
//!   deletion.
//!
//! The phase files import `Context`, `PassResult` and `ssa` from this file, and `observe`,
//! `cache` and `brokers`; they do not import one another, and only this file imports `pacing`. Nothing
//! outside `reconcile` imports from here but `Context`, `reconcile` and `error_policy` (the
//! process wiring in `lib.rs`).

mod brokers;
mod cache;
mod children;
mod finish;
mod observe;
mod pacing;
mod pods;
mod queue_sync;
mod rebalance;
mod scale_down;
mod secrets;
mod users;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::{Client, Resource, ResourceExt};

use crate::builders::{self, BuildConfig, Names, FIELD_MANAGER};
use crate::crd::{MessageQueue, MessageQueueStatus, QueueStatus};
use crate::error::{Error, Result};
use crate::events::{EventType, EventWriter, Note};
use crate::kafka::{AdminClient, ClientSecurity};
use crate::metrics::Metrics;
use crate::status::Observation;
use crate::validate;

pub use cache::ChildStores;

/// Finalizer that runs the cleanup owner references cannot do.
pub const FINALIZER: &str = "sluice.dev/cleanup";

/// Shared state of every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Events (repeats folded into series).
    pub events: Arc<EventWriter>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// What the builders need from the operator's settings.
    pub build: BuildConfig,
    /// Bound of every Kafka admin and /readyz call.
    pub broker_timeout: Duration,
    /// Shortest time between two reads of a MessageQueue's queue counts (None: never read).
    pub counts_interval: Option<Duration>,
    /// When each MessageQueue's (namespace/name) queue counts were last read.
    counts_read: Mutex<HashMap<String, Instant>>,
    /// How long each watch stays open before it is opened again (`--watch-timeout-seconds`).
    pub watch_timeout_secs: u32,
    /// Consecutive failures per object, for the requeue backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// How to reach each MessageQueue's brokers (namespace/name: CA and the operator's
    /// credentials), set by the `secrets` phase of every pass. Never logged.
    admin_security: Mutex<HashMap<String, ClientSecurity>>,
    /// Digest of the password last written for each user (namespace/name/user), so a pass
    /// upserts a SCRAM credential only when the password changed.
    user_digests: Mutex<HashMap<String, String>>,
    /// What the controllers' watches of the children hold (see `cache`).
    stores: Mutex<Vec<ChildStores>>,
    /// Digest of each child this process last applied, by owning MessageQueue
    /// (namespace/name) and child (kind/name): an apply is skipped only for a child applied
    /// before in the same form (see `cache`).
    applied: Mutex<HashMap<String, HashMap<String, u64>>>,
    /// MessageQueues (namespace/name) this process knows to have no NetworkPolicy: it found
    /// none or deleted it, and has applied none since. Saves the GET of every pass.
    no_network_policy: Mutex<HashSet<String>>,
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
        events: Arc<EventWriter>,
        metrics: Arc<Metrics>,
        build: BuildConfig,
    ) -> Self {
        Context {
            client,
            events,
            metrics,
            build,
            broker_timeout: Duration::from_secs(5),
            counts_interval: Some(Duration::from_secs(60)),
            counts_read: Mutex::new(HashMap::new()),
            watch_timeout_secs: crate::DEFAULT_WATCH_TIMEOUT_SECS,
            failures: Mutex::new(HashMap::new()),
            admin_security: Mutex::new(HashMap::new()),
            user_digests: Mutex::new(HashMap::new()),
            stores: Mutex::new(Vec::new()),
            applied: Mutex::new(HashMap::new()),
            no_network_policy: Mutex::new(HashSet::new()),
        }
    }

    /// The connection security of `names`' brokers (plaintext until the `secrets` phase says).
    fn security_for(&self, names: &Names) -> ClientSecurity {
        let key = format!("{}/{}", names.namespace, names.name);
        self.admin_security
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
            .unwrap_or_default()
    }

    /// Whether this pass reads `names`' queue counts: never with counts off, else when they
    /// were not read in the last `counts_interval` (a second of slack, as the pass scheduled
    /// `counts_interval` after the last may start a moment early).
    fn counts_due(&self, names: &Names) -> bool {
        let Some(every) = self.counts_interval else {
            return false;
        };
        let key = format!("{}/{}", names.namespace, names.name);
        self.counts_read.lock().map_or(true, |m| {
            m.get(&key)
                .is_none_or(|at| at.elapsed() + Duration::from_secs(1) >= every)
        })
    }

    /// Notes that `names`' queue counts were read now (`read`), or forgets them (deleted).
    fn counts_read(&self, names: &Names, read: bool) {
        let key = format!("{}/{}", names.namespace, names.name);
        if let Ok(mut m) = self.counts_read.lock() {
            if read {
                m.insert(key, Instant::now());
            } else {
                m.remove(&key);
            }
        }
    }

    fn set_security(&self, names: &Names, security: ClientSecurity) {
        let key = format!("{}/{}", names.namespace, names.name);
        if let Ok(mut m) = self.admin_security.lock() {
            m.insert(key, security);
        }
    }

    /// Drops what this process remembers of a deleted MessageQueue's children.
    fn forget(&self, names: &Names) {
        let key = format!("{}/{}", names.namespace, names.name);
        self.forget_applied(&names.namespace, &names.name);
        self.set_no_network_policy(&key, false);
    }

    fn known_no_network_policy(&self, key: &str) -> bool {
        self.no_network_policy.lock().is_ok_and(|s| s.contains(key))
    }

    fn set_no_network_policy(&self, key: &str, none: bool) {
        if let Ok(mut s) = self.no_network_policy.lock() {
            if none {
                s.insert(key.to_string());
            } else {
                s.remove(key);
            }
        }
    }

    /// An admin connection to the broker pod `pod` at `ip`, with the cluster's security; the
    /// certificate is checked for the pod's DNS name (a pod IP is in no certificate).
    async fn admin(&self, names: &Names, pod: &str, ip: &str) -> Result<AdminClient> {
        let server_name = format!(
            "{pod}.{}.{}.svc.{}",
            names.headless_service(),
            names.namespace,
            self.build.cluster_domain
        );
        AdminClient::connect_secure(
            &observe::host_port(ip, builders::KAFKA_PORT),
            &server_name,
            self.broker_timeout,
            &self.security_for(names),
        )
        .await
    }

    /// An admin connection to `addr` as a broker advertises it (`host:port`; under TLS the
    /// host is the pod's DNS name).
    async fn admin_at(&self, names: &Names, addr: &str) -> Result<AdminClient> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        AdminClient::connect_secure(addr, host, self.broker_timeout, &self.security_for(names))
            .await
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
        // Repeats with the same (type, reason, action, object) are folded into one series that
        // keeps the first note; a digest of the note in `action` keeps different notes apart
        // while identical repeats still become a series.
        let digest = builders::config_hash(&BTreeMap::from([(String::new(), note.clone())]));
        let note = Note {
            type_,
            reason: reason.to_string(),
            note: truncate(&note, 1000),
            action: format!("{action}-{}", &digest[..8]),
        };
        // Not awaited: an Event is a report, and waiting for its API round trip would delay
        // the next child or status write of this pass (and of every MessageQueue behind it).
        let events = self.events.clone();
        let object = mq.object_ref(&());
        tokio::spawn(async move {
            if let Err(e) = events.publish(&object, &note).await {
                tracing::warn!(error = %e, reason = %note.reason, "publishing event failed");
            }
        });
    }

    /// A Warning Event, unless the `condition` on `previous` status already says `note`: a
    /// refusal found again by the next pass was announced by the pass that first found it.
    async fn warn_unless_on_status(
        &self,
        mq: &MessageQueue,
        previous: &MessageQueueStatus,
        condition: &str,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let on_status = previous
            .conditions
            .iter()
            .any(|c| c.type_ == condition && c.message == note);
        if !on_status {
            self.publish(mq, EventType::Warning, reason, action, note.to_string())
                .await;
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

/// Server-side apply under the operator's field manager, taking back fields someone else set:
/// how the children and the status are written.
fn ssa() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
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
    let result = if is_first_sight(&mq) && !mq.spec.storage.delete_claim {
        first_pass(&api, mq, &ctx).await
    } else {
        passes_after_the_first(&api, mq, &ctx).await
    };
    ctx.metrics.reconcile_finished(started.elapsed());
    if result.is_ok() {
        ctx.backoff(&key, false);
    }
    result
}

/// Every pass of a MessageQueue that has its finalizer (or is getting it, see
/// [`with_finalizer`]), and the cleanup when it is deleted.
async fn passes_after_the_first(
    api: &Api<MessageQueue>,
    mq: Arc<MessageQueue>,
    ctx: &Context,
) -> Result<Action> {
    match with_finalizer(api, mq, ctx).await {
        Ok((mq, fetched)) => finalizer(api, FINALIZER, mq, |event| async {
            match event {
                FinalizerEvent::Apply(mq) => apply(&mq, ctx, fetched).await,
                FinalizerEvent::Cleanup(mq) => finish::cleanup(&mq, ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e))),
        Err(e) => Err(e),
    }
}

/// Never reconciled: no finalizer, no status, not being deleted.
fn is_first_sight(mq: &MessageQueue) -> bool {
    mq.meta().deletion_timestamp.is_none()
        && mq.status.is_none()
        && !mq.finalizers().iter().any(|f| f == FINALIZER)
}

/// The first pass of a new MessageQueue whose volumes are kept when it is deleted
/// (`storage.deleteClaim: false`, the default): the finalizer patch and the children's applies
/// go at the same time, and the pass reads nothing first (no StatefulSet in the watch cache
/// means no pods either), so the StatefulSet exists one API round trip after the pass starts
/// instead of two or three (on a busy API server each is hundreds of milliseconds).
///
/// Safe because of what the finalizer guards: with `deleteClaim: false` its cleanup deletes
/// nothing, so a MessageQueue deleted before the patch lands loses only the
/// `ClaimsRetained` Event (its children go by their owner reference, its volumes stay, as
/// they would have). With `deleteClaim: true` the finalizer must be in place before any
/// volume can exist, so that path ([`with_finalizer`]) keeps the order. A StatefulSet the
/// watch cache already holds (a MessageQueue re-created under the same name) means there may
/// be pods and volumes to decide on: that pass reads them as every other pass does.
async fn first_pass(
    api: &Api<MessageQueue>,
    mq: Arc<MessageQueue>,
    ctx: &Context,
) -> Result<Action> {
    let names = Names::of(&mq)?;
    if ctx
        .cached::<StatefulSet>(&names.namespace, &names.statefulset())
        .is_some()
    {
        return passes_after_the_first(api, mq, ctx).await;
    }
    let (patched, applied) = futures::join!(
        add_finalizer(api, &mq),
        apply(&mq, ctx, Some((Vec::new(), None)))
    );
    // The children applied here are kept whatever the patch's fate; the next pass adds the
    // finalizer to the object as it is then ([`with_finalizer`]).
    match patched {
        Ok(_) => applied,
        // The object changed before the patch landed: another client, or this pass's own
        // status write when the API server took it first. Not a failure worth a back-off.
        Err(e) if e.is_conflict() => {
            tracing::debug!(mq = %object_key(&mq), "finalizer patch met a newer object; adding it again");
            applied.map(|_| Action::requeue(FINALIZER_RETRY))
        }
        Err(e) => Err(e),
    }
}

/// How soon a first pass whose finalizer patch met a conflict is followed by the one that
/// adds it (the watch usually wakes it sooner).
const FINALIZER_RETRY: Duration = Duration::from_millis(200);

/// Adds the finalizer with a merge patch that carries the resourceVersion, so finalizers
/// changed meanwhile (another controller's) fail it with a conflict instead of being
/// overwritten, and the change that caused the conflict wakes the next pass.
async fn add_finalizer(api: &Api<MessageQueue>, mq: &MessageQueue) -> Result<MessageQueue> {
    let mut finalizers = mq.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": mq.resource_version()}
    });
    let name = mq.name_any();
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            Error::kube(
                format!("add finalizer {FINALIZER} to MessageQueue {name}"),
                e,
            )
        })
}

/// A MessageQueue without the finalizer that [`first_pass`] does not take (`deleteClaim:
/// true`, a StatefulSet already there, or one that had a status) gets it here, and the pass
/// goes on with the object the API server returned. kube's `finalizer()` alone adds it and ends the pass,
/// so the children would wait for the watch to deliver that change: one more round trip, on
/// a busy API server hundreds of milliseconds, before a new MessageQueue's StatefulSet exists.
/// The pass's first reads (`fetch`) go with the patch, as neither depends on the other.
async fn with_finalizer(
    api: &Api<MessageQueue>,
    mq: Arc<MessageQueue>,
    ctx: &Context,
) -> Result<(Arc<MessageQueue>, Option<Fetched>)> {
    if mq.meta().deletion_timestamp.is_some() || mq.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok((mq, None));
    }
    let names = Names::of(&mq)?;
    let (patched, fetched) = futures::join!(add_finalizer(api, &mq), fetch(ctx, &names));
    Ok((Arc::new(patched?), Some(fetched?)))
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

/// Everything one pass found out, for status.
#[derive(Debug, Default)]
struct PassResult {
    observation: Observation,
    queue_statuses: Vec<QueueStatus>,
    managed_queues: Vec<String>,
    managed_users: Vec<String>,
    current_version: Option<String>,
    pods_existing: i32,
    /// Paused: the new spec was not acted on, so observedGeneration stays where it was.
    keep_observed_generation: bool,
}

impl PassResult {
    /// A pass that does not act on the spec (paused, or a spec that breaks a rule) keeps what
    /// the last status said of the queues and users; the queue counts are unset rather than
    /// frozen, since nothing read them.
    fn keep_from(&mut self, previous: &MessageQueueStatus) {
        self.queue_statuses = previous
            .queues
            .iter()
            .cloned()
            .map(QueueStatus::without_counts)
            .collect();
        self.managed_queues = previous.managed_queues.clone();
        self.managed_users = previous.managed_users.clone();
    }
}

/// One pass: each phase reads what the earlier ones found (in `pass`) and adds to it.
/// `fetched`: the pods and StatefulSet when `with_finalizer` read them already.
async fn apply(mq: &MessageQueue, ctx: &Context, fetched: Option<Fetched>) -> Result<Action> {
    let names = Names::of(mq)?;
    let previous = mq.status.clone().unwrap_or_default();

    // fetch
    let (pods, existing_sts) = match fetched {
        Some(fetched) => fetched,
        None => fetch(ctx, &names).await?,
    };
    let mut pass = PassResult::default();
    pass.observation.desired = mq.spec.replicas;
    pass.observation.max_unavailable = mq.spec.disruption_budget.max_unavailable;
    observe::count_pods(&pods, &names, mq.spec.replicas, &mut pass);

    if mq.is_paused() {
        return finish::paused(mq, ctx, &names, &previous, pass).await;
    }

    // validate
    if let Err(err) = validate::validate_spec(mq) {
        return finish::invalid_spec(mq, ctx, &names, &previous, pass, err).await;
    }

    // the Secrets the brokers mount, and how to reach the brokers
    secrets::ensure(mq, ctx, &names).await?;

    // build
    let existing_claim = children::claim_template(existing_sts.as_ref());
    let grow_volumes = pods::claim_size_differs(existing_claim.as_ref(), &mq.spec.storage.size);
    let mut children = builders::build_children(mq, &ctx.build, existing_claim)?;

    // scale-down: drain the brokers to remove first; refuse what cannot be moved
    let current_replicas = existing_sts
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let scale = scale_down::pass(
        mq,
        ctx,
        &names,
        &pods,
        &previous,
        current_replicas,
        &mut children,
    )
    .await;
    let shrinking = scale.shrinking;
    pass.observation.draining = scale.draining;
    pass.observation.scale_refused = scale.refused;

    // apply
    let sts = children::apply_all(
        mq,
        ctx,
        &names,
        &children,
        &previous,
        shrinking,
        existing_sts.as_ref(),
    )
    .await?;
    let applied_replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);

    // heal
    if grow_volumes {
        pods::grow_volumes(mq, ctx, &names, applied_replicas).await?;
    }
    let stuck_due = pods::heal_pods(mq, ctx, &names, &pods).await?;

    // replication, which the roll waits for and status reports
    let replication =
        brokers::replication_health(ctx, &names, &pods, current_replicas.max(applied_replicas))
            .await;

    // roll
    let step = pods::plan_roll_step(
        ctx,
        &sts,
        &pods,
        &names,
        applied_replicas,
        &replication,
        &previous,
    )
    .await;
    pass.observation.replication = replication;
    pods::take_roll_step(mq, ctx, &names, &pods, &previous, &step, &mut pass).await?;

    // queues
    queue_sync::sync_queues(mq, ctx, &pods, &previous, &mut pass).await;

    // users: Secrets, credentials, ACLs
    users::sync_users(mq, ctx, &names, &pods, &previous, &mut pass).await;

    // rebalance, only while nothing else moves brokers or partitions
    let settled = pacing::settled(&step, &pass.observation, current_replicas, applied_replicas);
    if mq.spec.auto_rebalance && settled {
        pass.observation.rebalancing = rebalance::rebalance(mq, ctx, &names, &pods).await;
    }

    finish::write_status(mq, ctx, &names, &pass).await?;
    let after = pacing::with_due(pacing::requeue_after(&step, &pass.observation), stuck_due);
    let counts_every = ctx.counts_interval.filter(|_| !mq.spec.queues.is_empty());
    Ok(Action::requeue(pacing::with_counts(after, counts_every)))
}

/// What a pass reads first: the broker pods and their StatefulSet, if it exists yet.
type Fetched = (Vec<Pod>, Option<StatefulSet>);

/// The broker pods of `names` and their StatefulSet, if it exists yet.
async fn fetch(ctx: &Context, names: &Names) -> Result<Fetched> {
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    // Both read from the API server, not the watch cache: the scale-down and healing decisions
    // rest on them. Together, as neither depends on the other.
    let selector = builders::selector_string(&names.name);
    let list_params = ListParams::default().labels(&selector);
    let sts_name = names.statefulset();
    let (pods, existing_sts) =
        futures::join!(pods_api.list(&list_params), sts_api.get_opt(&sts_name));
    let pods = pods
        .map_err(|e| Error::kube(format!("list pods of {}", names.name), e))?
        .items;
    let existing_sts =
        existing_sts.map_err(|e| Error::kube(format!("get StatefulSet {sts_name}"), e))?;
    Ok((pods, existing_sts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_never_reconciled_message_queue_is_at_first_sight() {
        let mq: MessageQueue = serde_yaml::from_str(
            "apiVersion: sluice.dev/v1alpha1\nkind: MessageQueue\n\
             metadata: {name: orders, namespace: apps}\nspec: {}\n",
        )
        .expect("test manifest parses");
        assert!(is_first_sight(&mq));
        let mut with_status = mq.clone();
        with_status.status = Some(MessageQueueStatus::default());
        assert!(!is_first_sight(&with_status));
        let mut with_finalizer = mq.clone();
        with_finalizer.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        assert!(!is_first_sight(&with_finalizer));
        let mut deleting = mq.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        assert!(!is_first_sight(&deleting));
    }

    #[test]
    fn long_event_notes_are_truncated_on_a_char_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1000);
        assert!(t.len() <= 1004);
        assert!(t.ends_with('…'));
    }
}
