//! The pod phases: healing pods that cannot start because their volume or their node is gone,
//! growing volumes to `spec.storage.size`, and the next step of a rolling restart (one broker
//! at a time, each checked on /readyz before the next goes).

use std::time::Duration;

use crate::events::EventType;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::ResourceExt;

use super::observe::{host_port, pod_failing, pod_ip, pod_ordinal, pod_ready, pod_ready_since};
use super::{Context, PassResult};
use crate::builders::{Names, HTTP_PORT};
use crate::crd::{MessageQueue, MessageQueueStatus};
use crate::error::{Error, Result};
use crate::kafka::probe_readyz;
use crate::roll::{self, PodView, RollInput, RollStep};
use crate::status::{self, ReplicationSeen};
use crate::validate;

/// How long a pod may sit Pending without its PVC before the operator replaces it.
const STUCK_PENDING: Duration = Duration::from_secs(30);

/// True when the StatefulSet's claim template asks for another size than `size`. PVCs are
/// created from the claim template, so they can only be smaller than the spec when the two
/// differ.
pub(super) fn claim_size_differs(template: Option<&PersistentVolumeClaim>, size: &str) -> bool {
    template
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .is_some_and(|q| q.0 != size)
}

/// The next roll step. `replication` is what a broker reported in this pass, `previous` the
/// last status (its `Replicated` condition says since when the partitions are out of sync).
pub(super) async fn plan_roll_step(
    ctx: &Context,
    sts: &StatefulSet,
    pods: &[Pod],
    names: &Names,
    replicas: i32,
    replication: &ReplicationSeen,
    previous: &MessageQueueStatus,
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
                ready_since: pod_ready_since(p),
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
    let out_of_sync_since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == status::REPLICATED && c.status != "True")
        .map(|c| c.last_transition_time.0);
    let step = roll::plan_roll(&RollInput {
        update_revision: update_revision.as_deref(),
        statefulset_observed: observed,
        replicas,
        pods: &views,
        replication: match replication {
            ReplicationSeen::Seen(health) => Some(health),
            ReplicationSeen::NotAsked | ReplicationSeen::NoAnswer => None,
        },
        out_of_sync_since,
        now: Timestamp::now(),
    });
    // Waiting with no out-of-date pod is creation or scaling, not a roll: Progressing says so
    // with its own reason.
    match step {
        RollStep::Wait { .. } if !rolling => RollStep::UpToDate,
        step => step,
    }
}

/// Carries out `step`: deletes the pod it names (with an Event), or records on `pass` what the
/// roll waits for or why it stopped.
pub(super) async fn take_roll_step(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    previous: &MessageQueueStatus,
    step: &RollStep,
    pass: &mut PassResult,
) -> Result<()> {
    match step {
        RollStep::UpToDate => {}
        RollStep::Wait { reason } => pass.observation.rolling = Some(reason.clone()),
        RollStep::Delete { pod, reason } => {
            let uid = pods
                .iter()
                .find(|p| p.name_any() == *pod)
                .and_then(|p| p.metadata.uid.clone());
            let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
            if delete_pod(&pods_api, pod, uid, None).await? {
                ctx.publish(
                    mq,
                    EventType::Normal,
                    "RollingRestart",
                    "Roll",
                    reason.clone(),
                )
                .await;
            }
            pass.observation.rolling = Some(reason.clone());
        }
        RollStep::WaitForReplicas {
            pod,
            reason,
            stalled,
        } => {
            let waiting_before = previous
                .conditions
                .iter()
                .any(|c| c.type_ == status::PROGRESSING && c.reason == "WaitingForReplicas");
            if !waiting_before {
                ctx.publish(
                    mq,
                    EventType::Normal,
                    "RollWaitingForReplicas",
                    "Roll",
                    reason.clone(),
                )
                .await;
            }
            if *stalled {
                // Once per stall: the message counts minutes and partitions, so it changes.
                let reported = previous
                    .conditions
                    .iter()
                    .any(|c| c.type_ == status::DEGRADED && c.reason == "RollStalled");
                if !reported {
                    ctx.publish(
                        mq,
                        EventType::Warning,
                        "RollStalled",
                        "Roll",
                        reason.clone(),
                    )
                    .await;
                }
                tracing::warn!(pod = %pod, "roll stalled waiting for replicas");
                pass.observation.roll_stalled = Some(reason.clone());
            }
            pass.observation.rolling = Some(reason.clone());
            pass.observation.waiting_for_replicas = Some(reason.clone());
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
    Ok(())
}

/// Requests volume growth on PVCs smaller than spec.storage.size.
pub(super) async fn grow_volumes(
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

/// Pods that cannot start because their PVC or their node is gone. Returns when a Pending pod
/// would next count as stuck, for a pass to look again then.
pub(super) async fn heal_pods(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
) -> Result<Option<Duration>> {
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let mut stuck_due: Option<Duration> = None;
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
        let pending = phase == "Pending" && pod.metadata.deletion_timestamp.is_none();
        if pending && age <= STUCK_PENDING {
            // Nothing changes on a pod that waits for a volume that is gone, so no watch
            // event would wake the pass that finds it stuck: look again when it would be.
            let due = STUCK_PENDING - age + Duration::from_secs(1);
            stuck_due = Some(stuck_due.map_or(due, |d| d.min(due)));
        }
        if pending && age > STUCK_PENDING {
            let pvc = names.pvc(ordinal);
            let missing = pvc_api
                .get_opt(&pvc)
                .await
                .map_err(|e| Error::kube(format!("get PVC {pvc}"), e))?
                .is_none();
            if missing {
                delete_pod(&pods_api, &pod.name_any(), pod.metadata.uid.clone(), None).await?;
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
                delete_pod(
                    &pods_api,
                    &pod.name_any(),
                    pod.metadata.uid.clone(),
                    Some(0),
                )
                .await?;
                ctx.publish(mq, EventType::Warning, "PodReplaced", "Heal",
                    format!("pod {} was bound to node {node}, which no longer exists; force-deleted it so the StatefulSet reschedules it", pod.name_any())).await;
            }
        }
    }
    Ok(stuck_due)
}

/// Deletes pod `name`, only if it is still the pod with `uid`; `grace` overrides its grace
/// period. False when it was gone or replaced already.
async fn delete_pod(
    api: &Api<Pod>,
    name: &str,
    uid: Option<String>,
    grace: Option<u32>,
) -> Result<bool> {
    let params = DeleteParams {
        grace_period_seconds: grace,
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(Error::kube(format!("delete pod {name}"), e)),
    }
}
