//! Users' client quotas (`spec.users[].quotas`): DescribeClientQuotas of the user entities and
//! AlterClientQuotas, and the pure diff between declared and present quotas.
//!
//! Only quotas on a user alone (no client id part) are read and written, and only those of
//! users the operator manages are ever removed: quotas an administrator set on client ids, on
//! a user and client id together, or on other users stay.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};

use super::{code_text, str_bytes, AdminClient};
use crate::error::Result;

/// The quota keys the operator manages on users.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
const MANAGED_KEYS: [&str; 2] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE];

/// Quotas by user, then by key (bytes per second).
pub type QuotasByUser = BTreeMap<String, BTreeMap<String, i64>>;

/// One user's change: the keys to set and the keys to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaChange {
    pub user: String,
    pub set: Vec<(String, i64)>,
    pub remove: Vec<String>,
}

/// What to change so that the `managed` users hold exactly their `desired` quotas (among the
/// keys the operator manages). Users not managed are left alone.
pub fn quota_changes(
    desired: &QuotasByUser,
    present: &QuotasByUser,
    managed: &BTreeSet<String>,
) -> Vec<QuotaChange> {
    let none = BTreeMap::new();
    managed
        .iter()
        .filter_map(|user| {
            let want = desired.get(user).unwrap_or(&none);
            let have = present.get(user).unwrap_or(&none);
            let set: Vec<(String, i64)> = want
                .iter()
                .filter(|(k, v)| have.get(*k) != Some(v))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            let remove: Vec<String> = have
                .keys()
                .filter(|k| MANAGED_KEYS.contains(&k.as_str()) && !want.contains_key(*k))
                .cloned()
                .collect();
            (!set.is_empty() || !remove.is_empty()).then(|| QuotaChange {
                user: user.clone(),
                set,
                remove,
            })
        })
        .collect()
}

/// Kafka's ClientQuotaFilterComponent match type "any name".
const MATCH_ANY: i8 = 2;

impl AdminClient {
    /// The quotas set on named users alone (no client id part).
    pub async fn describe_user_quotas(&mut self) -> Result<QuotasByUser> {
        let name = "DescribeClientQuotas";
        let version = self.version_for::<DescribeClientQuotasRequest>(name)?;
        let request = DescribeClientQuotasRequest::default()
            .with_components(vec![ComponentData::default()
                .with_entity_type(str_bytes("user"))
                .with_match_type(MATCH_ANY)
                .with_match(None)])
            .with_strict(true);
        let response = self.send(&request, version, name).await?;
        if let Some(err) = code_text(response.error_code, response.error_message.as_ref()) {
            return Err(self.err(name, err));
        }
        let mut out = QuotasByUser::new();
        for entry in response.entries.unwrap_or_default() {
            let [entity] = entry.entity.as_slice() else {
                continue;
            };
            let Some(user) = entity
                .entity_name
                .as_ref()
                .filter(|_| entity.entity_type.as_str() == "user")
            else {
                continue;
            };
            let values = entry
                .values
                .iter()
                .filter(|v| v.value.fract() == 0.0)
                .map(|v| (v.key.to_string(), v.value as i64))
                .collect();
            out.insert(user.to_string(), values);
        }
        Ok(out)
    }

    /// Applies `changes`, one entity per entry; the first refusal is the error.
    pub async fn alter_user_quotas(&mut self, changes: &[QuotaChange]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let name = "AlterClientQuotas";
        let version = self.version_for::<AlterClientQuotasRequest>(name)?;
        let entries = changes
            .iter()
            .map(|c| {
                let set = c.set.iter().map(|(k, v)| {
                    OpData::default()
                        .with_key(str_bytes(k))
                        .with_value(*v as f64)
                        .with_remove(false)
                });
                let remove = c
                    .remove
                    .iter()
                    .map(|k| OpData::default().with_key(str_bytes(k)).with_remove(true));
                EntryData::default()
                    .with_entity(vec![EntityData::default()
                        .with_entity_type(str_bytes("user"))
                        .with_entity_name(Some(str_bytes(&c.user)))])
                    .with_ops(set.chain(remove).collect())
            })
            .collect();
        let response = self
            .send(
                &AlterClientQuotasRequest::default().with_entries(entries),
                version,
                name,
            )
            .await?;
        for (c, r) in changes.iter().zip(&response.entries) {
            if let Some(err) = code_text(r.error_code, r.error_message.as_ref()) {
                return Err(self.err(name, format!("quotas of user {}: {err}", c.user)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(entries: &[(&str, &[(&str, i64)])]) -> QuotasByUser {
        entries
            .iter()
            .map(|(u, kv)| {
                (
                    u.to_string(),
                    kv.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn managed_users_get_exactly_their_declared_quotas_and_others_are_left_alone() {
        let desired = quotas(&[
            ("app", &[(PRODUCER_BYTE_RATE, 1024)]),
            ("new", &[(CONSUMER_BYTE_RATE, 2048)]),
        ]);
        let present = quotas(&[
            (
                "app",
                &[(PRODUCER_BYTE_RATE, 512), (CONSUMER_BYTE_RATE, 64)],
            ),
            ("gone", &[(PRODUCER_BYTE_RATE, 1)]),
            // An administrator's own quota on a user the operator does not manage, and a key
            // the operator does not manage on one it does.
            ("admin", &[(PRODUCER_BYTE_RATE, 9)]),
            (
                "same",
                &[(PRODUCER_BYTE_RATE, 5), ("request_percentage", 50)],
            ),
        ]);
        let desired = {
            let mut d = desired;
            d.insert("same".into(), [(PRODUCER_BYTE_RATE.to_string(), 5)].into());
            d
        };
        let managed: BTreeSet<String> = ["app", "new", "gone", "same"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let changes = quota_changes(&desired, &present, &managed);
        assert_eq!(
            changes,
            vec![
                QuotaChange {
                    user: "app".into(),
                    set: vec![(PRODUCER_BYTE_RATE.into(), 1024)],
                    remove: vec![CONSUMER_BYTE_RATE.into()],
                },
                QuotaChange {
                    user: "gone".into(),
                    set: vec![],
                    remove: vec![PRODUCER_BYTE_RATE.into()],
                },
                QuotaChange {
                    user: "new".into(),
                    set: vec![(CONSUMER_BYTE_RATE.into(), 2048)],
                    remove: vec![],
                },
            ]
        );
        // Once applied, nothing is left to change.
        assert!(quota_changes(&desired, &desired, &managed).is_empty());
    }
}
