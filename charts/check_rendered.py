#!/usr/bin/env python3
"""Assertions on the chart's rendered manifests, and on examples/ against the CRD schema.

  check_rendered.py default  <rendered.yaml> <release-namespace>
  check_rendered.py custom   <rendered.yaml> <release-namespace>
  check_rendered.py examples <crd-dir> <example.yaml>...
  check_rendered.py args     <rendered.yaml>    (prints the operator container's args, one a line)

The `custom` render is the one charts/test.sh makes with watchNamespaces={team-a,team-b},
a ServiceMonitor, leader election off, json logs, logLevel=debug and a broker image and version.
Exits 1 with every failed assertion listed.
"""
import copy
import glob
import sys

import jsonschema
import yaml

FAILURES = []


def check(cond, msg):
    if not cond:
        FAILURES.append(msg)
    return cond


# Least privilege: exactly these (apiGroup, resource) -> verbs in each watched namespace.
# Keep in step with charts/sluice/templates/_rbac.tpl and with what the operator calls.
NAMESPACED_RULES = {
    ("sluice.dev", "messagequeues"): {"get", "list", "watch", "patch"},
    ("sluice.dev", "messagequeues/status"): {"patch"},
    ("sluice.dev", "messagequeues/finalizers"): {"update"},
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch"},
    ("", "services"): {"get", "list", "watch", "create", "patch"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch"},
    ("", "pods"): {"get", "list", "watch", "delete"},
    ("", "persistentvolumeclaims"): {"get", "list", "patch", "delete"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"get", "create", "patch", "delete"},
    ("cert-manager.io", "certificates"): {"get", "create", "patch"},
}
# Cluster-scoped reads, granted whichever namespaces are watched.
CLUSTER_RULES = {("", "nodes"): {"get"}, ("", "namespaces"): {"get"}}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
NAMESPACED_KINDS = {"Deployment", "ServiceAccount", "Service", "Role", "RoleBinding", "ServiceMonitor"}


def load(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for d in docs:
        where = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        check(d.get("apiVersion") and d.get("kind"), f"{where}: apiVersion and kind set")
        check(d.get("metadata", {}).get("name"), f"{where}: metadata.name set")
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name_suffix=""):
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    check(len(found) == 1, f"exactly one {kind} *{name_suffix}, found {len(found)}")
    return found[0] if found else {}


def granted(rules):
    """(group, resource) -> verbs, refusing wildcards and resourceNames-free surprises."""
    out = {}
    for r in rules:
        for field in ("apiGroups", "resources", "verbs"):
            check("*" not in r.get(field, []), f"rule {r}: no wildcard in {field}")
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                out.setdefault((g, res), set()).update(r.get("verbs", []))
    return out


def check_rules(where, rules, expected):
    got = granted(rules)
    for key in sorted(set(got) | set(expected)):
        check(got.get(key) == expected.get(key),
              f"{where}: {key} verbs {sorted(got.get(key, []))} != expected {sorted(expected.get(key, []))}")


def check_binding(where, binding, role_kind, role_name, sa, ns):
    check(binding.get("roleRef", {}).get("kind") == role_kind, f"{where}: roleRef.kind {role_kind}")
    check(binding.get("roleRef", {}).get("name") == role_name, f"{where}: roleRef.name {role_name}")
    subjects = binding.get("subjects", [])
    check(subjects == [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
          f"{where}: only subject is ServiceAccount {ns}/{sa}, got {subjects}")


def check_common(docs, ns):
    for d in docs:
        if d["kind"] in NAMESPACED_KINDS and d["kind"] not in ("Role", "RoleBinding"):
            check(d["metadata"].get("namespace") == ns, f"{d['kind']}/{d['metadata']['name']} in {ns}")
        if d["kind"] != "CustomResourceDefinition":
            labels = d["metadata"].get("labels", {})
            for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                        "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"):
                check(key in labels, f"{d['kind']}/{d['metadata']['name']}: label {key}")

    dep = one(docs, "Deployment")
    spec = dep.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    pod_labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
    selector = spec.get("selector", {}).get("matchLabels", {})
    check(selector and selector.items() <= pod_labels.items(), "Deployment selector matches its pod labels")

    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot true")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile RuntimeDefault")
    check(isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] != 0, "pod runs as a non-zero uid")

    sa = one(docs, "ServiceAccount")
    sa_name = sa.get("metadata", {}).get("name")
    check(pod.get("serviceAccountName") == sa_name, "Deployment uses the chart's ServiceAccount")

    containers = pod.get("containers", [])
    check(len(containers) == 1, "one operator container")
    c = containers[0] if containers else {}
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, "container readOnlyRootFilesystem true")
    check(sc.get("allowPrivilegeEscalation") is False, "container allowPrivilegeEscalation false")
    check(sc.get("privileged") in (None, False), "container not privileged")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "container drops ALL capabilities")
    check(not sc.get("capabilities", {}).get("add"), "container adds no capabilities")
    check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "container seccompProfile RuntimeDefault")

    res = c.get("resources", {})
    check(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory"), "cpu/memory requests set")
    check(res.get("limits", {}).get("memory"), "memory limit set")
    port = {p["name"]: p["containerPort"] for p in c.get("ports", [])}.get("http")
    check(port == 8080, f"container port http is 8080, got {port}")
    check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness probe on /healthz")
    check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness probe on /readyz")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          "POD_NAMESPACE from the downward API")
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          "POD_NAME from the downward API")
    raw_args = c.get("args", [])
    args = [a for a in raw_args if isinstance(a, str)]
    check(args[:1] == ["run"], f"first argument is the run subcommand, got {args[:1]}")
    for a in raw_args + [e.get("value", "") for e in c.get("env", [])]:
        check(isinstance(a, str) and not any(bad in a for bad in ("map[", "<nil>", "%!", "[]")),
              f"argument/env value {a!r} is a plain string, not a rendered Go value")

    svc = one(docs, "Service", "-metrics")
    check(svc.get("spec", {}).get("selector", {}).items() <= pod_labels.items(), "metrics Service selects the operator pods")
    check([p.get("targetPort") for p in svc.get("spec", {}).get("ports", [])] == ["http"], "metrics Service targets port http")

    for d in docs:
        check(d["kind"] != "Secret", "the chart creates no Secret")
    return c, env, args, sa_name


