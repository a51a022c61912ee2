//! The users phase: each `spec.users[]` entry gets its Secret (the password generated when the
//! Secret has none; a password written into it by the user is a rotation), its SCRAM
//! credential on the brokers (upserted only when the password changed since this process last
//! wrote it), exactly its declared ACLs and its declared client quotas; a user removed from the
//! spec loses its credential, its ACLs, its quotas and its Secret. ACLs and quotas of users the
//! operator never managed are never touched.
//!
//! Passwords go only into the users' Secrets and, salted, to the brokers: never into logs,
//! status or Events.

use std::collections::{BTreeMap, BTreeSet};

use crate::events::EventType;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams};

use super::{brokers, cache, secrets, Context, PassResult};
use crate::builders::{selector_string, Names};
use crate::certs;
use crate::crd::{MessageQueue, MessageQueueStatus};
use crate::error::{Error, Result};
use crate::kafka::{
    acl_changes, quota_changes, AdminClient, QuotasByUser, SaslMechanism, DESCRIBE_CLIENT_QUOTAS,
};
use crate::security::{self, Security};

/// Label on a user's Secret naming the user, so a removed user's Secret is found whatever
/// its name was.
pub const USER_LABEL: &str = "sluice.dev/user";

/// Applies `spec.users` (see the module documentation). Failures are logged and retried by the
/// next pass; the users not yet removed stay in `managedUsers`.
pub(super) async fn sync_users(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    pods: &[Pod],
    previous: &MessageQueueStatus,
    pass: &mut PassResult,
) {
    let declared: BTreeSet<String> = mq.spec.users.iter().map(|u| u.name.clone()).collect();
    let before: BTreeSet<String> = previous.managed_users.iter().cloned().collect();
    // until the brokers confirm, every user declared now or before stays managed
    pass.managed_users = declared.union(&before).cloned().collect();
    let Some(security) = Security::of(&mq.spec).filter(Security::sasl) else {
        return;
    };
    let passwords = match write_secrets(mq, ctx, names, &security).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(mq = %names.name, error = %e, "writing the users' Secrets failed");
            return;
        }
    };
    let Some((_, pod, mut admin)) =
        brokers::first_ready_broker(ctx, names, pods, mq.spec.replicas.max(1)).await
    else {
        return;
    };
    let rolling = mixed_revisions(pods);
    match apply_on_brokers(mq, ctx, names, &mut admin, &passwords, &before, rolling).await {
        // Quota changes wait for the roll: the users to remove stay managed until they can go.
        Ok(None) => {}
        Ok(Some(removed)) => {
            pass.managed_users = declared.iter().cloned().collect();
            for user in removed {
                ctx.publish(
                    mq,
                    EventType::Normal,
                    "UserRemoved",
                    "User",
                    format!("removed user {user}: its credentials, ACLs and Secret"),
                )
                .await;
            }
        }
        Err(e) => {
            tracing::warn!(mq = %names.name, %pod, error = %e, "applying users and ACLs failed")
        }
    }
}

/// Writes every declared user's Secret; returns each user's password.
async fn write_secrets(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    security: &Security,
) -> Result<BTreeMap<String, String>> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let ca = secrets::client_ca(ctx, names);
    let bootstrap = names.bootstrap_servers(mq.spec.service.port);
    let mut passwords = BTreeMap::new();
    for user in &mq.spec.users {
        let secret_name = user
            .secret_name
            .clone()
            .unwrap_or_else(|| names.user_secret(&user.name));
        let build = |existing: Option<&Secret>| -> Result<(Secret, String)> {
            let password = match existing.and_then(|s| security::secret_text(s, "password")) {
                Some(p) => p,
                None => certs::generate_password()?,
            };
            let data = security::user_secret_data(
                security,
                &user.name,
                &password,
                &bootstrap,
                ca.as_deref(),
            );
            let mut secret = security::secret(
                mq,
                &ctx.build,
                secret_name.clone(),
                "Opaque",
                data,
                BTreeMap::new(),
            )?;
            if let Some(labels) = secret.metadata.labels.as_mut() {
                labels.insert(USER_LABEL.to_string(), user.name.clone());
            }
            Ok((secret, password))
        };
        // The cached Secret only to find that nothing needs writing; a write (which may carry
        // a new password) is decided on a fresh read.
        if let Some(cached) = ctx.cached::<Secret>(&names.namespace, &secret_name) {
            let (secret, password) = build(Some(&cached))?;
            if cache::is_current(ctx, &secret, &cached)? {
                cache::count_skipped::<Secret>(ctx);
                passwords.insert(user.name.clone(), password);
                continue;
            }
        }
        let existing = api
            .get_opt(&secret_name)
            .await
            .map_err(|e| Error::kube(format!("get Secret {secret_name}"), e))?;
        let (secret, password) = build(existing.as_ref())?;
        cache::apply_unless_current(ctx, &api, &secret, existing.as_ref()).await?;
        passwords.insert(user.name.clone(), password);
    }
    Ok(passwords)
}

fn digest(user: &str, password: &str) -> String {
    certs::fingerprint(&[user.to_string()], password)
}

