//! The apply phase: the ConfigMap, the two Services, the StatefulSet and the PDB server-side
//! applied under the operator's field manager, each followed by the Event that says what the
//! apply did (created, recreated, updated to the spec, or drift put back).

use crate::events::EventType;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::cache::{self, Cached};
use super::Context;
use crate::builders::{Children, Names};
use crate::crd::{MessageQueue, MessageQueueStatus};
use crate::error::{Error, Result};

/// The volume claim template of the existing StatefulSet: volume claim templates are immutable,
/// so the builders keep it rather than the spec's.
pub(super) fn claim_template(sts: Option<&StatefulSet>) -> Option<PersistentVolumeClaim> {
    sts.and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|v| v.first().cloned())
}

/// Applies every child in order and returns the StatefulSet as applied. `existing_sts` is the
/// StatefulSet as this pass read it (None when it did not exist): a change of its size is
/// announced as a scale.
pub(super) async fn apply_all(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    children: &Children,
    previous: &MessageQueueStatus,
    shrinking: bool,
    existing_sts: Option<&StatefulSet>,
) -> Result<StatefulSet> {
    let existing_replicas =
        existing_sts.map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    let observed_before = previous.observed_generation;
    let seen = Seen {
        reconciled_before: observed_before.is_some(),
        spec_unchanged: observed_before.is_some() && observed_before == mq.metadata.generation,
    };
    // A scale-down that finishes in this pass changes the StatefulSet and the seeds in the
    // ConfigMap after the spec was observed: that is the scale, not drift.
    let seen_unless_shrinking = Seen {
        spec_unchanged: seen.spec_unchanged && !shrinking,
        ..seen
    };
    let client = &ctx.client;
    let ns = &names.namespace;
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let services = Api::<Service>::namespaced(client.clone(), ns);
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), ns);
    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);

    // The ConfigMap first when the StatefulSet exists: its pods mount it, and a restarted pod
    // must find the config it will be rolled to. Then the StatefulSet, the Services and the
    // PodDisruptionBudget together, so a new MessageQueue's pods are not held up by three more
    // sequential API round trips (on a busy API server each is hundreds of milliseconds). A
    // new StatefulSet goes together with its ConfigMap: its first pod is created, scheduled
    // and started well after both requests were answered (a kubelet that finds the ConfigMap
    // missing retries the mount).
    let mut configmap = Some(apply_announced(
        ctx,
        mq,
        &configmaps,
        &children.configmap,
        "ConfigMap",
        seen_unless_shrinking,
        cached(ctx, &children.configmap),
    ));
    if existing_sts.is_some() {
        if let Some(first) = configmap.take() {
            first.await?;
        }
    }
    let configmap_if_new = async {
        match configmap {
            Some(with_statefulset) => with_statefulset.await.map(drop),
            None => Ok(()),
        }
    };
    let (sts, _, _, _, ()) = futures::try_join!(
        apply_announced(
            ctx,
            mq,
            &statefulsets,
            &children.statefulset,
            "StatefulSet",
            seen_unless_shrinking,
            Before::Read(existing_sts.cloned()),
        ),
        apply_announced(
            ctx,
            mq,
            &services,
            &children.headless_service,
            "Service",
            seen,
            cached(ctx, &children.headless_service),
        ),
        apply_announced(
            ctx,
            mq,
            &services,
            &children.client_service,
            "Service",
            seen,
            cached(ctx, &children.client_service),
        ),
        apply_announced(
            ctx,
            mq,
            &pdbs,
            &children.pdb,
            "PodDisruptionBudget",
            seen,
            cached(ctx, &children.pdb),
        ),
        configmap_if_new,
    )?;
    apply_network_policy(ctx, mq, names, children, seen).await?;
    let applied_replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    if let Some(before) = existing_replicas.filter(|before| *before != applied_replicas) {
        ctx.publish(
            mq,
            EventType::Normal,
            "Scaled",
            "Scale",
            format!(
                "StatefulSet {} scaled from {before} to {applied_replicas} brokers",
                names.statefulset()
            ),
        )
        .await;
    }
    Ok(sts)
}

