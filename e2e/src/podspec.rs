//! Turning a Kubernetes pod into a local process launch: the pure part of the pod runner.
//!
//! Everything here is a function of the pod object plus the ConfigMaps/Secrets it references, so it
//! is unit-tested without a cluster. The runner (`src/bin/pod-runner.rs`) fetches the referenced
//! objects, calls [`launch_spec`], and starts the process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

/// The broker flags whose `0.0.0.0` host is rewritten to the pod IP, with the environment variable
/// that can also carry them and the port the broker uses when neither is given.
pub const LISTEN_FLAGS: &[(&str, &str, Option<u16>)] = &[
    ("--listen", "SLUICE_LISTEN", Some(9092)),
    ("--http-listen", "SLUICE_HTTP_LISTEN", Some(8080)),
    ("--cluster-listen", "SLUICE_CLUSTER_LISTEN", None),
];

/// The broker's data directory flag, its environment variable and default.
pub const DATA_DIR_FLAG: (&str, &str, &str) = ("--data-dir", "SLUICE_DATA_DIR", "/var/lib/sluice");

/// Why a pod cannot be turned into a process launch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodSpecError {
    #[error("pod {pod} has no spec")]
    NoSpec { pod: String },
    #[error("pod {pod} has no container")]
    NoContainer { pod: String },
    #[error("pod {pod} has no pod IP yet")]
    NoPodIp { pod: String },
    #[error("pod {pod}: env {var}: fieldRef {path} is not supported")]
    UnsupportedFieldRef {
        pod: String,
        var: String,
        path: String,
    },
    #[error("pod {pod}: env {var}: {kind} {name} key {key} not found")]
    MissingKey {
        pod: String,
        var: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    #[error("pod {pod}: envFrom {kind} {name} not found")]
    MissingSource {
        pod: String,
        kind: &'static str,
        name: String,
    },
}

/// ConfigMaps and Secrets the pod references, fetched by the caller (`None` = does not exist).
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    pub secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

