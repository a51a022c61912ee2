//! Validation of a spec before anything is built: the rules that need no old object, mirrored from
//! the CRD's CEL rules (a spec stored before a rule existed, or by a client that skipped the
//! schema, is reported on status instead of being half-applied), plus quantity parsing.

use std::collections::BTreeSet;

use crate::crd::{AuthenticationType, MessageQueue, MessageQueueSpec, QueueType, OPERATOR_USER};
use crate::error::{Error, Result};

/// The security rules of the CRD (`tls`, `authentication`, `users`).
fn check_security(spec: &MessageQueueSpec, problems: &mut Vec<String>) {
    let auth = spec.authentication_type();
    if auth == AuthenticationType::Plain && spec.tls.is_none() {
        problems.push(
            "authentication type plain sends passwords as they are: set spec.tls, or use scram-sha-512"
                .to_string(),
        );
    }
    if let Some(tls) = &spec.tls {
        if tls.secret_name.is_some() && tls.issuer_ref.is_some() {
            problems.push("tls: set secretName or issuerRef, not both".to_string());
        }
    }
    if !spec.users.is_empty() && auth == AuthenticationType::None {
        problems.push(
            "users need authentication: set spec.authentication.type to scram-sha-512".to_string(),
        );
    }
    let mut seen = BTreeSet::new();
    for user in &spec.users {
        let valid = !user.name.is_empty()
            && user.name.len() <= 63
            && user
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !user.name.starts_with(['-', '.'])
            && !user.name.ends_with(['-', '.']);
        if !valid {
            problems.push(format!(
                "user {:?}: names are 1 to 63 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
                user.name
            ));
        }
        if user.name == OPERATOR_USER {
            problems.push(format!(
                "user {OPERATOR_USER:?} is the operator's own; choose another name"
            ));
        }
        if !seen.insert(user.name.as_str()) {
            problems.push(format!(
                "user {:?} is declared twice; names must be unique",
                user.name
            ));
        }
        for acl in &user.acls {
            let named = [
                &acl.queue,
                &acl.queue_prefix,
                &acl.group,
                &acl.group_prefix,
                &acl.transactional_id,
                &acl.transactional_id_prefix,
            ]
            .iter()
            .filter(|r| r.is_some())
            .count();
            if named != 1 {
                problems.push(format!(
                    "user {:?}: each ACL names exactly one of queue, queuePrefix, group, groupPrefix, transactionalId or transactionalIdPrefix",
                    user.name
                ));
            }
            if acl.operations.is_empty() {
                problems.push(format!(
                    "user {:?}: an ACL needs at least one operation",
                    user.name
                ));
            }
        }
    }
}

