use super::*;

fn mq(yaml: &str) -> MessageQueue {
    serde_yaml::from_str(yaml).expect("test manifest parses")
}

const MINIMAL: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: MessageQueue
metadata: {name: orders, namespace: shop, uid: 1234-abcd}
spec: {}
"#;

fn cfg() -> BuildConfig {
    BuildConfig {
        image_repository: "ghcr.io/sluice/sluice-broker".into(),
        default_version: "0.1.0".into(),
        cluster_domain: "cluster.local".into(),
        operator_namespace: "sluice-system".into(),
    }
}

fn as_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("serialises")
}

#[test]
fn minimal_spec_gets_the_documented_defaults() {
    let mq = mq(MINIMAL);
    assert_eq!(mq.spec.replicas, 3);
    assert_eq!(mq.spec.storage.size, "10Gi");
    assert!(!mq.spec.storage.delete_claim);
    assert_eq!(mq.spec.service.port, 9092);
    assert_eq!(mq.spec.disruption_budget.max_unavailable, 1);
    assert!(!mq.spec.paused);
}

#[test]
fn every_child_has_labels_and_a_controller_owner_reference() {
    let mq = mq(MINIMAL);
    let c = build_children(&mq, &cfg(), None).expect("builds");
    let metas = [
        &c.configmap.metadata,
        &c.headless_service.metadata,
        &c.client_service.metadata,
        &c.statefulset.metadata,
        &c.pdb.metadata,
    ];
    for meta in metas {
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/name"], "sluice-broker");
        assert_eq!(labels["app.kubernetes.io/instance"], "orders");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "sluice-operator");
        assert_eq!(labels["app.kubernetes.io/version"], "0.1.0");
        let owners = meta.owner_references.as_ref().expect("owner refs");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "MessageQueue");
        assert_eq!(owners[0].api_version, "sluice.dev/v1alpha1");
        assert_eq!(owners[0].uid, "1234-abcd");
        assert_eq!(owners[0].controller, Some(true));
    }
    assert_eq!(c.configmap.metadata.name.as_deref(), Some("orders-config"));
    assert_eq!(
        c.headless_service.metadata.name.as_deref(),
        Some("orders-brokers")
    );
    assert_eq!(c.client_service.metadata.name.as_deref(), Some("orders"));
}

#[test]
fn building_without_uid_fails_naming_the_field() {
    let mut m = mq(MINIMAL);
    m.metadata.uid = None;
    let err = build_configmap(&m, &cfg(), 3).expect_err("needs a uid");
    assert!(err.to_string().contains("metadata.uid"), "{err}");
}

