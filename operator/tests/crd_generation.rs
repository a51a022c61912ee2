//! The committed CRD YAML must be exactly what `sluice-operator crd` prints, and the schema must
//! carry the subresources, printer columns and CEL rules the product promises.

use std::path::PathBuf;

use kube::CustomResourceExt;
use sluice_operator::crd::MessageQueue;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

fn check_copy(relative: &str) {
    let path = repo_root().join(relative);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let generated = sluice_operator::crd_yaml().expect("CRD serialises");
    assert!(
        committed == generated,
        "{relative} is stale: regenerate it with `cargo run -p sluice-operator -- crd > {relative}`"
    );
}

#[test]
fn committed_crd_matches_generated() {
    check_copy("crds/messagequeues.sluice.dev.yaml");
}

#[test]
fn chart_crd_matches_generated_when_the_chart_exists() {
    let chart_copy = "charts/sluice/crds/messagequeues.sluice.dev.yaml";
    if repo_root().join("charts/sluice").exists() {
        check_copy(chart_copy);
    }
}

fn crd_json() -> serde_json::Value {
    sluice_operator::crd::crd_value()
}

#[test]
fn crd_value_is_the_derived_crd_with_reflowed_descriptions() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let parsed: CustomResourceDefinition = serde_json::from_value(crd_json()).expect("still a CRD");
    assert_eq!(parsed.metadata.name, MessageQueue::crd().metadata.name);
    let text = serde_json::to_string(&crd_json()).expect("json");
    assert!(
        !text.contains("rolls\\nthe"),
        "single line breaks are joined"
    );
}

#[test]
fn crd_names_scope_and_subresources() {
    let crd = crd_json();
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "messagequeues.sluice.dev");
    assert_eq!(spec["group"], "sluice.dev");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "MessageQueue");
    assert_eq!(spec["names"]["plural"], "messagequeues");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["mq"]));
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    assert_eq!(
        version["subresources"]["scale"],
        serde_json::json!({
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector"
        })
    );
}

#[test]
fn crd_has_the_printer_columns() {
    let crd = crd_json();
    let columns: Vec<String> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(
        columns,
        [
            "Replicas",
            "Ready",
            "Version",
            "Status",
            "Under-Replicated",
            "Auth",
            "Age"
        ]
    );
    let urp = &crd["spec"]["versions"][0]["additionalPrinterColumns"][4];
    assert_eq!(urp["jsonPath"], ".status.underReplicatedPartitions");
    assert_eq!(urp["type"], "integer");
}

fn rules(schema: &serde_json::Value) -> Vec<(String, String)> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    (
                        r["rule"].as_str().unwrap_or_default().to_string(),
                        r["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn spec_schema() -> serde_json::Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn replicas_rule_and_default() {
    let spec = spec_schema();
    let replicas = &spec["properties"]["replicas"];
    assert_eq!(replicas["default"], 3);
    let r = rules(replicas);
    assert!(r
        .iter()
        .any(|(rule, msg)| rule == "self >= 1" && msg.contains("at least 1")));
}

#[test]
fn storage_size_may_grow_but_never_shrink() {
    let spec = spec_schema();
    let size = &spec["properties"]["storage"]["properties"]["size"];
    assert_eq!(size["default"], "10Gi");
    assert!(
        size["maxLength"].is_number(),
        "CEL cost needs a bounded string"
    );
    let r = rules(size);
    assert!(r.iter().any(|(rule, _)| rule == "isQuantity(self)"));
    assert!(r.iter().any(|(rule, msg)| rule
        .contains("quantity(self).compareTo(quantity(oldSelf)) >= 0")
        && msg.contains("cannot shrink")));
}

#[test]
fn queues_are_a_map_keyed_by_name_with_name_and_partition_rules() {
    let spec = spec_schema();
    let queues = &spec["properties"]["queues"];
    assert_eq!(queues["x-kubernetes-list-type"], "map");
    assert_eq!(
        queues["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    assert!(
        queues["maxItems"].is_number(),
        "CEL cost needs a bounded list"
    );
    let item = &queues["items"]["properties"];
    let name = &item["name"];
    assert_eq!(name["maxLength"], 249);
    let name_rules = rules(name);
    assert!(name_rules
        .iter()
        .any(|(rule, _)| rule.contains("matches('^[a-zA-Z0-9._-]+$')")));
    assert!(name_rules.iter().any(|(rule, _)| rule.contains("'..'")));
    let partitions = rules(&item["partitions"]);
    assert!(partitions
        .iter()
        .any(|(rule, msg)| rule == "self >= oldSelf" && msg.contains("cannot decrease")));
    assert_eq!(item["partitions"]["default"], 1);
}

#[test]
fn replication_factor_is_bounded_by_replicas() {
    let spec = spec_schema();
    let r = rules(&spec);
    assert!(r.iter().any(
        |(rule, msg)| rule.contains("q.replicationFactor <= self.replicas")
            && msg.contains("replicationFactor")
    ));
}

#[test]
fn replication_factor_defaults_to_the_messagequeues_and_min_insync_is_bounded_by_it() {
    let spec = spec_schema();
    let rf = &spec["properties"]["queues"]["items"]["properties"]["replicationFactor"];
    assert!(
        rf.get("default").is_none(),
        "unset means the MessageQueue's default replication factor: {rf}"
    );
    let r = rules(&spec);
    assert!(r.iter().any(|(rule, msg)| rule
        .contains("self.config.minInsyncReplicas <= (has(self.config.defaultReplicationFactor)")
        && msg
            .contains("config.minInsyncReplicas must be at most the default replication factor")));
    let status = &crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        ["status"]["properties"];
    assert_eq!(status["underReplicatedPartitions"]["type"], "integer");
    assert_eq!(status["offlinePartitions"]["type"], "integer");
}

#[test]
fn queue_config_refuses_unknown_keys_structurally() {
    let spec = spec_schema();
    let config = &spec["properties"]["queues"]["items"]["properties"]["config"];
    assert!(config.get("additionalProperties").is_none());
    assert!(config["properties"].get("retention.ms").is_some());
    assert!(config["properties"].get("sluice.fsync").is_some());
}

#[test]
fn every_spec_field_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(p.clone());
                }
                // k8s-openapi types describe themselves; only check our own tree deeply
                if !sluice_operator::crd::UPSTREAM_TYPED_FIELDS.contains(&k.as_str()) {
                    walk(&p, v, missing);
                    walk(&p, &v["items"], missing);
                }
            }
        }
    }
    let mut missing = Vec::new();
    walk("spec", &spec_schema(), &mut missing);
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
}

#[test]
fn crd_reference_doc_matches_generated() {
    let path = repo_root().join("docs/crd-reference.md");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        committed == sluice_operator::crd::reference_markdown(),
        "docs/crd-reference.md is stale: regenerate it with \
         `cargo run -p sluice-operator -- crd-reference > docs/crd-reference.md`"
    );
}

#[test]
fn crd_reference_lists_every_rule_message() {
    let doc = sluice_operator::crd::reference_markdown();
    for needle in [
        "partitions cannot decrease",
        "storage.size cannot shrink",
        "`spec.queues[].name`",
        "`spec.storage.size`",
        "unique by [\"name\"]",
    ] {
        assert!(doc.contains(needle), "reference lacks {needle}");
    }
}

#[test]
fn every_example_manifest_parses_and_passes_the_operators_validation() {
    let dir = repo_root().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable example");
        let mq: MessageQueue = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        if let Err(e) = sluice_operator::validate::validate_spec(&mq) {
            panic!("{} is refused: {e}", path.display());
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "only {checked} examples found in {}",
        dir.display()
    );
}
