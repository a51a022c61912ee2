//! How a pass ends: the status written under the operator's field manager, the two early stops
//! (paused: nothing is changed; invalid spec: nothing can be built), and the cleanup when the
//! MessageQueue is deleted.

use std::time::Duration;

use crate::events::EventType;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::runtime::controller::Action;
use kube::ResourceExt;

use super::{object_key, ssa, Context, PassResult};
use crate::builders::{self, Names};
use crate::crd::{MessageQueue, MessageQueueStatus};
use crate::error::{Error, Result};
use crate::replication;
use crate::status::{self, ReplicationSeen};

/// Paused: only the status is written, with the queues as last seen, and the pause announced
/// once.
pub(super) async fn paused(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    previous: &MessageQueueStatus,
    mut pass: PassResult,
) -> Result<Action> {
    pass.observation.paused = true;
    pass.keep_observed_generation = true;
    pass.keep_from(previous);
    if !previous
        .conditions
        .iter()
        .any(|c| c.type_ == status::PAUSED && c.status == "True")
    {
        ctx.publish(mq, EventType::Normal, "ReconciliationPaused", "Pause",
            "reconciliation paused; no changes are made until spec.paused and the sluice.dev/paused annotation are cleared".into()).await;
    }
    write_status(mq, ctx, names, &pass).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The spec breaks a rule: reported on status (and once as a Warning), and nothing else happens
/// until the spec changes.
pub(super) async fn invalid_spec(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    previous: &MessageQueueStatus,
    mut pass: PassResult,
    err: Error,
) -> Result<Action> {
    let reason = match &err {
        Error::InvalidSpec { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    ctx.warn_unless_on_status(
        mq,
        previous,
        status::DEGRADED,
        "InvalidSpec",
        "Validate",
        &reason,
    )
    .await;
    ctx.metrics.reconcile_failed("invalid_spec");
    pass.observation.invalid_spec = Some(reason);
    pass.keep_from(previous);
    write_status(mq, ctx, names, &pass).await?;
    // the spec must change before anything else can happen
    Ok(Action::await_change())
}

pub(super) async fn write_status(
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
        managed_users: pass.managed_users.clone(),
        under_replicated_partitions: match &pass.observation.replication {
            ReplicationSeen::Seen(h) => Some(replication::count(&h.under_replicated)),
            ReplicationSeen::NoAnswer => None,
            ReplicationSeen::NotAsked => previous.under_replicated_partitions,
        },
        offline_partitions: match &pass.observation.replication {
            ReplicationSeen::Seen(h) => Some(replication::count(&h.offline)),
            ReplicationSeen::NoAnswer => None,
            ReplicationSeen::NotAsked => previous.offline_partitions,
        },
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
pub(super) async fn cleanup(mq: &MessageQueue, ctx: &Context) -> Result<Action> {
    let names = Names::of(mq)?;
    ctx.counts_read(&names, false);
    ctx.forget(&names);
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
