//! DescribeClientQuotas and AlterClientQuotas, served so that Kafka's tools work, with the
//! truth about quotas: this broker does not throttle clients, so no quota is ever set.
//!
//! - DescribeClientQuotas checks its filter as Kafka does (entity types `user`, `client-id`,
//!   `ip`, each at most once, `ip` alone; an exact match names an entity, a default or any
//!   match does not) and answers an empty list. `kafka-configs.sh --describe --entity-type
//!   users`, which asks for SCRAM credentials and quotas together, needs it to answer at all.
//! - AlterClientQuotas refuses, per entity, any quota set, with a message saying that quotas
//!   are not enforced here (storing a limit nobody applies would mislead); removing a quota
//!   succeeds (there is none afterwards, as asked). Malformed entities and unknown keys are
//!   refused as Kafka refuses them.
//!
//! Both need the cluster's DESCRIBE_CONFIGS / ALTER_CONFIGS under `--authorizer acl`
//! (`authz::cluster_operation`).

use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::codes;

/// Kafka's quota keys, by the entity type they apply to.
const CLIENT_KEYS: [&str; 4] = [
    "producer_byte_rate",
    "consumer_byte_rate",
    "request_percentage",
    "controller_mutation_rate",
];
const IP_KEYS: [&str; 1] = ["connection_creation_rate"];

/// Kafka's ClientQuotaFilterComponent match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

const NOT_ENFORCED: &str = "client quotas are not supported: this broker does not throttle \
     clients, so the quota was not set (removing one is accepted: none is set)";

/// What is wrong with a list of entity types, as Kafka words it; `None` when it is valid.
fn entity_error<'a>(types: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    for t in types {
        if !matches!(t, "user" | "client-id" | "ip") {
            return Some(format!(
                "unknown entity type {t:?} (allowed: user, client-id, ip)"
            ));
        }
        if seen.contains(&t) {
            return Some(format!("duplicate entity type {t:?}"));
        }
        seen.push(t);
    }
    if seen.contains(&"ip") && seen.len() > 1 {
        return Some("an ip entity cannot be combined with user or client-id".to_string());
    }
    None
}

/// What is wrong with a DescribeClientQuotas filter; `None` when it is valid.
pub fn describe_filter_error(req: &DescribeClientQuotasRequest) -> Option<String> {
    if let Some(e) = entity_error(req.components.iter().map(|c| c.entity_type.as_str())) {
        return Some(e);
    }
    req.components.iter().find_map(|c| {
        let t = c.entity_type.as_str();
        match (c.match_type, &c._match) {
            (MATCH_EXACT, None) => Some(format!("an exact match of {t} needs a name")),
            (MATCH_DEFAULT | MATCH_ANY, Some(_)) => {
                Some(format!("a default or any match of {t} takes no name"))
            }
            (MATCH_EXACT | MATCH_DEFAULT | MATCH_ANY, _) => None,
            (other, _) => Some(format!(
                "unknown match type {other} for {t} (0 exact, 1 default, 2 any)"
            )),
        }
    })
}

pub fn describe_client_quotas(req: &DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    match describe_filter_error(req) {
        Some(why) => DescribeClientQuotasResponse::default()
            .with_error_code(codes::INVALID_REQUEST)
            .with_error_message(Some(StrBytes::from_string(why))),
        // No quota is ever set here.
        None => DescribeClientQuotasResponse::default().with_entries(Some(Vec::new())),
    }
}

