//! SCRAM users: DescribeUserScramCredentials and AlterUserScramCredentials (`kafka-configs.sh
//! --entity-type users --alter --add-config 'SCRAM-SHA-512=[password=...]'`), stored in the
//! metadata quorum. The client salts the password itself (PBKDF2) and sends the salt and the
//! salted password; the broker keeps only the salt, the iteration count, StoredKey and
//! ServerKey. The caller's ALTER (DESCRIBE) on the cluster was checked by `dispatch`.
//!
//! As Kafka: each user's alterations are applied together or not at all; a user named twice
//! for the same mechanism in one request is DUPLICATE_RESOURCE, deleting a credential that
//! does not exist RESOURCE_NOT_FOUND, iterations outside 4096..=16384 or an empty name or
//! salt UNACCEPTABLE_CREDENTIAL, an unknown mechanism UNSUPPORTED_SASL_MECHANISM. Users of the
//! bootstrap users file cannot be altered here (the file wins).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::sasl::UNSUPPORTED_SASL_MECHANISM;
use super::{codes, sb};
use crate::cluster::state::{Command, Outcome};
use crate::context::BrokerContext;
use crate::security::scram::{ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::security::Mechanism;

pub const RESOURCE_NOT_FOUND: i16 = 91;
pub const DUPLICATE_RESOURCE: i16 = 92;
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
/// Kafka's NOT_CONTROLLER: the quorum did not take the change (retriable).
const NOT_CONTROLLER: i16 = 41;

/// DescribeUserScramCredentials: the named users (or all users of the quorum) with their
/// mechanisms and iteration counts.
pub fn describe(
    ctx: &BrokerContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    use describe_user_scram_credentials_response::{
        CredentialInfo, DescribeUserScramCredentialsResult,
    };
    let state = ctx.cluster.state();
    let named: Option<Vec<String>> = req
        .users
        .filter(|u| !u.is_empty())
        .map(|u| u.iter().map(|n| n.name.as_str().to_string()).collect());
    let mut results = Vec::new();
    let info = |creds: &BTreeMap<Mechanism, ScramCredential>| {
        creds
            .iter()
            .map(|(m, c)| {
                CredentialInfo::default()
                    .with_mechanism(m.scram_type())
                    .with_iterations(i32::try_from(c.iterations).unwrap_or(i32::MAX))
            })
            .collect::<Vec<_>>()
    };
    match named {
        None => {
            for (user, creds) in &state.scram {
                results.push(
                    DescribeUserScramCredentialsResult::default()
                        .with_user(sb(user))
                        .with_credential_infos(info(creds)),
                );
            }
        }
        Some(names) => {
            let mut seen = BTreeSet::new();
            let dup: BTreeSet<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
            let mut done = BTreeSet::new();
            for name in &names {
                if !done.insert(name) {
                    continue;
                }
                let r = DescribeUserScramCredentialsResult::default().with_user(sb(name));
                let r = if dup.contains(name) {
                    r.with_error_code(DUPLICATE_RESOURCE).with_error_message(Some(sb(
                        "Cannot describe SCRAM credentials for the same user twice in a single request",
                    )))
                } else {
                    match state.scram.get(name) {
                        Some(creds) => r.with_credential_infos(info(creds)),
                        None => r
                            .with_error_code(RESOURCE_NOT_FOUND)
                            .with_error_message(Some(sb(
                                "Attempt to describe a user credential that does not exist",
                            ))),
                    }
                };
                ctx.metrics
                    .error_code("DescribeUserScramCredentials", r.error_code);
                results.push(r);
            }
        }
    }
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One user's alterations, or why none of them apply.
#[derive(Default)]
struct UserChange {
    upsertions: Vec<(Mechanism, ScramCredential)>,
    deletions: Vec<Mechanism>,
    error: Option<(i16, String)>,
}

impl UserChange {
    fn fail(&mut self, code: i16, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some((code, message.into()));
        }
    }

    fn mechanisms(&self) -> impl Iterator<Item = Mechanism> + '_ {
        self.upsertions
            .iter()
            .map(|(m, _)| *m)
            .chain(self.deletions.iter().copied())
    }
}

