//! Reads served from the controller's own watches, and applies skipped when they would change
//! nothing.
//!
//! The controller watches its children (ConfigMaps, Services, StatefulSets,
//! PodDisruptionBudgets, Secrets carrying the managed-by label) to be woken when one changes;
//! `lib.rs` keeps what those watches see in reflector stores ([`ChildStores`]) instead of
//! throwing it away, so a pass reads a child from memory rather than with a GET.
//!
//! A cache may lag the API server by a watch event. The rules that keep that harmless:
//! - a child the cache has is trusted only to decide that nothing needs doing; a write is
//!   decided on a fresh read (a GET), so a lagging cache can neither mislabel a change nor lead to
//!   a new CA, password or certificate where one exists;
//! - a child the cache lacks is read with a GET before the pass acts on its absence, except for
//!   a MessageQueue never reconciled before, whose children are being created by this pass;
//! - an apply is skipped only when this process applied the same object before (its digest is
//!   remembered) and the cached child still holds every field of it ([`covers`]). A field the
//!   builders stopped setting changes the digest, so the apply that removes it is sent; a field
//!   someone edited breaks `covers`, so the apply that puts it back is sent. A skipped apply that
//!   a lagging cache hid is sent by the pass the child's next watch event starts.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{ssa, Context};
use crate::error::{Error, Result};

/// What one controller's watches of the children hold (one controller per watched namespace,
/// or one for all).
#[derive(Clone)]
pub struct ChildStores {
    /// The managed StatefulSets.
    pub statefulsets: Store<StatefulSet>,
    /// The managed ConfigMaps.
    pub configmaps: Store<ConfigMap>,
    /// The managed Services.
    pub services: Store<Service>,
    /// The managed PodDisruptionBudgets.
    pub pdbs: Store<PodDisruptionBudget>,
    /// The managed Secrets (CA, certificate, credentials, users').
    pub secrets: Store<Secret>,
}

/// A kind the controller keeps a store of.
pub(super) trait Cached: Resource<DynamicType = ()> + Clone + Sized + 'static {
    fn store(stores: &ChildStores) -> &Store<Self>;
}

macro_rules! cached {
    ($kind:ty, $field:ident) => {
        impl Cached for $kind {
            fn store(stores: &ChildStores) -> &Store<Self> {
                &stores.$field
            }
        }
    };
}
cached!(StatefulSet, statefulsets);
cached!(ConfigMap, configmaps);
cached!(Service, services);
cached!(PodDisruptionBudget, pdbs);
cached!(Secret, secrets);

impl Context {
    /// Registers the stores of one controller's watches.
    pub fn add_stores(&self, stores: ChildStores) {
        if let Ok(mut all) = self.stores.lock() {
            all.push(stores);
        }
    }

    /// `namespace/name` of kind `K` as the watch cache has it; None when no watch has seen it
    /// (absent, or not seen yet).
    pub(super) fn cached<K: Cached>(&self, namespace: &str, name: &str) -> Option<K> {
        let key = ObjectRef::<K>::new(name).within(namespace);
        let all = self.stores.lock().ok()?;
        all.iter()
            .find_map(|s| K::store(s).get(&key))
            .map(|k| (*k).clone())
    }

    /// The cached object, or when the cache has none, a GET.
    pub(super) async fn cached_or_get<K>(
        &self,
        api: &Api<K>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>>
    where
        K: Cached + DeserializeOwned + std::fmt::Debug,
    {
        if let Some(k) = self.cached::<K>(namespace, name) {
            return Ok(Some(k));
        }
        api.get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("get {} {name}", K::kind(&())), e))
    }

    fn applied_digest_is(&self, owner: &str, child: &str, digest: u64) -> bool {
        self.applied
            .lock()
            .ok()
            .is_some_and(|m| m.get(owner).and_then(|c| c.get(child)) == Some(&digest))
    }

    fn remember_applied(&self, owner: String, child: String, digest: u64) {
        if let Ok(mut m) = self.applied.lock() {
            m.entry(owner).or_default().insert(child, digest);
        }
    }

    /// Forgets what was applied for the children of the MessageQueue `namespace/name` (deleted).
    pub(super) fn forget_applied(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.applied.lock() {
            m.remove(&format!("{namespace}/{name}"));
        }
    }
}