#[test]
fn configmap_holds_the_set_broker_settings_and_the_seeds_as_sluice_keys() {
    let m = mq(r#"
metadata: {name: q, namespace: ns, uid: u}
spec:
  config:
    defaultPartitions: 6
    retentionMs: -1
    fsync: interval
    fsyncIntervalMs: 250
    autoCreateTopics: false
"#);
    let cm = build_configmap(&m, &cfg(), 2).expect("builds");
    let expected: BTreeMap<String, String> = serde_yaml::from_str(
        r#"
SLUICE_DEFAULT_PARTITIONS: "6"
SLUICE_RETENTION_MS: "-1"
SLUICE_FSYNC: interval
SLUICE_FSYNC_INTERVAL_MS: "250"
SLUICE_AUTO_CREATE_TOPICS: "false"
SLUICE_DEFAULT_REPLICATION_FACTOR: "3"
SLUICE_MIN_INSYNC_REPLICAS: "2"
SLUICE_SEEDS: "q-0.q-brokers.ns.svc.cluster.local:9093,q-1.q-brokers.ns.svc.cluster.local:9093"
"#,
    )
    .expect("yaml");
    assert_eq!(cm.data, Some(expected));
    let minimal = build_configmap(&mq(MINIMAL), &cfg(), 3)
        .expect("builds")
        .data
        .expect("data");
    assert_eq!(
        minimal.keys().collect::<Vec<_>>(),
        [
            "SLUICE_DEFAULT_REPLICATION_FACTOR",
            "SLUICE_MIN_INSYNC_REPLICAS",
            SEEDS_KEY
        ]
    );
    // one broker: the replication defaults are the brokers' own, so nothing is added
    let single = mq(r#"
metadata: {name: q, namespace: ns, uid: u}
spec: {replicas: 1}
"#);
    let single = build_configmap(&single, &cfg(), 1)
        .expect("builds")
        .data
        .expect("data");
    assert_eq!(single.keys().collect::<Vec<_>>(), [SEEDS_KEY]);
}

#[test]
fn replication_defaults_follow_replicas_unless_set() {
    let env = |spec: &str| {
        broker_env(&mq(&format!(
            "metadata: {{name: q, namespace: ns, uid: u}}\nspec: {spec}"
        )))
    };
    let pair = |e: &BTreeMap<String, String>| {
        (
            e.get("SLUICE_DEFAULT_REPLICATION_FACTOR").cloned(),
            e.get("SLUICE_MIN_INSYNC_REPLICAS").cloned(),
        )
    };
    let some = |rf: &str, min: &str| (Some(rf.to_string()), Some(min.to_string()));
    assert_eq!(pair(&env("{replicas: 1}")), (None, None));
    assert_eq!(pair(&env("{replicas: 2}")), (Some("2".to_string()), None));
    assert_eq!(pair(&env("{replicas: 3}")), some("3", "2"));
    assert_eq!(pair(&env("{replicas: 7}")), some("3", "2"));
    // set values win, and a set replication factor decides the derived min.insync.replicas
    assert_eq!(
        pair(&env("{replicas: 5, config: {defaultReplicationFactor: 5}}")),
        some("5", "2")
    );
    assert_eq!(
        pair(&env("{replicas: 5, config: {defaultReplicationFactor: 2}}")),
        (Some("2".to_string()), None)
    );
    assert_eq!(
        pair(&env(
            "{replicas: 3, config: {defaultReplicationFactor: 1, minInsyncReplicas: 1}}"
        )),
        some("1", "1")
    );
}

#[test]
fn headless_service_publishes_not_ready_pods_on_both_ports() {
    let svc = build_headless_service(&mq(MINIMAL), &cfg()).expect("builds");
    let expected: serde_json::Value = serde_yaml::from_str(
        r#"
clusterIP: None
publishNotReadyAddresses: true
selector: {app.kubernetes.io/instance: orders, app.kubernetes.io/name: sluice-broker}
ports:
- {name: kafka, port: 9092, targetPort: kafka, protocol: TCP}
- {name: http, port: 8080, targetPort: http, protocol: TCP}
- {name: cluster, port: 9093, targetPort: cluster, protocol: TCP}
"#,
    )
    .expect("yaml");
    assert_eq!(as_json(&svc.spec), expected);
}

#[test]
fn client_service_uses_type_port_and_annotations_from_spec() {
    let m = mq(r#"
metadata: {name: orders, namespace: shop, uid: u}
spec:
  service: {type: LoadBalancer, port: 19092, annotations: {lb.example/internal: "true"}}
"#);
    let svc = build_client_service(&m, &cfg()).expect("builds");
    let expected: serde_json::Value = serde_yaml::from_str(
        r#"
type: LoadBalancer
selector: {app.kubernetes.io/instance: orders, app.kubernetes.io/name: sluice-broker}
ports:
- {name: kafka, port: 19092, targetPort: kafka, protocol: TCP}
"#,
    )
    .expect("yaml");
    assert_eq!(as_json(&svc.spec), expected);
    assert_eq!(
        svc.metadata.annotations.expect("annotations")["lb.example/internal"],
        "true"
    );
    assert_eq!(
        Names::of(&m).expect("names").bootstrap_servers(19092),
        "orders.shop.svc:19092"
    );
}

#[test]
fn pdb_uses_max_unavailable_and_the_pod_selector() {
    let m = mq(r#"
metadata: {name: orders, namespace: shop, uid: u}
spec: {disruptionBudget: {maxUnavailable: 2}}
"#);
    let pdb = build_pdb(&m, &cfg()).expect("builds");
    let expected: serde_json::Value = serde_yaml::from_str(
        r#"
maxUnavailable: 2
selector: {matchLabels: {app.kubernetes.io/instance: orders, app.kubernetes.io/name: sluice-broker}}
"#,
    )
    .expect("yaml");
    assert_eq!(as_json(&pdb.spec), expected);
}

#[test]
fn statefulset_runs_the_broker_per_the_flag_contract() {
    let sts = build_statefulset(&mq(MINIMAL), &cfg(), None).expect("builds");
    let spec = sts.spec.expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("orders-brokers"));
    assert_eq!(
        spec.update_strategy.and_then(|s| s.type_).as_deref(),
        Some("OnDelete")
    );
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let pod = spec.template.spec.expect("pod spec");
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("ghcr.io/sluice/sluice-broker:0.1.0")
    );
    let expected_args: Vec<String> = serde_yaml::from_str(
            r#"[--data-dir, /var/lib/sluice, --listen, "0.0.0.0:9092", --http-listen, "0.0.0.0:8080",
                --cluster-listen, "0.0.0.0:9093", --advertise, "$(POD_IP):9092", --node-id, "$(POD_INDEX)",
                --cluster-advertise, "$(POD_NAME).orders-brokers.shop.svc.cluster.local:9093"]"#,
        )
        .expect("yaml");
    assert_eq!(c.args.as_ref(), Some(&expected_args));
    let env = as_json(&c.env);
    let expected_env: serde_json::Value = serde_yaml::from_str(
            r#"
- {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
- {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
- {name: POD_INDEX, valueFrom: {fieldRef: {fieldPath: "metadata.labels['apps.kubernetes.io/pod-index']"}}}
"#,
        )
        .expect("yaml");
    assert_eq!(env, expected_env);
    assert_eq!(
        as_json(&c.env_from),
        serde_json::json!([{"configMapRef": {"name": "orders-config", "optional": false}}])
    );
    let ports: Vec<(Option<&str>, i32)> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("kafka"), 9092),
            (Some("http"), 8080),
            (Some("cluster"), 9093)
        ]
    );
    let readiness = c.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref());
    assert_eq!(readiness.and_then(|h| h.path.as_deref()), Some("/readyz"));
    let liveness = c.liveness_probe.as_ref().and_then(|p| p.http_get.as_ref());
    assert_eq!(liveness.and_then(|h| h.path.as_deref()), Some("/healthz"));
    let mounts = c.volume_mounts.as_ref().expect("mounts");
    assert!(mounts
        .iter()
        .any(|m| m.name == "data" && m.mount_path == "/var/lib/sluice"));
}