pub fn alter_client_quotas(req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let entries = req
        .entries
        .into_iter()
        .map(|e| {
            let verdict =
                entity_error(e.entity.iter().map(|x| x.entity_type.as_str())).or_else(|| {
                    let ip = e.entity.iter().any(|x| x.entity_type.as_str() == "ip");
                    let keys: &[&str] = if ip { &IP_KEYS } else { &CLIENT_KEYS };
                    e.ops.iter().find_map(|op| {
                        let k = op.key.as_str();
                        if !keys.contains(&k) {
                            Some(format!(
                                "unknown quota key {k:?} (allowed: {})",
                                keys.join(", ")
                            ))
                        } else if !op.remove {
                            Some(NOT_ENFORCED.to_string())
                        } else {
                            None
                        }
                    })
                });
            match verdict {
                Some(why) => answer(e, codes::INVALID_REQUEST, Some(StrBytes::from_string(why))),
                None => answer(e, codes::NONE, None),
            }
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// Every entity of an AlterClientQuotas refused with `code` (the caller may not alter them).
pub fn alter_refused(
    req: AlterClientQuotasRequest,
    code: i16,
    message: Option<StrBytes>,
) -> AlterClientQuotasResponse {
    AlterClientQuotasResponse::default().with_entries(
        req.entries
            .into_iter()
            .map(|e| answer(e, code, message.clone()))
            .collect(),
    )
}

/// The answer for one entry, naming its entity.
fn answer(
    e: kafka_protocol::messages::alter_client_quotas_request::EntryData,
    code: i16,
    message: Option<StrBytes>,
) -> EntryData {
    EntryData::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_entity(
            e.entity
                .into_iter()
                .map(|x| {
                    EntityData::default()
                        .with_entity_type(x.entity_type)
                        .with_entity_name(x.entity_name)
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_client_quotas_request as alter;
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    fn component(t: &str, match_type: i8, name: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(StrBytes::from_string(t.to_string()))
            .with_match_type(match_type)
            .with_match(name.map(|n| StrBytes::from_string(n.to_string())))
    }

    fn filter(components: Vec<ComponentData>) -> DescribeClientQuotasRequest {
        DescribeClientQuotasRequest::default().with_components(components)
    }

    #[test]
    fn a_describe_filter_is_checked_like_kafkas_and_answered_with_no_quota() {
        for ok in [
            vec![],
            vec![component("user", MATCH_ANY, None)],
            vec![
                component("user", MATCH_EXACT, Some("alice")),
                component("client-id", MATCH_DEFAULT, None),
            ],
            vec![component("ip", MATCH_EXACT, Some("10.0.0.1"))],
        ] {
            let r = describe_client_quotas(&filter(ok));
            assert_eq!((r.error_code, r.entries), (0, Some(vec![])));
        }
        for (bad, words) in [
            (
                vec![component("group", MATCH_ANY, None)],
                "unknown entity type",
            ),
            (
                vec![
                    component("user", MATCH_ANY, None),
                    component("user", MATCH_ANY, None),
                ],
                "duplicate",
            ),
            (
                vec![
                    component("ip", MATCH_ANY, None),
                    component("user", MATCH_ANY, None),
                ],
                "cannot be combined",
            ),
            (vec![component("user", MATCH_EXACT, None)], "needs a name"),
            (
                vec![component("user", MATCH_DEFAULT, Some("x"))],
                "takes no name",
            ),
            (vec![component("user", 7, None)], "unknown match type 7"),
        ] {
            let r = describe_client_quotas(&filter(bad));
            assert_eq!(r.error_code, codes::INVALID_REQUEST);
            let said = r.error_message.map(|m| m.to_string()).unwrap_or_default();
            assert!(said.contains(words), "{said}");
        }
    }

    fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, bool)]) -> alter::EntryData {
        alter::EntryData::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(t, n)| {
                        alter::EntityData::default()
                            .with_entity_type(StrBytes::from_string(t.to_string()))
                            .with_entity_name(n.map(|n| StrBytes::from_string(n.to_string())))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(k, remove)| {
                        alter::OpData::default()
                            .with_key(StrBytes::from_string(k.to_string()))
                            .with_value(1024.0)
                            .with_remove(*remove)
                    })
                    .collect(),
            )
    }

    #[test]
    fn setting_a_quota_is_refused_per_entity_and_removing_one_is_accepted() {
        let req = AlterClientQuotasRequest::default().with_entries(vec![
            entry(&[("user", Some("alice"))], &[("producer_byte_rate", false)]),
            entry(&[("client-id", None)], &[("consumer_byte_rate", true)]),
            entry(
                &[("user", Some("bob"))],
                &[("connection_creation_rate", true)],
            ),
            entry(&[("ip", None), ("user", None)], &[]),
        ]);
        let r = alter_client_quotas(req);
        let got: Vec<(i16, String)> = r
            .entries
            .iter()
            .map(|e| {
                let m = e.error_message.as_ref().map(|m| m.to_string());
                (e.error_code, m.unwrap_or_default())
            })
            .collect();
        assert_eq!(got[0].0, codes::INVALID_REQUEST);
        assert!(got[0].1.contains("does not throttle"), "{}", got[0].1);
        assert_eq!(got[1], (codes::NONE, String::new()));
        assert!(got[2].1.contains("unknown quota key"), "{}", got[2].1);
        assert!(got[3].1.contains("cannot be combined"), "{}", got[3].1);
        assert_eq!(
            r.entries[0].entity[0].entity_name.as_deref(),
            Some("alice"),
            "each answer names its entity"
        );
    }
}
