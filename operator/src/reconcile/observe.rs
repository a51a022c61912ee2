//! What the broker pods say about themselves: ordinal, readiness, a failure that will not clear
//! by itself, the address to reach the broker at. Pure; every phase reads pods through these.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::PassResult;
use crate::builders::{self, Names};

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

pub(super) fn pod_ordinal(pod: &Pod, sts_name: &str) -> Option<i32> {
    pod.labels()
        .get(builders::POD_INDEX_LABEL)
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            pod.name_any()
                .strip_prefix(&format!("{sts_name}-"))
                .and_then(|s| s.parse().ok())
        })
}

pub(super) fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// When the pod's Ready condition last changed, while it is True.
pub(super) fn pod_ready_since(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

pub(super) fn pod_failing(pod: &Pod) -> Option<String> {
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

pub(super) fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

pub(super) fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Counts the pods of the first `replicas` ordinals into `pass`: existing, ready, and the version
/// when they all run the same one.
pub(super) fn count_pods(pods: &[Pod], names: &Names, replicas: i32, pass: &mut PassResult) {
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
}