/// Checks `mq.spec`; the error lists every problem with what to change.
pub fn validate_spec(mq: &MessageQueue) -> Result<()> {
    let spec = &mq.spec;
    let mut problems = Vec::new();
    if spec.replicas < 1 {
        problems.push(format!(
            "replicas is {}; it must be at least 1",
            spec.replicas
        ));
    }
    if parse_quantity(&spec.storage.size).is_none() {
        problems.push(format!(
            "storage.size {:?} is not a Kubernetes quantity such as 10Gi",
            spec.storage.size
        ));
    }
    if spec.disruption_budget.max_unavailable < 1 {
        problems.push("disruptionBudget.maxUnavailable must be at least 1".to_string());
    }
    if !(1..=65535).contains(&spec.service.port) {
        problems.push(format!(
            "service.port {} is not a TCP port",
            spec.service.port
        ));
    }
    if let Some(rf) = spec
        .config
        .as_ref()
        .and_then(|c| c.default_replication_factor)
    {
        if rf > spec.replicas {
            problems.push(format!(
                "config.defaultReplicationFactor {rf} is more than replicas {}; lower it or raise replicas",
                spec.replicas
            ));
        }
    }
    if let Some(min) = spec.config.as_ref().and_then(|c| c.min_insync_replicas) {
        let rf = spec.default_replication_factor();
        if min > rf {
            problems.push(format!(
                "config.minInsyncReplicas {min} is more than the default replication factor {rf}, \
                 so no acks=all write could succeed; lower it"
            ));
        }
    }
    if let Some(config) = &spec.config {
        // The brokers' own limits, which would otherwise stop them at start.
        if let Some(n) = config.segment_bytes.filter(|n| *n > i64::from(i32::MAX)) {
            problems.push(format!(
                "config.segmentBytes {n} is more than the largest segment, 2147483647 bytes"
            ));
        }
        if let Some(n) = config
            .max_message_bytes
            .filter(|n| *n > crate::crd::MAX_MESSAGE_BYTES)
        {
            problems.push(format!(
                "config.maxMessageBytes {n} is more than {}, the brokers' request size limit",
                crate::crd::MAX_MESSAGE_BYTES
            ));
        }
    }
    check_security(spec, &mut problems);
    let mut seen = BTreeSet::new();
    for q in &spec.queues {
        if let Err(reason) = check_topic_name(&q.name) {
            problems.push(format!("queue {:?}: {reason}", q.name));
        }
        if !seen.insert(q.name.as_str()) {
            problems.push(format!(
                "queue {:?} is declared twice; names must be unique",
                q.name
            ));
        }
        if q.partitions < 1 {
            problems.push(format!("queue {:?}: partitions must be at least 1", q.name));
        }
        if let Some(delivery) = &q.delivery {
            if q.type_ != QueueType::Queue {
                problems.push(format!(
                    "queue {:?}: delivery settings apply only to a work queue; set type: queue or remove delivery",
                    q.name
                ));
            }
            if let Some(dlq) = &delivery.dead_letter_queue {
                if dlq == &q.name {
                    problems.push(format!(
                        "queue {:?}: a queue cannot be its own dead-letter queue",
                        q.name
                    ));
                } else if !spec.queues.iter().any(|d| &d.name == dlq) {
                    problems.push(format!(
                        "queue {:?}: delivery.deadLetterQueue {dlq:?} is not declared in queues; declare it too",
                        q.name
                    ));
                }
            }
        }
        match q.replication_factor {
            Some(rf) if rf < 1 => problems.push(format!(
                "queue {:?}: replicationFactor must be at least 1",
                q.name
            )),
            Some(rf) if rf > spec.replicas => problems.push(format!(
                "queue {:?}: replicationFactor {rf} is more than replicas {}; lower it or raise replicas",
                q.name, spec.replicas
            )),
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidSpec {
            name: format!(
                "{}/{}",
                mq.metadata.namespace.as_deref().unwrap_or_default(),
                mq.metadata.name.as_deref().unwrap_or_default()
            ),
            reason: problems.join("; "),
        })
    }
}