def mode_default(docs, ns):
    c, env, args, sa = check_common(docs, ns)
    crds = by_kind(docs, "CustomResourceDefinition")
    check([d["metadata"]["name"] for d in crds] == ["messagequeues.sluice.dev"], "the MessageQueue CRD is rendered")
    check(not by_kind(docs, "ServiceMonitor"), "no ServiceMonitor by default")
    check(env.get("RUST_LOG", {}).get("value") == "info", "RUST_LOG=info by default")
    check("--log-format=text" in args, "--log-format=text by default")
    check("--leader-election=true" in args, "leader election on by default")
    check("strategy" not in one(docs, "Deployment").get("spec", {}),
          "with leader election the Deployment rolls (the new pod waits for the Lease)")
    check(not any(a.startswith("--namespaces") for a in args), "all namespaces watched by default")
    check("--http-listen=0.0.0.0:8080" in args, "--http-listen on the probed port")
    check(not any(a.startswith("--broker-image-repository") or a.startswith("--default-broker-version")
                  for a in args), "broker image and version: operator defaults")
    check("--cluster-domain=cluster.local" in args, "--cluster-domain=cluster.local by default")

    cr = one(docs, "ClusterRole")
    check_rules("ClusterRole", cr.get("rules", []), {**NAMESPACED_RULES, **CLUSTER_RULES})
    check_binding("ClusterRoleBinding", one(docs, "ClusterRoleBinding"), "ClusterRole", cr["metadata"]["name"], sa, ns)
    lease_role = one(docs, "Role", "-leader-election")
    check(lease_role["metadata"].get("namespace") == ns, "the Lease Role is in the release namespace")
    check_rules("lease Role", lease_role.get("rules", []), LEASE_RULES)
    check_binding("lease RoleBinding", one(docs, "RoleBinding", "-leader-election"), "Role",
                  lease_role["metadata"]["name"], sa, ns)
    check(len(by_kind(docs, "Role")) == 1, "no per-namespace Roles when watching all namespaces")