#[test]
fn broker_pods_are_locked_down_by_default() {
    let sts = build_statefulset(&mq(MINIMAL), &cfg(), None).expect("builds");
    let pod = sts.spec.expect("spec").template.spec.expect("pod");
    let expected_container: serde_json::Value = serde_yaml::from_str(
        r#"
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
"#,
    )
    .expect("yaml");
    assert_eq!(
        as_json(&pod.containers[0].security_context),
        expected_container
    );
    let psc = pod.security_context.expect("pod security context");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
}

#[test]
fn volume_claim_template_uses_size_and_storage_class() {
    let m = mq(r#"
metadata: {name: orders, namespace: shop, uid: u}
spec: {storage: {size: 50Gi, storageClassName: fast}}
"#);
    let sts = build_statefulset(&m, &cfg(), None).expect("builds");
    let vct = &sts.spec.expect("spec").volume_claim_templates.expect("vct")[0];
    let expected: serde_json::Value = serde_yaml::from_str(
        r#"
accessModes: [ReadWriteOnce]
storageClassName: fast
resources: {requests: {storage: 50Gi}}
"#,
    )
    .expect("yaml");
    assert_eq!(as_json(&vct.spec), expected);
    assert_eq!(vct.metadata.name.as_deref(), Some("data"));
}

#[test]
fn existing_claim_template_is_kept_because_it_is_immutable() {
    let old = mq(MINIMAL);
    let existing = claim_template(&old, &cfg()).expect("builds");
    let grown = mq(r#"
metadata: {name: orders, namespace: shop, uid: 1234-abcd}
spec: {storage: {size: 20Gi}}
"#);
    let sts = build_statefulset(&grown, &cfg(), Some(existing.clone())).expect("builds");
    assert_eq!(
        sts.spec.expect("spec").volume_claim_templates,
        Some(vec![existing])
    );
}

#[test]
fn config_change_changes_the_pod_template_hash_and_nothing_else_does() {
    let a = build_statefulset(&mq(MINIMAL), &cfg(), None).expect("builds");
    let b_mq = mq(r#"
metadata: {name: orders, namespace: shop, uid: 1234-abcd}
spec: {config: {retentionMs: 1000}}
"#);
    let b = build_statefulset(&b_mq, &cfg(), None).expect("builds");
    let hash = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| {
                m.annotations
                    .as_ref()
                    .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
            })
    };
    assert!(hash(&a).is_some());
    assert_ne!(hash(&a), hash(&b));
    let a2 = build_statefulset(&mq(MINIMAL), &cfg(), None).expect("builds");
    assert_eq!(hash(&a), hash(&a2), "hash is deterministic");
    // pinned value: a changed hash function would restart every broker on operator upgrade
    assert_eq!(config_hash(&BTreeMap::new()), "cbf29ce484222325");
}

#[test]
fn seeds_name_every_replica_by_its_stable_dns_name() {
    let names = Names::of(&mq(MINIMAL)).expect("names");
    assert_eq!(
        seeds(&names, 3, "cluster.local"),
        "orders-0.orders-brokers.shop.svc.cluster.local:9093,\
             orders-1.orders-brokers.shop.svc.cluster.local:9093,\
             orders-2.orders-brokers.shop.svc.cluster.local:9093"
    );
    assert_eq!(
        seeds(&names, 1, "corp.example"),
        "orders-0.orders-brokers.shop.svc.corp.example:9093"
    );
    // never empty, also for replicas 0 (a broker started then still has ordinal 0 to ask)
    assert_eq!(
        seeds(&names, 0, "cluster.local"),
        seeds(&names, 1, "cluster.local")
    );
}

#[test]
fn a_scale_across_three_brokers_changes_the_replication_defaults_and_so_the_template() {
    // Every broker must create topics with the same defaults, so they roll to take new ones.
    let template = |replicas: i32| {
        let m = mq(&format!(
            "metadata: {{name: orders, namespace: shop, uid: 1234-abcd}}\nspec: {{replicas: {replicas}}}"
        ));
        as_json(
            &build_children(&m, &cfg(), None)
                .expect("builds")
                .statefulset
                .spec
                .expect("spec")
                .template,
        )
    };
    assert_ne!(template(2), template(3));
    assert_ne!(template(1), template(2));
    // setting them pins them: no roll on such a scale
    let pinned = |replicas: i32| {
        let m = mq(&format!(
            "metadata: {{name: orders, namespace: shop, uid: 1234-abcd}}\nspec: {{replicas: {replicas}, config: {{defaultReplicationFactor: 2, minInsyncReplicas: 1}}}}"
        ));
        as_json(
            &build_children(&m, &cfg(), None)
                .expect("builds")
                .statefulset
                .spec
                .expect("spec")
                .template,
        )
    };
    assert_eq!(pinned(2), pinned(3));
}

#[test]
fn scaling_from_three_brokers_up_changes_the_seeds_but_never_the_pod_template() {
    let three = mq(MINIMAL);
    let five = mq(r#"
metadata: {name: orders, namespace: shop, uid: 1234-abcd}
spec: {replicas: 5}
"#);
    let a = build_children(&three, &cfg(), None).expect("builds");
    let b = build_children(&five, &cfg(), None).expect("builds");
    let template = |c: &Children| as_json(&c.statefulset.spec.as_ref().expect("spec").template);
    assert_eq!(
        template(&a),
        template(&b),
        "a scale must not roll the brokers"
    );
    let seeds_of = |c: &Children| {
        c.configmap
            .data
            .as_ref()
            .and_then(|d| d.get(SEEDS_KEY).cloned())
            .expect("seeds")
    };
    assert_eq!(seeds_of(&a).split(',').count(), 3);
    assert_eq!(seeds_of(&b).split(',').count(), 5);
    assert!(seeds_of(&b).ends_with("orders-4.orders-brokers.shop.svc.cluster.local:9093"));
}

#[test]
fn version_and_image_resolution() {
    let pinned = mq(r#"
metadata: {name: orders, namespace: shop, uid: u}
spec: {version: 0.2.0}
"#);
    assert_eq!(image(&pinned, &cfg()), "ghcr.io/sluice/sluice-broker:0.2.0");
    let custom = mq(r#"
metadata: {name: orders, namespace: shop, uid: u}
spec: {version: 0.2.0, image: "registry.local/broker@sha256:abc"}
"#);
    assert_eq!(image(&custom, &cfg()), "registry.local/broker@sha256:abc");
    assert_eq!(target_version(&custom, &cfg()), "0.2.0");
    assert_eq!(target_version(&mq(MINIMAL), &cfg()), "0.1.0");
}

#[test]
fn pod_template_overrides_are_merged_but_operator_labels_win() {
    let m = mq(r#"
metadata: {name: orders, namespace: shop, uid: u}
spec:
  resources: {requests: {cpu: "2"}}
  podTemplate:
    labels: {team: payments, app.kubernetes.io/instance: hijack}
    annotations: {prometheus.io/scrape: "true"}
    nodeSelector: {disk: ssd}
    priorityClassName: high
    tolerations: [{key: dedicated, operator: Equal, value: kafka, effect: NoSchedule}]
    affinity:
      podAntiAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {app.kubernetes.io/instance: orders}}
    topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway}
"#);
    let sts = build_statefulset(&m, &cfg(), None).expect("builds");
    let tpl = sts.spec.expect("spec").template;
    let meta = tpl.metadata.expect("meta");
    let labels = meta.labels.expect("labels");
    assert_eq!(labels["team"], "payments");
    assert_eq!(labels["app.kubernetes.io/instance"], "orders");
    let annotations = meta.annotations.expect("annotations");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert!(annotations.contains_key(CONFIG_HASH_ANNOTATION));
    let pod = tpl.spec.expect("pod");
    assert_eq!(pod.node_selector.expect("ns")["disk"], "ssd");
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    assert_eq!(pod.tolerations.expect("tol").len(), 1);
    assert!(pod.affinity.and_then(|a| a.pod_anti_affinity).is_some());
    assert_eq!(pod.topology_spread_constraints.expect("tsc").len(), 1);
    assert_eq!(
        as_json(&pod.containers[0].resources),
        serde_json::json!({"requests": {"cpu": "2"}})
    );
}

#[test]
fn selector_string_matches_the_selector_labels() {
    assert_eq!(
        selector_string("orders"),
        "app.kubernetes.io/instance=orders,app.kubernetes.io/name=sluice-broker"
    );
}

const SECURE: &str = r#"
apiVersion: sluice.dev/v1alpha1
kind: MessageQueue
metadata: {name: orders, namespace: shop, uid: 1234-abcd}
spec:
  tls: {}
  authentication: {type: scram-sha-512}
  users: [{name: app}]
"#;

fn container(sts: &StatefulSet) -> &Container {
    &sts.spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod")
        .containers[0]
}

#[test]
fn a_plain_spec_keeps_the_single_plaintext_listener() {
    let mq = mq(MINIMAL);
    let sts = build_statefulset(&mq, &cfg(), None).expect("builds");
    let args = container(&sts).args.clone().expect("args");
    assert!(args.contains(&"--listen".to_string()));
    assert!(!args.iter().any(|a| a.starts_with("--listeners")));
    let env = broker_env(&mq);
    assert!(!env.keys().any(|k| k.contains("SSL") || k.contains("SASL")));
    let pod = sts
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .clone()
        .expect("pod");
    assert_eq!(pod.volumes.expect("volumes").len(), 1, "only tmp");
    assert!(build_network_policy(&mq, &cfg()).expect("builds").is_none());
}

#[test]
fn tls_and_scram_give_sasl_ssl_clients_and_mutual_tls_between_brokers() {
    let mq = mq(SECURE);
    let env = broker_env(&mq);
    assert_eq!(
        env["SLUICE_LISTENER_SECURITY_PROTOCOL_MAP"],
        "CLIENT:SASL_SSL,INTERNAL:SSL"
    );
    assert_eq!(env["SLUICE_INTER_BROKER_LISTENER_NAME"], "INTERNAL");
    assert_eq!(env["SLUICE_LISTENER_SSL_CLIENT_AUTH"], "INTERNAL:required");
    assert_eq!(env["SLUICE_CLUSTER_SECURITY_PROTOCOL"], "ssl");
    assert_eq!(env["SLUICE_AUTHORIZER"], "acl");
    assert_eq!(env["SLUICE_SUPER_USERS"], "User:sluice-operator");
    assert_eq!(env["SLUICE_SASL_ENABLED_MECHANISMS"], "SCRAM-SHA-512");
    assert_eq!(
        env["SLUICE_SSL_CERTIFICATE_FILE"],
        "/etc/sluice/tls/tls.crt"
    );
    assert_eq!(env["SLUICE_SASL_USERS_FILE"], "/etc/sluice/users/users");

    let sts = build_statefulset(&mq, &cfg(), None).expect("builds");
    let c = container(&sts);
    let args = c.args.clone().expect("args");
    assert!(!args.contains(&"--listen".to_string()), "{args:?}");
    assert!(!args.contains(&"--advertise".to_string()), "{args:?}");
    let at = |flag: &str| {
        let i = args.iter().position(|a| a == flag).expect(flag);
        args[i + 1].clone()
    };
    assert_eq!(
        at("--listeners"),
        "CLIENT://0.0.0.0:9092,INTERNAL://0.0.0.0:9094"
    );
    assert_eq!(
        at("--advertised-listeners"),
        "CLIENT://$(POD_NAME).orders-brokers.shop.svc.cluster.local:9092,\
         INTERNAL://$(POD_NAME).orders-brokers.shop.svc.cluster.local:9094"
    );
    assert_eq!(at("--node-id"), "$(POD_INDEX)", "the rest stays");
    let ports: Vec<i32> = c
        .ports
        .as_ref()
        .expect("ports")
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [9092, 8080, 9093, 9094]);
    let mounts: Vec<(String, String)> = c
        .volume_mounts
        .as_ref()
        .expect("mounts")
        .iter()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    assert!(mounts.contains(&("tls".into(), "/etc/sluice/tls".into())));
    assert!(mounts.contains(&("sasl-users".into(), "/etc/sluice/users".into())));
    let pod = sts
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .clone()
        .expect("pod");
    let secrets: Vec<String> = pod
        .volumes
        .expect("volumes")
        .iter()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    assert_eq!(secrets, ["orders-tls", "orders-operator-credentials"]);
    let headless = build_headless_service(&mq, &cfg()).expect("builds");
    assert!(headless
        .spec
        .expect("spec")
        .ports
        .expect("ports")
        .iter()
        .any(|p| p.port == 9094));
}

#[test]
fn the_security_modes_pick_the_client_protocol_and_the_certificate() {
    let with = |spec: &str| {
        mq(&format!(
            "metadata: {{name: orders, namespace: shop, uid: u}}\nspec: {spec}\n"
        ))
    };
    let env = |spec: &str| broker_env(&with(spec));
    assert_eq!(
        env("{tls: {}}")["SLUICE_LISTENER_SECURITY_PROTOCOL_MAP"],
        "CLIENT:SSL,INTERNAL:SSL"
    );
    assert!(!env("{tls: {}}").contains_key("SLUICE_AUTHORIZER"));
    assert_eq!(
        env("{authentication: {type: scram-sha-512}}")["SLUICE_LISTENER_SECURITY_PROTOCOL_MAP"],
        "CLIENT:SASL_PLAINTEXT,INTERNAL:SSL",
        "authentication alone still runs TLS between brokers"
    );
    assert_eq!(
        env("{tls: {}, authentication: {type: plain}}")["SLUICE_SASL_ENABLED_MECHANISMS"],
        "SCRAM-SHA-512,PLAIN",
        "the operator keeps signing in with SCRAM"
    );
    let user_secret = with("{tls: {secretName: my-cert}, authentication: {type: scram-sha-512}}");
    let sts = build_statefulset(&user_secret, &cfg(), None).expect("builds");
    let pod = sts.spec.expect("spec").template.spec.expect("pod");
    let tls = pod
        .volumes
        .expect("volumes")
        .into_iter()
        .find(|v| v.name == "tls")
        .expect("tls volume");
    assert_eq!(
        tls.secret.expect("secret").secret_name.as_deref(),
        Some("my-cert")
    );
}

#[test]
fn a_certificate_content_change_does_not_change_the_pod_template() {
    // the Secrets are volumes, not in the config hash: the same spec gives the same template
    // whatever the Secrets hold, so a renewed certificate rolls no pod
    let mq = mq(SECURE);
    let a = build_statefulset(&mq, &cfg(), None).expect("builds");
    let b = build_statefulset(&mq, &cfg(), None).expect("builds");
    assert_eq!(as_json(&a.spec), as_json(&b.spec));
    let plain = build_statefulset(&self::mq(MINIMAL), &cfg(), None).expect("b");
    let hash = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .expect("spec")
            .template
            .metadata
            .as_ref()
            .expect("meta")
            .annotations
            .as_ref()
            .expect("annotations")[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    assert_ne!(
        hash(&a),
        hash(&plain),
        "turning security on rolls the brokers"
    );
}

#[test]
fn the_network_policy_admits_labelled_clients_brokers_and_the_operator() {
    let m = mq(r#"
metadata: {name: orders, namespace: shop, uid: u}
spec:
  networkPolicy: {enabled: true}
"#);
    let policy = build_network_policy(&m, &cfg())
        .expect("builds")
        .expect("enabled");
    let json = as_json(&policy);
    assert_eq!(json["metadata"]["name"], "orders");
    let kafka = &json["spec"]["ingress"][0];
    assert_eq!(kafka["ports"][0]["port"], 9092);
    assert_eq!(
        kafka["from"][0]["podSelector"]["matchLabels"]["sluice.dev/client"],
        "orders"
    );
    assert_eq!(
        kafka["from"][1]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "orders"
    );
    assert_eq!(
        kafka["from"][2]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "sluice-system"
    );
    let internal = &json["spec"]["ingress"][1];
    assert_eq!(internal["from"].as_array().expect("peers").len(), 2);
    let custom = mq(r#"
metadata: {name: orders, namespace: shop, uid: u}
spec:
  networkPolicy: {enabled: true, clientSelector: {matchLabels: {team: shop}}}
"#);
    let json = as_json(
        &build_network_policy(&custom, &cfg())
            .expect("b")
            .expect("on"),
    );
    assert_eq!(
        json["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["team"],
        "shop"
    );
}
