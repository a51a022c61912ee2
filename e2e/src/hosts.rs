//! Pod DNS for the e2e cluster, through a marked block of `/etc/hosts`: the pure part.
//!
//! The kwok cluster has no cluster DNS, but brokers find each other by the stable names the
//! headless Service gives StatefulSet pods (`<pod>.<service>.<ns>.svc.<domain>`, the operator's
//! seeds). The pod runner keeps one block of the hosts file, between [`BEGIN`] and [`END`], that maps
//! each running broker pod's names to its pod IP, rewrites it when pods come and go, and removes it
//! when it stops (`e2e/scripts/cluster.sh down` removes a block left by a killed runner). Nothing
//! outside the block is ever changed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// First line of the managed block.
pub const BEGIN: &str =
    "# BEGIN sluice-e2e pod-runner: pod DNS (managed; removed by cluster.sh down)";
/// Last line of the managed block.
pub const END: &str = "# END sluice-e2e pod-runner";

/// The DNS names Kubernetes gives a pod with `hostname` and `subdomain` (a StatefulSet pod behind
/// its headless Service), longest first: `<host>.<sub>.<ns>.svc.<domain>`, `<host>.<sub>.<ns>.svc`,
/// `<host>.<sub>.<ns>` and `<host>.<sub>` (the forms a resolver with the pod's search path would
/// try). A pod without both has no such names.
pub fn pod_names(pod: &Pod, cluster_domain: &str) -> Vec<String> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let host = spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone());
    let (Some(host), Some(sub), Some(ns)) = (
        host,
        spec.subdomain.as_deref().filter(|s| !s.is_empty()),
        pod.metadata.namespace.as_deref(),
    ) else {
        return Vec::new();
    };
    let short = format!("{host}.{sub}");
    let with_ns = format!("{short}.{ns}");
    let svc = format!("{with_ns}.svc");
    vec![format!("{svc}.{cluster_domain}"), svc, with_ns, short]
}

/// `text` with the managed block replaced by one line per IP in `entries` (IP → names), or
/// removed when `entries` is empty. Lines outside the block are kept as they are; a missing block
/// is appended at the end; an unterminated block (a torn write) is dropped up to the end of the file.
pub fn rewrite(text: &str, entries: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.lines() {
        if line == BEGIN {
            inside = true;
            continue;
        }
        if inside {
            if line == END {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if entries.is_empty() {
        return out;
    }
    out.push_str(BEGIN);
    out.push('\n');
    for (ip, names) in entries {
        if names.is_empty() {
            continue;
        }
        out.push_str(ip);
        for name in names {
            out.push(' ');
            out.push_str(name);
        }
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// Rewrites the managed block of the file at `path` (a missing file counts as empty). The file is
/// written in place (truncate and write, no rename: `/etc/hosts` is often a bind mount that cannot
/// be replaced) and only when the content changes. Returns whether it wrote.
pub fn sync_file(
    path: &std::path::Path,
    entries: &BTreeMap<String, Vec<String>>,
) -> std::io::Result<bool> {
    let current = match std::fs::read_to_string(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let content = rewrite(&current, entries);
    if current == content {
        return Ok(false);
    }
    std::fs::write(path, content)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod parses")
    }

    fn entries(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(ip, names)| {
                (
                    ip.to_string(),
                    names.iter().map(|n| n.to_string()).collect(),
                )
            })
            .collect()
    }

    const HOSTS: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n";

    #[test]
    fn statefulset_pod_gets_its_headless_service_names() {
        let p = pod(r#"
metadata: {name: q-2, namespace: shop}
spec: {hostname: q-2, subdomain: q-brokers, containers: []}
"#);
        assert_eq!(
            pod_names(&p, "cluster.local"),
            [
                "q-2.q-brokers.shop.svc.cluster.local",
                "q-2.q-brokers.shop.svc",
                "q-2.q-brokers.shop",
                "q-2.q-brokers"
            ]
        );
        let no_subdomain = pod("metadata: {name: x, namespace: shop}\nspec: {containers: []}");
        assert!(pod_names(&no_subdomain, "cluster.local").is_empty());
        let no_hostname =
            pod("metadata: {name: q-0, namespace: a}\nspec: {subdomain: s, containers: []}");
        assert_eq!(pod_names(&no_hostname, "c.l")[0], "q-0.s.a.svc.c.l");
    }

    #[test]
    fn block_is_appended_and_the_rest_kept() {
        let out = rewrite(
            HOSTS,
            &entries(&[("127.1.0.5", &["q-0.q-brokers", "q-0.x"])]),
        );
        assert_eq!(
            out,
            format!("{HOSTS}{BEGIN}\n127.1.0.5 q-0.q-brokers q-0.x\n{END}\n")
        );
    }

    #[test]
    fn block_is_replaced_in_place_and_removed_when_empty() {
        let before =
            format!("127.0.0.1 localhost\n{BEGIN}\n127.1.0.5 old\n{END}\n10.0.0.1 after\n");
        let out = rewrite(
            &before,
            &entries(&[("127.1.1.2", &["b"]), ("127.1.0.9", &["a"])]),
        );
        assert_eq!(
            out,
            format!(
                "127.0.0.1 localhost\n10.0.0.1 after\n{BEGIN}\n127.1.0.9 a\n127.1.1.2 b\n{END}\n"
            )
        );
        assert_eq!(
            rewrite(&out, &BTreeMap::new()),
            "127.0.0.1 localhost\n10.0.0.1 after\n"
        );
        // idempotent
        assert_eq!(
            rewrite(
                &out,
                &entries(&[("127.1.1.2", &["b"]), ("127.1.0.9", &["a"])])
            ),
            out
        );
    }

    #[test]
    fn torn_block_is_dropped_and_a_missing_newline_is_added() {
        let torn = format!("127.0.0.1 localhost\n{BEGIN}\n127.1.0.5 half");
        assert_eq!(rewrite(&torn, &BTreeMap::new()), "127.0.0.1 localhost\n");
        assert_eq!(
            rewrite("127.0.0.1 localhost", &BTreeMap::new()),
            "127.0.0.1 localhost\n"
        );
    }

    #[test]
    fn cluster_sh_removes_the_same_block() {
        let script = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh"),
        )
        .expect("e2e/scripts/cluster.sh");
        assert!(script.contains(&format!("HOSTS_BEGIN=\"{BEGIN}\"")));
        assert!(script.contains(&format!("HOSTS_END=\"{END}\"")));
    }

    #[test]
    fn sync_file_writes_only_changes_and_restores_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-hosts-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("hosts");
        std::fs::write(&file, HOSTS).expect("seed");
        let e = entries(&[("127.1.0.5", &["a"])]);
        assert!(sync_file(&file, &e).expect("write"));
        assert!(!sync_file(&file, &e).expect("no-op"));
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            rewrite(HOSTS, &e)
        );
        assert!(sync_file(&file, &BTreeMap::new()).expect("remove"));
        assert_eq!(std::fs::read_to_string(&file).expect("read"), HOSTS);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