/// Names of the ConfigMaps and Secrets a container refers to (env valueFrom and envFrom).
pub fn referenced_sources(c: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for ef in c.env_from.iter().flatten() {
        if let Some(r) = &ef.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &ef.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &vf.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Expands `$(VAR)` references the way Kubernetes does for env values, command and args:
/// a defined variable is substituted, an undefined one is left as written, `$$` is a literal `$`.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(end) => {
                    let name = &tail[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("?")
    )
}

/// Value of a downward-API `fieldRef` path for this pod.
fn field_ref(pod: &Pod, path: &str) -> Option<String> {
    let label_or_annotation = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => Some(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => Some(
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
        ),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.podIPs" => status.and_then(|s| s.pod_ips.as_ref()).map(|ips| {
            ips.iter()
                .map(|i| i.ip.clone())
                .collect::<Vec<_>>()
                .join(",")
        }),
        "status.hostIP" => Some(status.and_then(|s| s.host_ip.clone()).unwrap_or_default()),
        "status.hostIPs" => Some(
            status
                .and_then(|s| s.host_ips.as_ref())
                .map(|ips| {
                    ips.iter()
                        .map(|i| i.ip.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        ),
        _ if path.starts_with("metadata.labels['") => {
            label_or_annotation("metadata.labels['", pod.metadata.labels.as_ref())
        }
        _ if path.starts_with("metadata.annotations['") => {
            label_or_annotation("metadata.annotations['", pod.metadata.annotations.as_ref())
        }
        _ => None,
    }
}

/// The container's environment, resolved like the kubelet does: `envFrom` first (in order, with
/// prefixes), then `env` (each value expanded against the variables defined before it).
pub fn resolve_env(
    pod: &Pod,
    c: &Container,
    sources: &Sources,
) -> Result<BTreeMap<String, String>, PodSpecError> {
    let pod_id = pod_name(pod);
    let mut env = BTreeMap::new();
    for ef in c.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        let (kind, name, optional, found) = if let Some(r) = &ef.config_map_ref {
            (
                "ConfigMap",
                &r.name,
                r.optional,
                sources.config_maps.get(&r.name),
            )
        } else if let Some(r) = &ef.secret_ref {
            ("Secret", &r.name, r.optional, sources.secrets.get(&r.name))
        } else {
            continue;
        };
        match found.and_then(|o| o.as_ref()) {
            Some(data) => {
                for (k, v) in data {
                    env.insert(format!("{prefix}{k}"), v.clone());
                }
            }
            None if optional == Some(true) => {}
            None => {
                return Err(PodSpecError::MissingSource {
                    pod: pod_id,
                    kind,
                    name: name.clone(),
                })
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            Some(expand(v, &env))
        } else if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                Some(field_ref(pod, &f.field_path).ok_or_else(|| {
                    PodSpecError::UnsupportedFieldRef {
                        pod: pod_id.clone(),
                        var: e.name.clone(),
                        path: f.field_path.clone(),
                    }
                })?)
            } else if let Some(r) = &vf.config_map_key_ref {
                key_ref(
                    &pod_id,
                    &e.name,
                    "ConfigMap",
                    &r.name,
                    &r.key,
                    r.optional,
                    &sources.config_maps,
                )?
            } else if let Some(r) = &vf.secret_key_ref {
                key_ref(
                    &pod_id,
                    &e.name,
                    "Secret",
                    &r.name,
                    &r.key,
                    r.optional,
                    &sources.secrets,
                )?
            } else {
                // resourceFieldRef: no resources are enforced for runner processes.
                Some(String::new())
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            env.insert(e.name.clone(), v);
        }
    }
    Ok(env)
}

fn key_ref(
    pod: &str,
    var: &str,
    kind: &'static str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    map: &BTreeMap<String, Option<BTreeMap<String, String>>>,
) -> Result<Option<String>, PodSpecError> {
    match map
        .get(name)
        .and_then(|o| o.as_ref())
        .and_then(|d| d.get(key))
    {
        Some(v) => Ok(Some(v.clone())),
        None if optional == Some(true) => Ok(None),
        None => Err(PodSpecError::MissingKey {
            pod: pod.to_string(),
            var: var.to_string(),
            kind,
            name: name.to_string(),
            key: key.to_string(),
        }),
    }
}

/// Where a path inside the container lives on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPath {
    pub path: PathBuf,
    /// Human-readable origin: `pvc <ns>/<claim>` or `pod <ns>/<pod> volume <v>` or `rootfs`.
    pub origin: String,
    /// The PVC whose volume holds the path, when one does.
    pub claim: Option<String>,
}

/// The host folder of PVC `claim` in `ns`: the whole "volume".
pub fn claim_root(work: &Path, ns: &str, claim: &str) -> PathBuf {
    work.join("pvc").join(ns).join(claim)
}

/// The file beside a claim's folder that remembers which PVC object (by UID) the folder
/// belongs to.
pub fn claim_uid_file(work: &Path, ns: &str, claim: &str) -> PathBuf {
    work.join("pvc").join(ns).join(format!("{claim}.uid"))
}

/// What to do with a claim's folder before a broker starts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeAction {
    /// The folder belongs to this PVC object (or is new): use it.
    Keep,
    /// The folder belonged to a PVC of the same name that was deleted: this PVC is a new, empty
    /// volume, as a real provisioner would give, so the old folder goes.
    Wipe { old_uid: String },
}

/// `stored`: the UID recorded beside the folder (if any); `current`: the PVC's UID now.
pub fn volume_action(stored: Option<&str>, current: &str) -> VolumeAction {
    match stored.map(str::trim) {
        Some(old) if !old.is_empty() && old != current => VolumeAction::Wipe {
            old_uid: old.to_string(),
        },
        _ => VolumeAction::Keep,
    }
}