/// True when `before` (the child as the cache or a GET has it) holds what this process last
/// applied as `obj`: applying `obj` would change nothing.
pub(super) fn is_current<K>(ctx: &Context, obj: &K, before: &K) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let desired = to_json(obj, "a child for apply")?;
    let (owner, child) = applied_key(obj);
    if !ctx.applied_digest_is(&owner, &child, digest(&desired)) {
        return Ok(false);
    }
    Ok(covers(&desired, &to_json(before, "a child as cached")?))
}

/// Server-side applies `obj` unless `before` already holds it ([`is_current`]); returns the
/// child as it is after, and whether an apply was sent.
pub(super) async fn apply_unless_current<K>(
    ctx: &Context,
    api: &Api<K>,
    obj: &K,
    before: Option<&K>,
) -> Result<(K, bool)>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let kind = K::kind(&());
    if let Some(before) = before {
        if is_current(ctx, obj, before)? {
            ctx.metrics.child_write(&kind, false);
            return Ok((before.clone(), false));
        }
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let desired = to_json(obj, "a child for apply")?;
    let after = api
        .patch(&name, &ssa(), &Patch::Apply(obj))
        .await
        .map_err(|e| Error::kube(format!("apply {kind} {name}"), e))?;
    let (owner, child) = applied_key(obj);
    ctx.remember_applied(owner, child, digest(&desired));
    ctx.metrics.child_write(&kind, true);
    Ok((after, true))
}

/// Counts a child found current without an apply.
pub(super) fn count_skipped<K: Resource<DynamicType = ()>>(ctx: &Context) {
    ctx.metrics.child_write(&K::kind(&()), false);
}

fn to_json<T: Serialize>(obj: &T, what: &'static str) -> Result<Value> {
    serde_json::to_value(obj).map_err(|source| Error::Serialize { what, source })
}

/// The digest map's keys of a child: its owning MessageQueue (namespace/name, so that the
/// MessageQueue's deletion forgets them all) and kind/name.
fn applied_key<K: Resource<DynamicType = ()>>(obj: &K) -> (String, String) {
    let meta = obj.meta();
    let owner = meta
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .map(|o| o.name.as_str())
        .unwrap_or_default();
    (
        format!("{}/{owner}", meta.namespace.as_deref().unwrap_or_default()),
        format!(
            "{}/{}",
            K::kind(&()),
            meta.name.as_deref().unwrap_or_default()
        ),
    )
}

/// A digest of an object as it is applied; only compared within this process.
fn digest(value: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    value.to_string().hash(&mut h);
    h.finish()
}

/// True when `actual` holds every field of `desired` with the same value: objects key by key
/// (`actual` may have more keys: the API server's defaults, status, metadata), lists item by item
/// with the same length (an item someone added counts as a difference). An empty object, list or
/// a null in `desired` matches a field `actual` lacks, as the API server drops those.
pub(super) fn covers(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, dv)| match a.get(k) {
            Some(av) => covers(dv, av),
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(dv, av)| covers(dv, av))
        }
        (d, a) => d == a || (is_empty(d) && is_empty(a)),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_status_added_by_the_server_still_cover() {
        let desired = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "broker", "ports": [{"containerPort": 9092}]}]}}}});
        let actual = json!({"spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"spec": {
            "containers": [{"name": "broker", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 9092, "protocol": "TCP"}]}]}}},
            "status": {"readyReplicas": 1}, "metadata": {"resourceVersion": "7"}});
        assert!(covers(&desired, &actual));
    }

    #[test]
    fn an_edited_value_does_not_cover() {
        let desired = json!({"spec": {"replicas": 3}});
        let actual = json!({"spec": {"replicas": 5}});
        assert!(!covers(&desired, &actual));
    }

    #[test]
    fn a_removed_field_does_not_cover() {
        let desired = json!({"metadata": {"labels": {"app": "mq"}}});
        let actual = json!({"metadata": {"labels": {}}});
        assert!(!covers(&desired, &actual));
    }

    #[test]
    fn an_added_list_item_does_not_cover() {
        let desired = json!({"env": [{"name": "A", "value": "1"}]});
        let actual = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        assert!(!covers(&desired, &actual));
    }

    #[test]
    fn an_empty_field_the_server_dropped_covers() {
        let desired = json!({"spec": {"args": [], "emptyDir": {}, "x": null}});
        let actual = json!({"spec": {"emptyDir": {}}});
        assert!(covers(&desired, &actual));
        assert!(!covers(
            &json!({"spec": {"emptyDir": {"medium": "Memory"}}}),
            &actual
        ));
    }
}
