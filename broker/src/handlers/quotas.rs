//! DescribeClientQuotas and AlterClientQuotas (`kafka-configs.sh --entity-type users|clients`).
//! The quotas live in the metadata quorum (`ClusterState::client_quotas`); what they do to
//! produce and fetch traffic is in [`crate::quota`].
//!
//! - DescribeClientQuotas checks its filter as Kafka does (entity types `user`, `client-id`,
//!   `ip`, each at most once, `ip` alone; an exact match names an entity, a default or any
//!   match does not) and answers the quotas of the entities it matches (`strict`: only
//!   entities of exactly the filter's types).
//! - AlterClientQuotas sets and removes `producer_byte_rate` and `consumer_byte_rate` on a
//!   user, a client id or both (each named or the default), each a whole number of bytes per
//!   second of at least 1. The quotas this broker does not enforce (`request_percentage`,
//!   `controller_mutation_rate`, an IP's `connection_creation_rate`) are refused, saying so:
//!   storing a limit nobody applies would mislead. Removing one is accepted (none is set).
//!   Each entity is answered on its own; `validate_only` checks without changing anything.
//!
//! Both need the cluster's DESCRIBE_CONFIGS / ALTER_CONFIGS under `--authorizer acl`
//! (`authz::cluster_operation`).
//!
//! [`Metered`] is where Produce, Fetch and ShareFetch count their record bytes against the
//! quotas (the rules are [`crate::quota`]'s), and [`Mute`] the connection's hold that the
//! connection loop (`server::conn`) honours before it handles the next request.

use std::sync::Arc;

use kafka_protocol::messages::alter_client_quotas_request::EntryData as AlterEntry;
use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::describe_client_quotas_response as described;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::{codes, Caller};
use crate::cluster::state::{Command, Outcome};
use crate::context::BrokerContext;
use crate::quota::{ClientQuota, EntityName, QuotaEntity, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE};

/// Kafka's quota keys, by the entity type they apply to.
const CLIENT_KEYS: [&str; 4] = [
    PRODUCER_BYTE_RATE,
    CONSUMER_BYTE_RATE,
    "request_percentage",
    "controller_mutation_rate",
];
const IP_KEYS: [&str; 1] = ["connection_creation_rate"];
/// The keys this broker enforces.
const ENFORCED: [&str; 2] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE];

/// Kafka's ClientQuotaFilterComponent match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

fn not_enforced(key: &str) -> String {
    format!(
        "{key} is not supported: this broker enforces only producer_byte_rate and \
         consumer_byte_rate, so the quota was not set (removing one is accepted: none is set)"
    )
}

/// Until when a connection handles no request (a client over its quota, [`crate::quota`]):
/// Unix milliseconds, 0 when never.
#[derive(Debug, Default)]
pub struct Mute {
    until_ms: std::sync::atomic::AtomicI64,
}