/// Maps a path inside the container to a host folder under `work`: the longest volumeMount that
/// contains it decides; a PVC maps to `work/pvc/<namespace>/<claim>` (so data survives pod
/// restarts), any other volume to a folder per pod UID.
pub fn host_path_for(pod: &Pod, c: &Container, container_path: &str, work: &Path) -> HostPath {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("pod");
    let uid = pod.metadata.uid.as_deref().unwrap_or("nouid");
    let target = Path::new(container_path);
    let best = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| target.starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len());
    let Some(m) = best else {
        return HostPath {
            path: work
                .join("rootfs")
                .join(ns)
                .join(format!("{name}-{uid}"))
                .join(target.strip_prefix("/").unwrap_or(target)),
            origin: "rootfs".into(),
            claim: None,
        };
    };
    let volume = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == m.name));
    let claim = volume
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .map(|pvc| pvc.claim_name.clone());
    let (mut base, origin) = match &claim {
        Some(claim) => (claim_root(work, ns, claim), format!("pvc {ns}/{claim}")),
        None => (
            work.join("pod")
                .join(ns)
                .join(format!("{name}-{uid}"))
                .join(&m.name),
            format!("pod {ns}/{name} volume {}", m.name),
        ),
    };
    if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
        base = base.join(sub);
    }
    match target.strip_prefix(&m.mount_path) {
        Ok(rest) if !rest.as_os_str().is_empty() => base = base.join(rest),
        _ => {}
    }
    HostPath {
        path: base,
        origin,
        claim,
    }
}

/// Everything needed to start the process for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub pod_ip: String,
    /// host:port of the broker's HTTP listener after rewriting (for /readyz).
    pub http_addr: String,
    /// Host folder used as the data directory, and where it came from.
    pub data_dir: HostPath,
    pub container: String,
    /// Secret volumes whose files the runner writes and refreshes.
    pub secret_volumes: Vec<SecretVolume>,
}

/// Finds the value of `flag` in args (`--flag=v` or `--flag v`; the last one wins).
fn find_flag(args: &[String], flag: &str) -> Option<(usize, bool)> {
    let mut found = None;
    let eq = format!("{flag}=");
    for (i, a) in args.iter().enumerate() {
        if a.starts_with(&eq) {
            found = Some((i, true));
        } else if a == flag && i + 1 < args.len() {
            found = Some((i + 1, false));
        }
    }
    found
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    find_flag(args, flag).map(|(i, inline)| {
        if inline {
            &args[i][flag.len() + 1..]
        } else {
            args[i].as_str()
        }
    })
}

fn set_flag(args: &mut [String], flag: &str, idx: usize, inline: bool, value: &str) {
    args[idx] = if inline {
        format!("{flag}={value}")
    } else {
        value.to_string()
    };
}

/// Replaces a `0.0.0.0` (or empty, or `[::]`) host in `host:port` by `ip`.
pub fn rewrite_any_host(addr: &str, ip: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, port)) if host.is_empty() || host == "0.0.0.0" || host == "[::]" => {
            format!("{ip}:{port}")
        }
        _ => addr.to_string(),
    }
}

/// Picks the container: the one named `wanted`, else the first.
pub fn pick_container<'a>(pod: &'a Pod, wanted: &str) -> Option<&'a Container> {
    let cs = &pod.spec.as_ref()?.containers;
    cs.iter().find(|c| c.name == wanted).or_else(|| cs.first())
}