/// Kafka's topic name rules.
pub fn check_topic_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err("name must be 1 to 249 characters".to_string());
    }
    if name == "." || name == ".." {
        return Err("name cannot be '.' or '..'".to_string());
    }
    if name.starts_with("__") {
        return Err("names starting with '__' are reserved for the broker".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "character {bad:?} is not allowed; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Parses a Kubernetes quantity (`10Gi`, `500M`, `1.5Gi`, `1e9`, `100`) into bytes, rounding up.
/// Returns None when it is not a quantity (or absurdly large).
pub fn parse_quantity(s: &str) -> Option<u128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // value = mantissa / 10^scale
    let mantissa: u128 = format!("{int_part}{frac_part}").parse().ok()?;
    let scale = u32::try_from(frac_part.len()).ok()?;
    let (mul, div_pow10): (u128, u32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "m" => (1, 3),
        "k" => (1_000, 0),
        "M" => (1_000_000, 0),
        "G" => (1_000_000_000, 0),
        "T" => (1_000_000_000_000, 0),
        "P" => (1_000_000_000_000_000, 0),
        "E" => (1_000_000_000_000_000_000, 0),
        exp if exp.starts_with(['e', 'E']) => {
            let e: u32 = exp[1..].parse().ok()?;
            if e > 30 {
                return None;
            }
            (10u128.pow(e), 0)
        }
        _ => return None,
    };
    let numerator = mantissa.checked_mul(mul)?;
    let denominator = 10u128.checked_pow(scale + div_pow10)?;
    Some(numerator.div_ceil(denominator))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mq(spec: &str) -> MessageQueue {
        serde_yaml::from_str(&format!(
            "metadata: {{name: orders, namespace: shop, uid: u}}\nspec:\n{spec}"
        ))
        .expect("test manifest parses")
    }

    fn problems(spec: &str) -> String {
        match validate_spec(&mq(spec)) {
            Ok(()) => String::new(),
            Err(e) => {
                assert!(e.is_user_error());
                e.to_string()
            }
        }
    }

    #[test]
    fn a_secure_spec_with_users_passes() {
        let spec = r#"
  replicas: 1
  tls: {}
  authentication: {type: scram-sha-512}
  users:
  - name: app
    acls:
    - {queue: orders, operations: [read, write]}
    - {groupPrefix: app-, operations: [read]}
    - {queuePrefix: audit., operations: [all], permission: deny}
    - {transactionalIdPrefix: app-, operations: [write]}
"#;
        assert_eq!(problems(spec), "");
    }

    #[test]
    fn plain_without_tls_and_users_without_authentication_are_refused() {
        let plain = problems("  authentication: {type: plain}\n");
        assert!(plain.contains("set spec.tls"), "{plain}");
        assert_eq!(
            problems("  tls: {secretName: s}\n  authentication: {type: plain}\n"),
            ""
        );
        let users = problems("  users: [{name: app}]\n");
        assert!(users.contains("users need authentication"), "{users}");
    }

    #[test]
    fn bad_user_names_and_acls_are_refused() {
        let spec = r#"
  authentication: {type: scram-sha-512}
  users:
  - {name: Bad_Name}
  - {name: sluice-operator}
  - {name: app, acls: [{queue: a, group: b, operations: [read]}]}
  - {name: app}
"#;
        let p = problems(spec);
        assert!(p.contains("\"Bad_Name\": names are"), "{p}");
        assert!(p.contains("operator's own"), "{p}");
        assert!(p.contains("exactly one of queue"), "{p}");
        assert!(p.contains("declared twice"), "{p}");
        let both = problems("  tls: {secretName: s, issuerRef: {name: ca}}\n");
        assert!(both.contains("not both"), "{both}");
    }

    #[test]
    fn a_complete_valid_spec_passes() {
        let spec = r#"
  replicas: 3
  storage: {size: 20Gi}
  config: {defaultReplicationFactor: 1, segmentBytes: 2147483647, maxMessageBytes: 104857600}
  queues:
  - {name: orders, partitions: 6, replicationFactor: 3}
  - {name: audit.log_v2-x, partitions: 1}
"#;
        assert_eq!(problems(spec), "");
    }

    #[test]
    fn replicas_below_one_is_refused() {
        assert!(problems("  replicas: 0").contains("replicas is 0; it must be at least 1"));
    }

    #[test]
    fn storage_size_must_be_a_quantity() {
        assert!(problems("  storage: {size: ten-gigs}").contains("storage.size"));
    }

    #[test]
    fn queue_names_follow_kafka_rules() {
        assert!(problems("  queues: [{name: 'a b'}]").contains("not allowed"));
        assert!(problems("  queues: [{name: '..'}]").contains("'.' or '..'"));
        assert!(problems("  queues: [{name: __consumer_offsets}]").contains("reserved"));
        let long = "x".repeat(250);
        assert!(problems(&format!("  queues: [{{name: {long}}}]")).contains("1 to 249"));
    }

    #[test]
    fn a_work_queue_with_a_declared_dead_letter_queue_passes() {
        let spec = r#"
  queues:
  - {name: jobs, type: queue, delivery: {lockDurationMs: 60000, limit: 3, deadLetterQueue: jobs-dlq}}
  - {name: jobs-dlq}
"#;
        assert_eq!(problems(spec), "");
    }

    #[test]
    fn delivery_settings_need_a_work_queue_and_a_declared_other_dead_letter_queue() {
        let p = problems("  queues: [{name: jobs, delivery: {limit: 3}}]");
        assert!(
            p.contains("\"jobs\": delivery settings apply only to a work queue"),
            "{p}"
        );
        let p =
            problems("  queues: [{name: jobs, type: queue, delivery: {deadLetterQueue: jobs}}]");
        assert!(p.contains("cannot be its own dead-letter queue"), "{p}");
        let p =
            problems("  queues: [{name: jobs, type: queue, delivery: {deadLetterQueue: dead}}]");
        assert!(p.contains("\"dead\" is not declared in queues"), "{p}");
    }

    #[test]
    fn queue_names_must_be_unique() {
        assert!(problems("  queues: [{name: a}, {name: a}]").contains("declared twice"));
    }

    #[test]
    fn replication_factor_cannot_exceed_replicas() {
        let p = problems("  replicas: 1\n  queues: [{name: a, replicationFactor: 3}]");
        assert!(
            p.contains("replicationFactor 3 is more than replicas 1"),
            "{p}"
        );
        let p = problems("  replicas: 1\n  config: {defaultReplicationFactor: 2}");
        assert!(p.contains("defaultReplicationFactor 2"), "{p}");
    }

    #[test]
    fn replication_up_to_the_broker_count_is_valid() {
        let spec = "  replicas: 3\n  config: {defaultReplicationFactor: 3, minInsyncReplicas: 2}\n  queues: [{name: a, replicationFactor: 3}, {name: b}]";
        assert_eq!(problems(spec), "");
        assert_eq!(
            problems(
                "  replicas: 5\n  config: {defaultReplicationFactor: 5, minInsyncReplicas: 4}"
            ),
            ""
        );
    }

    #[test]
    fn min_insync_replicas_above_the_default_replication_factor_is_refused() {
        let p = problems(
            "  replicas: 3\n  config: {defaultReplicationFactor: 2, minInsyncReplicas: 3}",
        );
        assert!(
            p.contains("config.minInsyncReplicas 3 is more than the default replication factor 2"),
            "{p}"
        );
        // unset, the default replication factor follows replicas: 3 of 5, 2 of 2
        let p = problems("  replicas: 5\n  config: {minInsyncReplicas: 4}");
        assert!(p.contains("default replication factor 3"), "{p}");
        let p = problems("  replicas: 2\n  config: {minInsyncReplicas: 3}");
        assert!(p.contains("default replication factor 2"), "{p}");
        assert_eq!(
            problems("  replicas: 2\n  config: {minInsyncReplicas: 2}"),
            ""
        );
    }

    #[test]
    fn settings_the_brokers_would_refuse_at_start_are_refused_here() {
        let p = problems("  config: {segmentBytes: 4294967296}");
        assert!(p.contains("config.segmentBytes 4294967296"), "{p}");
        let p = problems("  config: {maxMessageBytes: 104857601}");
        assert!(p.contains("config.maxMessageBytes 104857601"), "{p}");
    }

    #[test]
    fn partitions_and_rf_must_be_positive() {
        assert!(problems("  queues: [{name: a, partitions: 0}]")
            .contains("partitions must be at least 1"));
        assert!(problems("  queues: [{name: a, replicationFactor: 0}]")
            .contains("replicationFactor must be at least 1"));
    }

    #[test]
    fn max_unavailable_and_port_are_checked() {
        assert!(problems("  disruptionBudget: {maxUnavailable: 0}").contains("maxUnavailable"));
        assert!(problems("  service: {port: 70000}").contains("service.port"));
    }

    #[test]
    fn quantities_parse_to_bytes() {
        assert_eq!(parse_quantity("10Gi"), Some(10 << 30));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("1e3"), Some(1000));
        assert_eq!(parse_quantity("100"), Some(100));
        assert_eq!(parse_quantity("1500m"), Some(2));
        assert_eq!(parse_quantity("Gi"), None);
        assert_eq!(parse_quantity("10GB"), None);
        assert_eq!(parse_quantity("1.2.3"), None);
        assert!(parse_quantity("20Gi") > parse_quantity("10Gi"));
    }
}