def mode_custom(docs, ns):
    c, env, args, sa = check_common(docs, ns)
    check(not by_kind(docs, "CustomResourceDefinition"), "no CRD without --include-crds")
    check(env.get("RUST_LOG", {}).get("value") == "debug", "RUST_LOG from logLevel")
    check("--log-format=json" in args, "--log-format=json from logFormat")
    check("--leader-election=false" in args, "--leader-election=false")
    dep = one(docs, "Deployment")
    check(dep.get("spec", {}).get("strategy", {}).get("type") == "Recreate",
          "without leader election the Deployment never runs two operators at once (Recreate)")
    check("--namespaces=team-a,team-b" in args, "--namespaces from watchNamespaces")
    check("--broker-image-repository=registry.example/sluice-broker" in args, "--broker-image-repository")
    check("--default-broker-version=0.2.0" in args, "--default-broker-version")
    check("--cluster-domain=corp.example" in args, "--cluster-domain from clusterDomain")

    cr = one(docs, "ClusterRole")
    check_rules("ClusterRole (watchNamespaces set)", cr.get("rules", []), CLUSTER_RULES)
    check_binding("ClusterRoleBinding", one(docs, "ClusterRoleBinding"), "ClusterRole", cr["metadata"]["name"], sa, ns)
    roles = {r["metadata"].get("namespace"): r for r in by_kind(docs, "Role")}
    bindings = {b["metadata"].get("namespace"): b for b in by_kind(docs, "RoleBinding")}
    check(sorted(roles) == ["team-a", "team-b"], f"one Role per watched namespace and no Lease Role, got {sorted(roles)}")
    for wns in ("team-a", "team-b"):
        if check(wns in roles and wns in bindings, f"Role and RoleBinding in {wns}"):
            check_rules(f"Role in {wns}", roles[wns].get("rules", []), NAMESPACED_RULES)
            check_binding(f"RoleBinding in {wns}", bindings[wns], "Role", roles[wns]["metadata"]["name"], sa, ns)

    sm = one(docs, "ServiceMonitor")
    svc = one(docs, "Service", "-metrics")
    svc_ports = [p["name"] for p in svc.get("spec", {}).get("ports", [])]
    check([e.get("port") for e in sm.get("spec", {}).get("endpoints", [])] == svc_ports,
          "ServiceMonitor scrapes the metrics Service port")
    check(sm.get("spec", {}).get("selector", {}).get("matchLabels", {}).items()
          <= svc["metadata"].get("labels", {}).items(), "ServiceMonitor selects the metrics Service")


def strict_schema(schema):
    """OpenAPI v3 (structural CRD schema) -> JSON Schema that refuses unknown fields, as
    `kubectl apply` does with its default --validate=strict, and accepts null where nullable."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("nullable") and "type" in node:
                node["type"] = [node["type"], "null"]
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    # The API server knows these without the CRD declaring them.
    props = s.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props.setdefault("metadata", {"type": "object"})
    return s


def mode_examples(crd_dir, paths):
    crds = []
    for p in sorted(glob.glob(f"{crd_dir}/*.yaml")):
        with open(p) as f:
            crds += [d for d in yaml.safe_load_all(f) if d]
    crd = next((d for d in crds if d["metadata"]["name"] == "messagequeues.sluice.dev"), None)
    if not check(crd is not None, f"messagequeues.sluice.dev CRD in {crd_dir}"):
        return
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    versions = {f"{group}/{v['name']}": strict_schema(v["schema"]["openAPIV3Schema"])
                for v in crd["spec"]["versions"] if v.get("served")}
    count = 0
    for path in paths:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc:
                    continue
                count += 1
                where = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                if not check(doc.get("kind") == kind and doc.get("apiVersion") in versions,
                             f"{where}: a {kind} of a served version {sorted(versions)}"):
                    continue
                validator = jsonschema.Draft7Validator(versions[doc["apiVersion"]])
                for err in validator.iter_errors(doc):
                    check(False, f"{where}: {'.'.join(map(str, err.absolute_path))}: {err.message}")
    check(count >= 2, f"at least two example manifests, found {count}")
    print(f"validated {count} example manifests against {sorted(versions)}")


def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    if mode in ("default", "custom") and len(argv) == 4:
        docs = load(argv[2])
        (mode_default if mode == "default" else mode_custom)(docs, argv[3])
        print(f"{mode}: {len(docs)} rendered objects checked")
    elif mode == "args" and len(argv) == 3:
        dep = one(load(argv[2]), "Deployment")
        containers = dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
        print("\n".join(containers[0].get("args", [])))
    elif mode == "examples" and len(argv) >= 4:
        mode_examples(argv[2], argv[3:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for f in FAILURES:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