impl Mute {
    pub fn hold_until(&self, ms: i64) {
        self.until_ms
            .fetch_max(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long from `now_ms` the connection is still held (0: not held).
    pub fn remaining_ms(&self, now_ms: i64) -> i64 {
        (self.until_ms.load(std::sync::atomic::Ordering::Relaxed) - now_ms).max(0)
    }
}

/// A request whose bytes count against a client quota: who sent it, and its connection.
/// Made only while some quota is set, so traffic without quotas pays nothing for them.
pub struct Metered {
    user: String,
    client_id: String,
    mute: Arc<Mute>,
}

impl Metered {
    pub(super) fn of(
        ctx: &BrokerContext,
        caller: &Caller,
        header: &RequestHeader,
    ) -> Option<Metered> {
        if ctx.cluster.state().client_quotas.is_empty() {
            return None;
        }
        Some(Metered {
            user: caller.principal.name.clone(),
            client_id: header
                .client_id
                .as_ref()
                .map_or_else(String::new, |c| c.to_string()),
            mute: Arc::clone(&caller.mute),
        })
    }

    /// Counts `bytes` against the quota `key` that applies to the caller, holds its
    /// connection if it is over, and answers the response's `throttle_time_ms`.
    pub fn record(&self, ctx: &BrokerContext, key: &str, bytes: usize) -> i32 {
        let throttles = if key == crate::quota::PRODUCER_BYTE_RATE {
            &ctx.produce_throttles
        } else {
            &ctx.fetch_throttles
        };
        let now = super::share::now_ms();
        let ms = throttles.record(
            &ctx.cluster.state().client_quotas,
            key,
            (&self.user, &self.client_id),
            bytes as u64,
            now,
        );
        if ms > 0 {
            self.mute.hold_until(now + ms);
            ctx.metrics.throttled(key, ms);
            tracing::debug!(user = %self.user, client_id = %self.client_id, quota = key,
                throttle_ms = ms, "client over its quota: its connection waits");
        }
        i32::try_from(ms).unwrap_or(i32::MAX)
    }
}

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

pub fn describe_client_quotas(
    ctx: &BrokerContext,
    req: &DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    if let Some(why) = describe_filter_error(req) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(codes::INVALID_REQUEST)
            .with_error_message(Some(StrBytes::from_string(why)));
    }
    let entries = matching(&ctx.cluster.state().client_quotas, req)
        .map(|q| {
            let entity = parts(&q.entity)
                .map(|(t, name)| {
                    described::EntityData::default()
                        .with_entity_type(StrBytes::from_static_str(t))
                        .with_entity_name(name.wire().map(|n| StrBytes::from_string(n.into())))
                })
                .collect();
            let values = q
                .values
                .iter()
                .map(|(k, v)| {
                    described::ValueData::default()
                        .with_key(StrBytes::from_string(k.clone()))
                        .with_value(*v as f64)
                })
                .collect();
            described::EntryData::default()
                .with_entity(entity)
                .with_values(values)
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// An entity's parts as (wire type, name), user first.
fn parts(e: &QuotaEntity) -> impl Iterator<Item = (&'static str, &EntityName)> {
    let user = e.user.as_ref().map(|n| ("user", n));
    let client = e.client_id.as_ref().map(|n| ("client-id", n));
    user.into_iter().chain(client)
}

/// The quotas whose entity a (valid) filter matches.
fn matching<'a>(
    quotas: &'a [ClientQuota],
    req: &'a DescribeClientQuotasRequest,
) -> impl Iterator<Item = &'a ClientQuota> {
    quotas.iter().filter(|q| {
        let has = |t: &str| {
            parts(&q.entity)
                .find(|(kind, _)| *kind == t)
                .map(|(_, n)| n)
        };
        let each =
            req.components
                .iter()
                .all(|c| match (has(c.entity_type.as_str()), c.match_type) {
                    (None, _) => false,
                    (Some(name), MATCH_EXACT) => name.wire() == c._match.as_deref(),
                    (Some(name), MATCH_DEFAULT) => *name == EntityName::Default,
                    (Some(_), _) => true,
                });
        each && (!req.strict || parts(&q.entity).count() == req.components.len())
    })
}

/// One entry of an AlterClientQuotas as the command that applies it, or what is wrong.
fn change(e: &AlterEntry) -> Result<Command, String> {
    if let Some(why) = entity_error(e.entity.iter().map(|x| x.entity_type.as_str())) {
        return Err(why);
    }
    if e.entity.is_empty() {
        return Err("a quota needs an entity (user, client-id or ip)".to_string());
    }
    let ip = e.entity.iter().any(|x| x.entity_type.as_str() == "ip");
    let keys: &[&str] = if ip { &IP_KEYS } else { &CLIENT_KEYS };
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for op in &e.ops {
        let k = op.key.as_str();
        if !keys.contains(&k) {
            return Err(format!(
                "unknown quota key {k:?} (allowed: {})",
                keys.join(", ")
            ));
        }
        if op.remove {
            remove.push(k.to_string());
        } else if !ENFORCED.contains(&k) {
            return Err(not_enforced(k));
        } else if !(op.value >= 1.0 && op.value.fract() == 0.0 && op.value <= i64::MAX as f64) {
            return Err(format!(
                "{k} must be a whole number of bytes per second, at least 1 (got {})",
                op.value
            ));
        } else {
            set.push((k.to_string(), op.value as i64));
        }
    }
    if set.iter().any(|(k, _)| remove.contains(k)) {
        return Err("a quota key is both set and removed".to_string());
    }
    let name = |t: &str| {
        e.entity
            .iter()
            .find(|x| x.entity_type.as_str() == t)
            .map(|x| EntityName::from_wire(x.entity_name.as_deref()))
    };
    Ok(Command::AlterClientQuotas {
        entity: QuotaEntity {
            user: name("user"),
            client_id: name("client-id"),
        },
        set,
        remove: if ip { Vec::new() } else { remove },
    })
}

pub async fn alter_client_quotas(
    ctx: &Arc<BrokerContext>,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut entries = Vec::with_capacity(req.entries.len());
    for e in req.entries {
        let verdict = match change(&e) {
            Err(why) => Err((codes::INVALID_REQUEST, why)),
            Ok(_) if req.validate_only => Ok(()),
            Ok(cmd) => apply(ctx, cmd).await,
        };
        entries.push(match verdict {
            Ok(()) => answer(e, codes::NONE, None),
            Err((code, why)) => answer(e, code, Some(StrBytes::from_string(why))),
        });
    }
    AlterClientQuotasResponse::default().with_entries(entries)
}

/// Proposes a checked change (an IP's removals, with nothing to remove, are answered here).
async fn apply(ctx: &Arc<BrokerContext>, cmd: Command) -> Result<(), (i16, String)> {
    if let Command::AlterClientQuotas { set, remove, .. } = &cmd {
        if set.is_empty() && remove.is_empty() {
            return Ok(());
        }
    }
    match ctx.cluster.propose(cmd.clone()).await {
        Ok(Outcome::Refused { code, message }) => Err((code, message)),
        Ok(_) => {
            tracing::info!(change = ?cmd, "client quotas changed");
            Ok(())
        }
        Err(e) => Err((
            super::catalog::NOT_CONTROLLER,
            format!("the metadata quorum did not accept the change: {e}"),
        )),
    }
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
fn answer(e: AlterEntry, code: i16, message: Option<StrBytes>) -> EntryData {
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
    fn a_describe_filter_is_checked_like_kafkas() {
        for ok in [
            vec![],
            vec![component("user", MATCH_ANY, None)],
            vec![
                component("user", MATCH_EXACT, Some("alice")),
                component("client-id", MATCH_DEFAULT, None),
            ],
            vec![component("ip", MATCH_EXACT, Some("10.0.0.1"))],
        ] {
            assert_eq!(describe_filter_error(&filter(ok)), None);
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
            let said = describe_filter_error(&filter(bad)).unwrap_or_default();
            assert!(said.contains(words), "{said}");
        }
    }

    fn quota(user: Option<EntityName>, client: Option<EntityName>) -> ClientQuota {
        ClientQuota {
            entity: QuotaEntity {
                user,
                client_id: client,
            },
            values: [(PRODUCER_BYTE_RATE.to_string(), 1024)].into(),
        }
    }

    #[test]
    fn a_filter_matches_entities_by_name_default_or_any_and_strictly_by_kinds() {
        let alice = Some(EntityName::Named("alice".to_string()));
        let app = Some(EntityName::Named("app".to_string()));
        let all = vec![
            quota(alice.clone(), None),
            quota(alice.clone(), app.clone()),
            quota(None, Some(EntityName::Default)),
            quota(None, app.clone()),
        ];
        let found = |components: Vec<ComponentData>, strict: bool| -> Vec<usize> {
            let req = filter(components).with_strict(strict);
            matching(&all, &req)
                .map(|q| all.iter().position(|x| x == q).unwrap_or(usize::MAX))
                .collect()
        };
        assert_eq!(found(vec![], false), vec![0, 1, 2, 3]);
        assert_eq!(
            found(vec![component("user", MATCH_EXACT, Some("alice"))], false),
            vec![0, 1]
        );
        assert_eq!(
            found(vec![component("user", MATCH_EXACT, Some("alice"))], true),
            vec![0]
        );
        assert_eq!(
            found(vec![component("client-id", MATCH_DEFAULT, None)], false),
            vec![2]
        );
        assert_eq!(
            found(vec![component("client-id", MATCH_ANY, None)], true),
            vec![2, 3]
        );
        assert!(found(vec![component("ip", MATCH_ANY, None)], false).is_empty());
    }

    fn entry(entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> alter::EntryData {
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
                    .map(|(k, value, remove)| {
                        alter::OpData::default()
                            .with_key(StrBytes::from_string(k.to_string()))
                            .with_value(*value)
                            .with_remove(*remove)
                    })
                    .collect(),
            )
    }

    #[test]
    fn byte_rates_are_set_and_removed_and_what_is_not_enforced_is_refused_saying_so() {
        let got = change(&entry(
            &[("user", Some("alice")), ("client-id", None)],
            &[
                (PRODUCER_BYTE_RATE, 1048576.0, false),
                (CONSUMER_BYTE_RATE, 0.0, true),
            ],
        ));
        assert_eq!(
            got,
            Ok(Command::AlterClientQuotas {
                entity: QuotaEntity {
                    user: Some(EntityName::Named("alice".to_string())),
                    client_id: Some(EntityName::Default),
                },
                set: vec![(PRODUCER_BYTE_RATE.to_string(), 1048576)],
                remove: vec![CONSUMER_BYTE_RATE.to_string()],
            })
        );
        let refused = |e: alter::EntryData| change(&e).err().unwrap_or_default();
        for (e, words) in [
            (
                entry(&[("user", None)], &[("request_percentage", 50.0, false)]),
                "enforces only producer_byte_rate",
            ),
            (
                entry(&[("ip", None)], &[("connection_creation_rate", 5.0, false)]),
                "enforces only",
            ),
            (
                entry(&[("client-id", None)], &[(PRODUCER_BYTE_RATE, 0.5, false)]),
                "whole number",
            ),
            (
                entry(&[("client-id", None)], &[(PRODUCER_BYTE_RATE, -1.0, false)]),
                "at least 1",
            ),
            (
                entry(
                    &[("user", Some("bob"))],
                    &[("connection_creation_rate", 1.0, true)],
                ),
                "unknown quota key",
            ),
            (
                entry(&[("ip", None), ("user", None)], &[]),
                "cannot be combined",
            ),
            (
                entry(&[], &[(PRODUCER_BYTE_RATE, 1.0, false)]),
                "needs an entity",
            ),
            (
                entry(
                    &[("user", None)],
                    &[
                        (PRODUCER_BYTE_RATE, 1.0, false),
                        (PRODUCER_BYTE_RATE, 0.0, true),
                    ],
                ),
                "both set and removed",
            ),
        ] {
            let said = refused(e);
            assert!(said.contains(words), "{said:?} should say {words:?}");
        }
        // Removing a quota nobody enforces is accepted: none is set.
        assert!(change(&entry(
            &[("user", None)],
            &[("request_percentage", 0.0, true)]
        ))
        .is_ok());
    }
}