/// Whether the brokers' pods run more than one revision of the StatefulSet: a roll is in
/// progress, and some brokers may run the version before it.
fn mixed_revisions(pods: &[Pod]) -> bool {
    let revisions: BTreeSet<&String> = pods
        .iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get("controller-revision-hash"))
        .collect();
    revisions.len() > 1
}

/// The managed users' quotas to exactly the `declared` ones; `false` when changes are due but
/// wait, because the brokers are `rolling`: a quota is an entry of the brokers' metadata log,
/// which a broker of a version from before client quotas cannot read (it would stop following
/// the log), so quotas change only while every broker runs the same revision.
async fn sync_quotas(
    names: &Names,
    admin: &mut AdminClient,
    declared: &QuotasByUser,
    passwords: &BTreeMap<String, String>,
    before: &BTreeSet<String>,
    rolling: bool,
) -> Result<bool> {
    let managed: BTreeSet<String> = passwords.keys().chain(before.iter()).cloned().collect();
    let changes = quota_changes(declared, &admin.describe_user_quotas().await?, &managed);
    if rolling && !changes.is_empty() {
        tracing::info!(mq = %names.name, changes = changes.len(),
            "client quota changes wait for the roll to finish (brokers of an older version cannot read them)");
        return Ok(false);
    }
    admin.alter_user_quotas(&changes).await?;
    for change in &changes {
        tracing::info!(mq = %names.name, user = %change.user, set = ?change.set,
            removed = ?change.remove, "user quotas synced");
    }
    Ok(true)
}

/// Credentials, ACLs and quotas on the brokers; returns the users removed, or `None` when
/// quota changes wait for a roll to finish (users to remove are removed after it).
async fn apply_on_brokers(
    mq: &MessageQueue,
    ctx: &Context,
    names: &Names,
    admin: &mut AdminClient,
    passwords: &BTreeMap<String, String>,
    before: &BTreeSet<String>,
    rolling: bool,
) -> Result<Option<Vec<String>>> {
    let key = |user: &str| format!("{}/{}/{user}", names.namespace, names.name);
    for (user, password) in passwords {
        let digest = digest(user, password);
        let known = ctx
            .user_digests
            .lock()
            .ok()
            .and_then(|m| m.get(&key(user)).cloned());
        if known.as_deref() != Some(digest.as_str()) {
            admin
                .upsert_scram_user(user, SaslMechanism::ScramSha512, password)
                .await?;
            if let Ok(mut m) = ctx.user_digests.lock() {
                m.insert(key(user), digest);
            }
            tracing::info!(mq = %names.name, user = %user, "user credentials written to the brokers");
        }
    }

    let desired = security::desired_acls(&mq.spec);
    let managed: BTreeSet<String> = passwords
        .keys()
        .chain(before.iter())
        .map(|u| security::principal(u))
        .collect();
    let present = admin.describe_acls().await?;
    let (create, delete) = acl_changes(&desired, &present, &managed);
    if !create.is_empty() {
        admin.create_acls(&create).await?;
    }
    if !delete.is_empty() {
        admin.delete_acls(&delete).await?;
    }
    if !create.is_empty() || !delete.is_empty() {
        tracing::info!(mq = %names.name, created = create.len(), deleted = delete.len(), "ACLs synced");
    }

    // A broker from before client quotas cannot hold any: skipped there while none is declared,
    // so the rest of the phase (removing users) still runs during a roll.
    let declared = security::desired_quotas(&mq.spec);
    if (!declared.is_empty() || admin.supports(DESCRIBE_CLIENT_QUOTAS))
        && !sync_quotas(names, admin, &declared, passwords, before, rolling).await?
    {
        return Ok(None);
    }

    let removed: Vec<String> = before
        .iter()
        .filter(|u| !passwords.contains_key(*u))
        .cloned()
        .collect();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    for user in &removed {
        admin
            .delete_scram_user(user, SaslMechanism::ScramSha512)
            .await?;
        if let Ok(mut m) = ctx.user_digests.lock() {
            m.remove(&key(user));
        }
        let selector = format!("{},{USER_LABEL}={user}", selector_string(&names.name));
        let owned = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Error::kube(format!("list Secrets of user {user}"), e))?;
        for secret in owned.items {
            let name = secret.metadata.name.unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::kube(format!("delete Secret {name}"), e)),
            }
        }
    }
    Ok(Some(removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(revision: Option<&str>) -> Pod {
        let mut p = Pod::default();
        if let Some(r) = revision {
            p.metadata.labels = Some(BTreeMap::from([(
                "controller-revision-hash".to_string(),
                r.to_string(),
            )]));
        }
        p
    }

    #[test]
    fn a_roll_is_pods_of_more_than_one_revision() {
        assert!(!mixed_revisions(&[]));
        assert!(!mixed_revisions(&[
            pod(Some("a")),
            pod(Some("a")),
            pod(None)
        ]));
        assert!(mixed_revisions(&[
            pod(Some("a")),
            pod(Some("b")),
            pod(Some("a"))
        ]));
    }
}