/// The NetworkPolicy when `spec.networkPolicy.enabled`; otherwise one left from before is
/// deleted (only this MessageQueue's own: it carries its owner reference). NetworkPolicies are
/// not watched: the one applied is read with a GET (so an edit is put back), and the GET that
/// looks for one to delete is made until this process knows there is none.
async fn apply_network_policy(
    ctx: &Context,
    mq: &MessageQueue,
    names: &Names,
    children: &Children,
    seen: Seen,
) -> Result<()> {
    let api = Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &names.namespace);
    let key = format!("{}/{}", names.namespace, names.name);
    if let Some(policy) = &children.network_policy {
        ctx.set_no_network_policy(&key, false);
        apply_announced(
            ctx,
            mq,
            &api,
            policy,
            "NetworkPolicy",
            seen,
            Before::Unknown,
        )
        .await?;
        return Ok(());
    }
    if mq
        .status
        .as_ref()
        .is_none_or(|s| s.observed_generation.is_none())
        || ctx.known_no_network_policy(&key)
    {
        return Ok(()); // a new MessageQueue has none to remove, nor one already looked at
    }
    let name = names.network_policy();
    let Some(existing) = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::kube(format!("get NetworkPolicy {name}"), e))?
    else {
        ctx.set_no_network_policy(&key, true);
        return Ok(());
    };
    let ours = existing
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| Some(&r.uid) == mq.metadata.uid.as_ref())
        });
    if ours {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("delete NetworkPolicy {name}"), e)),
        }
        ctx.set_no_network_policy(&key, true);
        ctx.publish(
            mq,
            EventType::Normal,
            "Deleted",
            "Delete",
            format!("deleted NetworkPolicy {name}: networkPolicy is no longer enabled"),
        )
        .await;
    }
    Ok(())
}

/// What the operator had seen of the object before this pass, which decides how a change to a
/// child reads.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The object was reconciled before (status has an observedGeneration).
    reconciled_before: bool,
    /// The spec did not change since: a changed child was changed by someone else.
    spec_unchanged: bool,
}

/// What the pass knows of a child before applying it.
enum Before<K> {
    /// Read from the API server in this pass (None: absent).
    Read(Option<K>),
    /// The watch cache's copy (None: the cache has not seen it).
    Cached(Option<K>),
    /// Not read yet.
    Unknown,
}

fn cached<K: Cached>(ctx: &Context, obj: &K) -> Before<K> {
    let meta = obj.meta();
    Before::Cached(ctx.cached::<K>(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn apply_announced<K>(
    ctx: &Context,
    mq: &MessageQueue,
    api: &Api<K>,
    obj: &K,
    kind: &str,
    seen: Seen,
    before: Before<K>,
) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let before = match before {
        Before::Read(before) => before,
        // The cache is trusted only to say that nothing needs doing; anything else is decided
        // on a fresh read, so a lagging cache neither skips a needed apply nor mislabels one.
        Before::Cached(Some(cached)) => {
            if cache::is_current(ctx, obj, &cached)? {
                cache::count_skipped::<K>(ctx);
                return Ok(cached);
            }
            get(api, &name, kind).await?
        }
        // A new MessageQueue's children are being created by this pass: no GET before the
        // apply, which is the path from a create to a running StatefulSet. (A pass that failed
        // after creating one may announce its creation twice.)
        Before::Cached(None) if !seen.reconciled_before => None,
        Before::Cached(None) | Before::Unknown => get(api, &name, kind).await?,
    };
    let (after, sent) = cache::apply_unless_current(ctx, api, obj, before.as_ref()).await?;
    let change = match before {
        None => ChildChange::Created,
        Some(b) if sent && b.meta().resource_version != after.meta().resource_version => {
            ChildChange::Updated
        }
        Some(_) => ChildChange::Unchanged,
    };
    announce(ctx, mq, kind, &name, change, seen).await;
    Ok(after)
}

async fn get<K>(api: &Api<K>, name: &str, kind: &str) -> Result<Option<K>>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("get {kind} {name}"), e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildChange {
    Created,
    Updated,
    Unchanged,
}

async fn announce(
    ctx: &Context,
    mq: &MessageQueue,
    kind: &str,
    name: &str,
    change: ChildChange,
    seen: Seen,
) {
    match change {
        ChildChange::Unchanged => {}
        ChildChange::Created if !seen.reconciled_before => {
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
        ChildChange::Updated if seen.spec_unchanged => {
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
