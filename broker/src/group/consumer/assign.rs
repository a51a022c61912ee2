//! The server-side assignors of consumer groups (Kafka's `group.consumer.assignors`):
//! `uniform` (the default: balanced and sticky) and `range` (per topic, contiguous ranges in
//! member order, so members subscribed alike get the same partition numbers of every topic,
//! for co-partitioned joins). Pure functions of the members' subscriptions and the topics.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::Assignment;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Uniform,
    Range,
}

impl Assignor {
    pub fn parse(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }
}

/// The target assignment: every partition of a subscribed topic to exactly one member that
/// subscribes to it. `previous` is the last target (the uniform assignor keeps what it can).
pub fn assign(
    assignor: Assignor,
    subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
    partitions: &BTreeMap<Uuid, i32>,
    names: &BTreeMap<Uuid, &str>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    // Topics in name order, so the result does not depend on the ids' order.
    let mut topics: Vec<(Uuid, i32)> = partitions.iter().map(|(t, n)| (*t, *n)).collect();
    topics.sort_by_key(|(t, _)| names.get(t).copied().unwrap_or_default());
    match assignor {
        Assignor::Range => {
            for (topic, count) in topics {
                let members: Vec<&String> = subscriptions
                    .iter()
                    .filter(|(_, s)| s.contains(&topic))
                    .map(|(m, _)| m)
                    .collect();
                if members.is_empty() || count <= 0 {
                    continue;
                }
                let n = members.len() as i32;
                let (each, extra) = (count / n, count % n);
                let mut next = 0;
                for (i, m) in members.into_iter().enumerate() {
                    let take = each + i32::from((i as i32) < extra);
                    if take > 0 {
                        if let Some(a) = out.get_mut(m) {
                            a.entry(topic).or_default().extend(next..next + take);
                        }
                    }
                    next += take;
                }
            }
        }
        Assignor::Uniform => uniform(subscriptions, &topics, previous, &mut out),
    }
    out
}

fn uniform(
    subscriptions: &BTreeMap<String, BTreeSet<Uuid>>,
    topics: &[(Uuid, i32)],
    previous: &BTreeMap<String, Assignment>,
    out: &mut BTreeMap<String, Assignment>,
) {
    let eligible = |m: &str, t: &Uuid| subscriptions.get(m).is_some_and(|s| s.contains(t));
    let exists = |t: &Uuid, p: i32| topics.iter().any(|(id, n)| id == t && p >= 0 && p < *n);
    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    // Sticky: what a member had stays with it while it still subscribes.
    for (m, a) in previous {
        for (t, ps) in a {
            for p in ps {
                if eligible(m, t) && exists(t, *p) {
                    owner.entry((*t, *p)).or_insert_with(|| m.clone());
                }
            }
        }
    }
    let mut load: BTreeMap<String, usize> = subscriptions.keys().map(|m| (m.clone(), 0)).collect();
    for m in owner.values() {
        *load.entry(m.clone()).or_default() += 1;
    }
    // The rest to the least-loaded member that subscribes.
    for (t, n) in topics {
        for p in 0..*n {
            if owner.contains_key(&(*t, p)) {
                continue;
            }
            let pick = load
                .iter()
                .filter(|(m, _)| eligible(m, t))
                .min_by_key(|(m, l)| (**l, (*m).clone()))
                .map(|(m, _)| m.clone());
            if let Some(m) = pick {
                *load.entry(m.clone()).or_default() += 1;
                owner.insert((*t, p), m);
            }
        }
    }
    // Balance: move partitions from the most loaded member to one that can take them while
    // the difference is more than one. Bounded: every move lowers the sum of squared loads.
    let bound = owner.len() * subscriptions.len() + 1;
    for _ in 0..bound {
        let mut moved = false;
        let mut by_load: Vec<(String, usize)> = load.iter().map(|(m, l)| (m.clone(), *l)).collect();
        by_load.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        'outer: for (from, from_load) in &by_load {
            for (to, to_load) in by_load.iter().rev() {
                if *from_load <= to_load + 1 {
                    break;
                }
                let candidate = owner
                    .iter()
                    .rev()
                    .find(|((t, _), m)| *m == from && eligible(to, t))
                    .map(|(k, _)| *k);
                if let Some(k) = candidate {
                    owner.insert(k, to.clone());
                    *load.entry(from.clone()).or_default() -= 1;
                    *load.entry(to.clone()).or_default() += 1;
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    for ((t, p), m) in owner {
        if let Some(a) = out.get_mut(&m) {
            a.entry(t).or_default().insert(p);
        }
    }
}
