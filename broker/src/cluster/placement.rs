//! Where new partitions' replicas go. Pure and deterministic (every broker applying the same
//! command places the same way).
//!
//! For each new partition, one at a time:
//! - the leader (first replica) is the candidate leading the fewest partitions, then holding
//!   the fewest replicas, then the lowest id, so leadership spreads evenly;
//! - each further replica is the candidate on a rack the partition does not use yet (when
//!   brokers have racks), then holding the fewest replicas, then the lowest id.
//!
//! Candidates are the brokers that take new placements (active, not draining or fenced).

use std::collections::BTreeMap;

/// A broker that can take new replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// How many replicas and leaderships each broker has now.
#[derive(Debug, Clone, Default)]
pub struct Load {
    pub replicas: BTreeMap<i32, usize>,
    pub leaders: BTreeMap<i32, usize>,
}

impl Load {
    fn replicas(&self, id: i32) -> usize {
        self.replicas.get(&id).copied().unwrap_or(0)
    }

    fn leaders(&self, id: i32) -> usize {
        self.leaders.get(&id).copied().unwrap_or(0)
    }
}

/// Replica lists (leader first) for `partitions` new partitions of `replication_factor`
/// copies each. `Err` says why it cannot be done.
pub fn place(
    candidates: &[Candidate],
    load: &Load,
    partitions: usize,
    replication_factor: usize,
) -> Result<Vec<Vec<i32>>, String> {
    if replication_factor == 0 {
        return Err("replication factor must be at least 1".into());
    }
    if candidates.len() < replication_factor {
        return Err(format!(
            "replication factor {replication_factor} is larger than the {} broker(s) available \
             for new partitions",
            candidates.len()
        ));
    }
    let mut load = load.clone();
    let mut out = Vec::with_capacity(partitions);
    for _ in 0..partitions {
        let mut chosen: Vec<&Candidate> = Vec::with_capacity(replication_factor);
        let leader = candidates
            .iter()
            .min_by_key(|c| (load.leaders(c.id), load.replicas(c.id), c.id))
            .ok_or("no broker available")?;
        chosen.push(leader);
        while chosen.len() < replication_factor {
            let next = candidates
                .iter()
                .filter(|c| !chosen.iter().any(|x| x.id == c.id))
                .min_by_key(|c| {
                    let rack_used = c.rack.is_some()
                        && chosen.iter().any(|x| x.rack.is_some() && x.rack == c.rack);
                    (rack_used, load.replicas(c.id), c.id)
                })
                .ok_or("no broker available")?;
            chosen.push(next);
        }
        *load.leaders.entry(leader.id).or_default() += 1;
        for c in &chosen {
            *load.replicas.entry(c.id).or_default() += 1;
        }
        out.push(chosen.iter().map(|c| c.id).collect());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(spec: &[(i32, Option<&str>)]) -> Vec<Candidate> {
        spec.iter()
            .map(|(id, rack)| Candidate {
                id: *id,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    #[test]
    fn one_copy_spreads_partitions_over_brokers() {
        let b = brokers(&[(0, None), (1, None), (2, None)]);
        let p = place(&b, &Load::default(), 4, 1).expect("place");
        assert_eq!(p, vec![vec![0], vec![1], vec![2], vec![0]]);
    }

    #[test]
    fn three_copies_on_distinct_brokers_with_leadership_rotating() {
        let b = brokers(&[(0, None), (1, None), (2, None)]);
        let p = place(&b, &Load::default(), 3, 3).expect("place");
        assert_eq!(p, vec![vec![0, 1, 2], vec![1, 0, 2], vec![2, 0, 1]]);
        for r in &p {
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3);
        }
    }

    #[test]
    fn replicas_go_to_other_racks_first() {
        let b = brokers(&[
            (0, Some("a")),
            (1, Some("a")),
            (2, Some("b")),
            (3, Some("b")),
        ]);
        for replicas in place(&b, &Load::default(), 8, 2).expect("place") {
            let racks: Vec<_> = replicas
                .iter()
                .map(|id| b.iter().find(|c| c.id == *id).and_then(|c| c.rack.clone()))
                .collect();
            assert_ne!(racks[0], racks[1], "{replicas:?} shares a rack");
        }
    }

    #[test]
    fn existing_load_steers_new_partitions_to_the_emptiest_broker() {
        let b = brokers(&[(0, None), (1, None), (2, None)]);
        let load = Load {
            replicas: BTreeMap::from([(0, 5), (1, 5), (2, 0)]),
            leaders: BTreeMap::from([(0, 3), (1, 2), (2, 0)]),
        };
        assert_eq!(place(&b, &load, 1, 2).expect("place"), vec![vec![2, 0]]);
    }

    #[test]
    fn too_few_brokers_is_refused_with_the_numbers() {
        let b = brokers(&[(0, None), (1, None)]);
        let e = place(&b, &Load::default(), 1, 3).expect_err("refused");
        assert!(
            e.contains("replication factor 3") && e.contains("2 broker"),
            "{e}"
        );
        assert!(place(&b, &Load::default(), 1, 0).is_err());
    }
}