/// Builds the launch of `container` of `pod`: resolved env, expanded args (the container's command
/// minus its program name, then its args), listen hosts rewritten to the pod IP (added when the
/// broker would otherwise default to `0.0.0.0`), and the data directory mapped to a host folder.
pub fn launch_spec(
    pod: &Pod,
    container: &str,
    sources: &Sources,
    work: &Path,
) -> Result<LaunchSpec, PodSpecError> {
    let pod_id = pod_name(pod);
    if pod.spec.is_none() {
        return Err(PodSpecError::NoSpec { pod: pod_id });
    }
    let c = pick_container(pod, container).ok_or_else(|| PodSpecError::NoContainer {
        pod: pod_id.clone(),
    })?;
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| PodSpecError::NoPodIp {
            pod: pod_id.clone(),
        })?;
    let mut env = resolve_env(pod, c, sources)?;
    let mut args: Vec<String> = c
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(c.args.iter().flatten())
        .map(|a| expand(a, &env))
        .collect();

    // `--listeners NAME://host:port,...` replaces `--listen`: its any-hosts become the pod IP
    // and no `--listen` is added (the broker refuses both).
    let listeners = if let Some((i, inline)) = find_flag(&args, "--listeners") {
        let v = rewrite_listener_list(
            flag_value(&args, "--listeners").unwrap_or_default(),
            &pod_ip,
        );
        set_flag(&mut args, "--listeners", i, inline, &v);
        true
    } else if let Some(v) = env.get("SLUICE_LISTENERS").cloned() {
        env.insert(
            "SLUICE_LISTENERS".into(),
            rewrite_listener_list(&v, &pod_ip),
        );
        true
    } else {
        false
    };

    let mut http_addr = None;
    for (flag, var, default_port) in LISTEN_FLAGS {
        if listeners && *flag == "--listen" {
            continue;
        }
        let value = if let Some((i, inline)) = find_flag(&args, flag) {
            let v = rewrite_any_host(flag_value(&args, flag).unwrap_or_default(), &pod_ip);
            set_flag(&mut args, flag, i, inline, &v);
            Some(v)
        } else if let Some(v) = env.get(*var).cloned() {
            let v = rewrite_any_host(&v, &pod_ip);
            env.insert(var.to_string(), v.clone());
            Some(v)
        } else if let Some(port) = default_port {
            let v = format!("{pod_ip}:{port}");
            args.push(format!("{flag}={v}"));
            Some(v)
        } else {
            None
        };
        if *flag == "--http-listen" {
            http_addr = value;
        }
    }

    let (flag, var, default) = DATA_DIR_FLAG;
    let inside = flag_value(&args, flag)
        .map(str::to_string)
        .or_else(|| env.get(var).cloned())
        .unwrap_or_else(|| default.to_string());
    let data_dir = host_path_for(pod, c, &inside, work);
    let host = data_dir.path.display().to_string();
    if let Some((i, inline)) = find_flag(&args, flag) {
        set_flag(&mut args, flag, i, inline, &host);
    } else if env.contains_key(var) {
        env.insert(var.to_string(), host);
    } else {
        args.push(format!("{flag}={host}"));
    }

    let secret_volumes = secret_volumes(pod, c, work);
    for v in &secret_volumes {
        if !v.optional && sources.secrets.get(&v.secret).is_none_or(Option::is_none) {
            return Err(PodSpecError::MissingSource {
                pod: pod_id,
                kind: "Secret volume",
                name: v.secret.clone(),
            });
        }
    }
    for value in args.iter_mut().chain(env.values_mut()) {
        *value = rewrite_mounted_path(value, &secret_volumes);
    }

    Ok(LaunchSpec {
        args,
        env,
        http_addr: http_addr.unwrap_or_else(|| format!("{pod_ip}:8080")),
        pod_ip,
        data_dir,
        container: c.name.clone(),
        secret_volumes,
    })
}

/// Replaces any-hosts in a `NAME://host:port,...` listener list by `ip`.
pub fn rewrite_listener_list(list: &str, ip: &str) -> String {
    list.split(',')
        .map(|l| match l.split_once("://") {
            Some((name, addr)) => format!("{name}://{}", rewrite_any_host(addr, ip)),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A Secret volume the container mounts: its files are written under `host_dir` (and kept in
/// step with the Secret, as the kubelet does), and container paths under `container_path` are
/// rewritten to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVolume {
    pub secret: String,
    pub container_path: String,
    pub host_dir: PathBuf,
    /// `(key, relative path)` when the volume lists items; every key otherwise.
    pub items: Option<Vec<(String, String)>>,
    pub optional: bool,
}

/// The container's Secret volumes (mounted ones only).
pub fn secret_volumes(pod: &Pod, c: &Container, work: &Path) -> Vec<SecretVolume> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    c.volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let v = volumes?.iter().find(|v| v.name == m.name)?;
            let secret = v.secret.as_ref()?;
            Some(SecretVolume {
                secret: secret.secret_name.clone()?,
                container_path: m.mount_path.clone(),
                host_dir: host_path_for(pod, c, &m.mount_path, work).path,
                items: secret.items.as_ref().map(|items| {
                    items
                        .iter()
                        .map(|i| (i.key.clone(), i.path.clone()))
                        .collect()
                }),
                optional: secret.optional.unwrap_or(false),
            })
        })
        .collect()
}