/// AlterUserScramCredentials: the valid users' alterations in one quorum change.
pub async fn alter(
    ctx: &Arc<BrokerContext>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    use alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
    let state = ctx.cluster.state();
    let file_users: BTreeSet<String> = ctx
        .security
        .users
        .as_ref()
        .map(|u| u.names().into_iter().collect())
        .unwrap_or_default();
    // In request order, each user once.
    let mut order: Vec<String> = Vec::new();
    let mut changes: BTreeMap<String, UserChange> = BTreeMap::new();
    let mut entry = |name: &StrBytes| -> String {
        let name = name.as_str().to_string();
        if !changes.contains_key(&name) {
            order.push(name.clone());
            changes.insert(name.clone(), UserChange::default());
        }
        name
    };
    for name in req.deletions.iter().map(|d| &d.name) {
        entry(name);
    }
    for name in req.upsertions.iter().map(|u| &u.name) {
        entry(name);
    }
    for d in &req.deletions {
        let name = d.name.as_str().to_string();
        let Some(change) = changes.get_mut(&name) else {
            continue;
        };
        match Mechanism::from_scram_type(d.mechanism) {
            None => change.fail(UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
            Some(m) => {
                if !state.scram.get(&name).is_some_and(|c| c.contains_key(&m)) {
                    change.fail(
                        RESOURCE_NOT_FOUND,
                        "Attempt to delete a user credential that does not exist",
                    );
                }
                change.deletions.push(m);
            }
        }
    }
    for u in req.upsertions {
        let name = u.name.as_str().to_string();
        let Some(change) = changes.get_mut(&name) else {
            continue;
        };
        let iterations = u32::try_from(u.iterations).unwrap_or(0);
        match Mechanism::from_scram_type(u.mechanism) {
            None => change.fail(UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
            Some(_) if iterations < MIN_ITERATIONS => change.fail(
                UNACCEPTABLE_CREDENTIAL,
                format!("Too few iterations: at least {MIN_ITERATIONS}"),
            ),
            Some(_) if iterations > MAX_ITERATIONS => change.fail(
                UNACCEPTABLE_CREDENTIAL,
                format!("Too many iterations: at most {MAX_ITERATIONS}"),
            ),
            Some(_) if u.salt.is_empty() => change.fail(UNACCEPTABLE_CREDENTIAL, "Empty salt"),
            Some(m) if u.salted_password.len() != m.hash_len() => change.fail(
                UNACCEPTABLE_CREDENTIAL,
                format!("The salted password of {m} has {} bytes", m.hash_len()),
            ),
            Some(m) => change.upsertions.push((
                m,
                ScramCredential::from_salted_password(
                    m,
                    &u.salted_password,
                    u.salt.to_vec(),
                    iterations,
                ),
            )),
        }
    }
    for (name, change) in &mut changes {
        if name.is_empty() {
            change.fail(UNACCEPTABLE_CREDENTIAL, "Username must not be empty");
        }
        if file_users.contains(name) {
            change.fail(
                UNACCEPTABLE_CREDENTIAL,
                "This user is defined by the broker's --sasl-users-file and cannot be altered here",
            );
        }
        let mut seen = BTreeSet::new();
        if change.mechanisms().any(|m| !seen.insert(m)) {
            change.fail(
                DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request",
            );
        }
    }

    let mut upsertions = Vec::new();
    let mut deletions = Vec::new();
    for name in &order {
        if let Some(c) = changes.get(name).filter(|c| c.error.is_none()) {
            deletions.extend(c.deletions.iter().map(|m| (name.clone(), *m)));
            upsertions.extend(
                c.upsertions
                    .iter()
                    .map(|(m, cred)| (name.clone(), *m, cred.clone())),
            );
        }
    }
    if !upsertions.is_empty() || !deletions.is_empty() {
        let outcome = ctx
            .cluster
            .propose(Command::AlterScramCredentials {
                upsertions,
                deletions,
            })
            .await;
        let failed = match outcome {
            Ok(Outcome::ScramAltered { missing }) => {
                // Deleted concurrently since the check above: reported, nothing else changed.
                for (user, _) in missing {
                    if let Some(c) = changes.get_mut(&user) {
                        c.fail(
                            RESOURCE_NOT_FOUND,
                            "Attempt to delete a user credential that does not exist",
                        );
                    }
                }
                None
            }
            Ok(other) => Some(format!("unexpected outcome {other:?}")),
            Err(e) => Some(format!(
                "the metadata quorum did not accept the change: {e}"
            )),
        };
        if let Some(message) = failed {
            for c in changes.values_mut() {
                c.fail(NOT_CONTROLLER, message.clone());
            }
        }
    }
    let results = order
        .iter()
        .map(|name| {
            let (code, message) = changes
                .get(name)
                .and_then(|c| c.error.clone())
                .unwrap_or((codes::NONE, String::new()));
            ctx.metrics.error_code("AlterUserScramCredentials", code);
            if code == codes::NONE {
                tracing::info!(user = %name, "SCRAM credentials altered");
            }
            AlterUserScramCredentialsResult::default()
                .with_user(sb(name))
                .with_error_code(code)
                .with_error_message((code != codes::NONE).then(|| sb(&message)))
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