/// The Secrets a pod's Secret volumes name.
pub fn secret_volume_names(pod: &Pod, c: &Container) -> Vec<String> {
    let mut names: Vec<String> = secret_volumes(pod, c, Path::new("/"))
        .into_iter()
        .map(|v| v.secret)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The files of `volume` for the Secret's `data`: (host path, content). A listed key the
/// Secret lacks is left out.
pub fn secret_volume_files(
    volume: &SecretVolume,
    data: &BTreeMap<String, String>,
) -> Vec<(PathBuf, String)> {
    match &volume.items {
        Some(items) => items
            .iter()
            .filter_map(|(key, path)| Some((volume.host_dir.join(path), data.get(key)?.clone())))
            .collect(),
        None => data
            .iter()
            .map(|(k, v)| (volume.host_dir.join(k), v.clone()))
            .collect(),
    }
}

/// `value` with a leading Secret volume mount path replaced by its host folder.
pub fn rewrite_mounted_path(value: &str, volumes: &[SecretVolume]) -> String {
    for v in volumes {
        let base = v.container_path.trim_end_matches('/');
        if let Some(rest) = value.strip_prefix(base) {
            if rest.is_empty() || rest.starts_with('/') {
                return format!("{}{rest}", v.host_dir.display());
            }
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let v = vars(&[("POD_IP", "127.1.0.5"), ("N", "2")]);
        assert_eq!(expand("$(POD_IP):9092", &v), "127.1.0.5:9092");
        assert_eq!(expand("$(MISSING)-$(N)", &v), "$(MISSING)-2");
        assert_eq!(expand("$$(POD_IP)", &v), "$(POD_IP)");
        assert_eq!(expand("a$b$", &v), "a$b$");
        assert_eq!(expand("$(unterminated", &v), "$(unterminated");
    }

    fn broker_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "mq-1", "namespace": "ns1", "uid": "u-1",
                         "labels": {"apps.kubernetes.io/pod-index": "1"}},
            "spec": {
                "containers": [{
                    "name": "broker",
                    "image": "sluice-broker:0.1.0",
                    "args": ["--listen=0.0.0.0:9092", "--http-listen", "0.0.0.0:8080",
                             "--advertise=$(POD_IP):9092", "--node-id=$(NODE_ID)"],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NODE_ID", "valueFrom": {"fieldRef":
                            {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}},
                        {"name": "GREETING", "value": "hi-$(POD_NAME)"}
                    ],
                    "envFrom": [{"configMapRef": {"name": "mq-config"}}],
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/sluice"}]
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-mq-1"}}]
            },
            "status": {"podIP": "127.1.0.7", "phase": "Running"}
        }))
        .expect("valid pod json")
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.config_maps.insert(
            "mq-config".into(),
            Some(vars(&[
                ("SLUICE_FSYNC", "interval"),
                ("SLUICE_DEFAULT_PARTITIONS", "3"),
            ])),
        );
        s
    }

    fn secure_broker_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "mq-0", "namespace": "ns1", "uid": "u-0"},
            "spec": {
                "containers": [{
                    "name": "broker",
                    "args": ["--listeners", "CLIENT://0.0.0.0:9092,INTERNAL://0.0.0.0:9094",
                             "--advertised-listeners", "CLIENT://mq-0.h:9092,INTERNAL://mq-0.h:9094"],
                    "env": [{"name": "SLUICE_SSL_CERTIFICATE_FILE", "value": "/etc/sluice/tls/tls.crt"},
                            {"name": "SLUICE_SASL_USERS_FILE", "value": "/etc/sluice/users/users"},
                            {"name": "OTHER", "value": "/etc/sluice/tlsx"}],
                    "volumeMounts": [{"name": "tls", "mountPath": "/etc/sluice/tls"},
                                     {"name": "users", "mountPath": "/etc/sluice/users"}]
                }],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "mq-tls",
                        "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "ca.crt", "path": "ca.crt"}]}},
                    {"name": "users", "secret": {"secretName": "mq-creds"}}
                ]
            },
            "status": {"podIP": "127.1.0.9", "phase": "Running"}
        }))
        .expect("valid pod json")
    }

    #[test]
    fn secret_volumes_become_host_files_and_listener_lists_get_the_pod_ip() {
        let pod = secure_broker_pod();
        let mut sources = Sources::default();
        assert!(matches!(
            launch_spec(&pod, "broker", &sources, Path::new("/w")),
            Err(PodSpecError::MissingSource {
                kind: "Secret volume",
                ..
            })
        ));
        sources.secrets.insert(
            "mq-tls".into(),
            Some(vars(&[
                ("tls.crt", "CERT"),
                ("ca.crt", "CA"),
                ("tls.key", "KEY"),
            ])),
        );
        sources
            .secrets
            .insert("mq-creds".into(), Some(vars(&[("users", "op:pw\n")])));
        let spec = launch_spec(&pod, "broker", &sources, Path::new("/w")).expect("launch");
        assert_eq!(
            spec.args[1],
            "CLIENT://127.1.0.9:9092,INTERNAL://127.1.0.9:9094"
        );
        assert_eq!(spec.args[3], "CLIENT://mq-0.h:9092,INTERNAL://mq-0.h:9094");
        assert!(
            !spec.args.iter().any(|a| a.starts_with("--listen=")),
            "no --listen beside --listeners: {:?}",
            spec.args
        );
        assert_eq!(
            spec.env["SLUICE_SSL_CERTIFICATE_FILE"],
            "/w/pod/ns1/mq-0-u-0/tls/tls.crt"
        );
        assert_eq!(
            spec.env["SLUICE_SASL_USERS_FILE"],
            "/w/pod/ns1/mq-0-u-0/users/users"
        );
        assert_eq!(
            spec.env["OTHER"], "/etc/sluice/tlsx",
            "only whole path prefixes"
        );
        let tls = &spec.secret_volumes[0];
        let files = secret_volume_files(tls, sources.secrets["mq-tls"].as_ref().expect("data"));
        assert_eq!(
            files,
            vec![
                (
                    PathBuf::from("/w/pod/ns1/mq-0-u-0/tls/tls.crt"),
                    "CERT".to_string()
                ),
                (
                    PathBuf::from("/w/pod/ns1/mq-0-u-0/tls/ca.crt"),
                    "CA".to_string()
                ),
            ],
            "only the listed items"
        );
        assert_eq!(
            secret_volume_names(&pod, pick_container(&pod, "broker").expect("c")),
            ["mq-creds", "mq-tls"]
        );
    }

    #[test]
    fn launch_resolves_downward_api_and_rewrites_hosts() {
        let pod = broker_pod();
        let spec = launch_spec(&pod, "broker", &sources(), Path::new("/w")).expect("launch");
        assert_eq!(
            spec.args,
            vec![
                "--listen=127.1.0.7:9092",
                "--http-listen",
                "127.1.0.7:8080",
                "--advertise=127.1.0.7:9092",
                "--node-id=1",
                "--data-dir=/w/pvc/ns1/data-mq-1",
            ]
        );
        assert_eq!(
            spec.env.get("GREETING").map(String::as_str),
            Some("hi-mq-1")
        );
        assert_eq!(
            spec.env.get("SLUICE_FSYNC").map(String::as_str),
            Some("interval")
        );
        assert_eq!(spec.http_addr, "127.1.0.7:8080");
        assert_eq!(spec.data_dir.origin, "pvc ns1/data-mq-1");
        assert_eq!(spec.data_dir.claim.as_deref(), Some("data-mq-1"));
    }

    #[test]
    fn a_recreated_claim_gets_an_empty_volume_and_the_same_claim_keeps_its_data() {
        assert_eq!(volume_action(None, "u1"), VolumeAction::Keep);
        assert_eq!(volume_action(Some("u1\n"), "u1"), VolumeAction::Keep);
        assert_eq!(volume_action(Some(""), "u1"), VolumeAction::Keep);
        assert_eq!(
            volume_action(Some("u0"), "u1"),
            VolumeAction::Wipe {
                old_uid: "u0".into()
            }
        );
        let w = Path::new("/w");
        assert_eq!(
            claim_root(w, "ns1", "data-mq-1"),
            Path::new("/w/pvc/ns1/data-mq-1")
        );
        // beside the folder, never inside the broker's data
        assert_eq!(
            claim_uid_file(w, "ns1", "data-mq-1"),
            Path::new("/w/pvc/ns1/data-mq-1.uid")
        );
    }

    #[test]
    fn missing_listen_flags_are_added_with_pod_ip() {
        let mut pod = broker_pod();
        if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            c.args = Some(vec!["--data-dir=/var/lib/sluice/data".into()]);
        }
        let spec = launch_spec(&pod, "broker", &sources(), Path::new("/w")).expect("launch");
        assert_eq!(
            spec.args,
            vec![
                "--data-dir=/w/pvc/ns1/data-mq-1/data",
                "--listen=127.1.0.7:9092",
                "--http-listen=127.1.0.7:8080",
            ]
        );
    }

    #[test]
    fn env_listen_is_rewritten_and_missing_configmap_is_an_error() {
        let mut s = sources();
        s.config_maps.insert(
            "mq-config".into(),
            Some(vars(&[
                ("SLUICE_HTTP_LISTEN", "0.0.0.0:9000"),
                ("SLUICE_DATA_DIR", "/var/lib/sluice"),
            ])),
        );
        let mut pod = broker_pod();
        if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            c.args = Some(vec![]);
        }
        let spec = launch_spec(&pod, "broker", &s, Path::new("/w")).expect("launch");
        assert_eq!(
            spec.env.get("SLUICE_HTTP_LISTEN").map(String::as_str),
            Some("127.1.0.7:9000")
        );
        assert_eq!(
            spec.env.get("SLUICE_DATA_DIR").map(String::as_str),
            Some("/w/pvc/ns1/data-mq-1")
        );
        assert_eq!(spec.http_addr, "127.1.0.7:9000");

        let err = launch_spec(&pod, "broker", &Sources::default(), Path::new("/w"));
        assert_eq!(
            err,
            Err(PodSpecError::MissingSource {
                pod: "ns1/mq-1".into(),
                kind: "ConfigMap",
                name: "mq-config".into()
            })
        );
    }

    #[test]
    fn pod_without_ip_is_not_launched() {
        let mut pod = broker_pod();
        pod.status = None;
        assert!(matches!(
            launch_spec(&pod, "broker", &sources(), Path::new("/w")),
            Err(PodSpecError::NoPodIp { .. })
        ));
    }

    #[test]
    fn operator_pod_gets_its_cluster_listener_on_the_pod_ip_and_resolvable_seeds() {
        use sluice_operator::builders::{build_children, BuildConfig, SEEDS_KEY};
        let mq: sluice_operator::crd::MessageQueue = serde_yaml::from_str(
            "metadata: {name: q, namespace: shop, uid: u}\nspec: {replicas: 3}\n",
        )
        .expect("mq");
        let children = build_children(&mq, &BuildConfig::default(), None).expect("children");
        let sts_spec = children.statefulset.spec.expect("sts spec");
        // what the StatefulSet controller and kwok make of the template for ordinal 1
        let mut pod = Pod {
            metadata: sts_spec.template.metadata.clone().unwrap_or_default(),
            spec: sts_spec.template.spec.clone(),
            status: serde_json::from_value(json!({"podIP": "127.1.0.9", "phase": "Running"}))
                .expect("status"),
        };
        pod.metadata.name = Some("q-1".into());
        pod.metadata.namespace = Some("shop".into());
        pod.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("apps.kubernetes.io/pod-index".into(), "1".into());
        if let Some(spec) = pod.spec.as_mut() {
            spec.hostname = Some("q-1".into());
            spec.subdomain = sts_spec.service_name.clone();
            spec.volumes.get_or_insert_with(Vec::new).push(
                serde_json::from_value(
                    json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-q-1"}}),
                )
                .expect("volume"),
            );
        }
        let mut sources = Sources::default();
        sources
            .config_maps
            .insert("q-config".into(), children.configmap.data.clone());
        let spec = launch_spec(&pod, "broker", &sources, Path::new("/w")).expect("launch");
        let i = spec
            .args
            .iter()
            .position(|a| a == "--cluster-listen")
            .expect("--cluster-listen given");
        assert_eq!(spec.args[i + 1], "127.1.0.9:9093");
        let seeds = spec.env.get(SEEDS_KEY).expect("seeds in the env");
        let own = format!("{}:9093", crate::hosts::pod_names(&pod, "cluster.local")[0]);
        assert!(
            seeds.split(',').any(|s| s == own),
            "the hosts block names this pod as its seed does: {own} in {seeds}"
        );
    }
}
