use super::*;

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition,
    }
}

/// Brokers, and partitions as (topic, partition, owner).
fn view(brokers: &[i32], parts: &[(&str, i32, i32)]) -> ClusterView {
    ClusterView {
        brokers: brokers.iter().copied().collect(),
        fenced: BTreeSet::new(),
        partitions: parts
            .iter()
            .map(|(t, p, owner)| (tp(t, *p), (vec![*owner], *owner)))
            .collect(),
        ongoing: BTreeMap::new(),
        disks: BTreeMap::new(),
    }
}

#[test]
fn fenced_brokers_get_nothing_and_registration_comes_from_describe_cluster() {
    // Metadata knows brokers 0 and 2; DescribeCluster adds broker 1, fenced
    let v = view(&[0, 2], &[("a", 0, 0), ("a", 1, 0), ("a", 2, 2)])
        .with_registered(&BTreeMap::from([(0, false), (1, true), (2, false)]));
    assert_eq!(v.brokers, BTreeSet::from([0, 1, 2]));
    match plan_drain(&v, 2, &[2]) {
        // broker 1 holds nothing but is fenced: everything goes to 0
        DrainPlan::Moving { requests, .. } => assert_eq!(requests, vec![(tp("a", 2), vec![0])]),
        other => panic!("expected a move, got {other:?}"),
    }
    let only_fenced =
        view(&[], &[("a", 0, 1)]).with_registered(&BTreeMap::from([(0, true), (1, false)]));
    match plan_drain(&only_fenced, 1, &[1]) {
        DrainPlan::Blocked { reason, .. } => {
            assert!(reason.contains("fenced: 0"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn nothing_on_the_removed_brokers_is_drained() {
    let v = view(&[0, 1, 2], &[("a", 0, 0), ("a", 1, 1)]);
    assert_eq!(plan_drain(&v, 2, &[2]), DrainPlan::Drained);
    assert_eq!(plan_drain(&view(&[0], &[]), 1, &[1, 2]), DrainPlan::Drained);
}

#[test]
fn partitions_go_to_the_remaining_broker_with_the_fewest() {
    // broker 0 holds 3, broker 1 holds 1; brokers 2 and 3 go with 4 partitions between them
    let v = view(
        &[0, 1, 2, 3],
        &[
            ("a", 0, 0),
            ("a", 1, 0),
            ("a", 2, 0),
            ("a", 3, 1),
            ("b", 0, 2),
            ("b", 1, 3),
            ("b", 2, 2),
            ("b", 3, 3),
        ],
    );
    match plan_drain(&v, 2, &[2, 3]) {
        DrainPlan::Moving {
            requests,
            remaining,
            moving,
        } => {
            assert_eq!(
                requests,
                vec![
                    (tp("b", 0), vec![1]),
                    (tp("b", 1), vec![1]),
                    (tp("b", 2), vec![0]),
                    (tp("b", 3), vec![1])
                ]
            );
            assert_eq!((remaining, moving), (4, 4));
        }
        other => panic!("expected moves, got {other:?}"),
    }
}

#[test]
fn moves_in_flight_are_counted_not_requested_again() {
    let mut v = view(&[0, 1, 2], &[("a", 0, 2), ("a", 1, 2), ("a", 2, 0)]);
    v.ongoing.insert(tp("a", 0), vec![1]);
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Moving {
            requests,
            remaining,
            moving,
        } => {
            // broker 1 will hold a-0, broker 0 holds a-2: a tie, the lower id wins
            assert_eq!(requests, vec![(tp("a", 1), vec![0])]);
            assert_eq!((remaining, moving), (2, 2));
            assert_eq!(
                progress(remaining, moving, &[2]),
                "moving 2 of 2 partitions off brokers 2 before the scale-down"
            );
        }
        other => panic!("expected moves, got {other:?}"),
    }
    // the move finished: a-0 is on 1 now, a-1 still in flight
    let mut v = view(&[0, 1, 2], &[("a", 0, 1), ("a", 1, 2), ("a", 2, 0)]);
    v.ongoing.insert(tp("a", 1), vec![0]);
    assert_eq!(
        plan_drain(&v, 2, &[2]),
        DrainPlan::Moving {
            requests: vec![],
            remaining: 1,
            moving: 1
        }
    );
}

#[test]
fn a_move_towards_a_removed_broker_is_redirected() {
    let mut v = view(&[0, 1, 2], &[("a", 0, 0)]);
    v.ongoing.insert(tp("a", 0), vec![2]);
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Moving {
            requests,
            remaining,
            ..
        } => {
            // sent back to the least loaded remaining broker (here the one it is on)
            assert_eq!(requests, vec![(tp("a", 0), vec![0])]);
            assert_eq!(remaining, 0);
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn no_registered_remaining_broker_blocks_naming_the_partitions() {
    let v = view(&[2], &[("a", 0, 2), ("a", 1, 2)]);
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Blocked { reason, blocking } => {
            assert_eq!(blocking, vec![tp("a", 0), tp("a", 1)]);
            assert!(reason.contains("a-0, a-1"), "{reason}");
            assert!(reason.contains("registered: 2"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn partitions_without_replicas_use_the_leader_and_leaderless_ones_are_ignored() {
    let mut v = view(&[0, 1], &[]);
    v.partitions.insert(tp("x", 0), (vec![], 1));
    v.partitions.insert(tp("x", 1), (vec![], -1));
    match plan_drain(&v, 1, &[1]) {
        DrainPlan::Moving { requests, .. } => assert_eq!(requests, vec![(tp("x", 0), vec![0])]),
        other => panic!("expected a move, got {other:?}"),
    }
}

const MIB: u64 = 1 << 20;

/// A broker's disk: its partitions (topic, partition, bytes) and its room.
fn disk(parts: &[(&str, i32, u64)], room: u64) -> BrokerDisk {
    BrokerDisk {
        partitions: parts.iter().map(|(t, p, n)| (tp(t, *p), *n)).collect(),
        room,
    }
}

#[test]
fn room_is_the_free_space_of_the_claim_or_the_file_system_less_the_reserve() {
    let usage = LogDirUsage {
        partitions: BTreeMap::from([(tp("a", 0), 30 * MIB), (tp("a", 1), 10 * MIB)]),
        total_bytes: Some(1000 * MIB),
        usable_bytes: Some(900 * MIB),
        failed: vec![],
    };
    // A 100 MiB claim on a large file system: 60 MiB free by the claim, less 10 MiB reserve.
    let d = broker_disk(&usage, Some(100 * MIB)).expect("known");
    assert_eq!(d.room, 50 * MIB);
    assert_eq!(d.partitions.len(), 2);
    // The file system is fuller than the claim says: its free space counts.
    let full = LogDirUsage {
        usable_bytes: Some(15 * MIB),
        ..usage.clone()
    };
    assert_eq!(
        broker_disk(&full, Some(100 * MIB)).expect("known").room,
        5 * MIB
    );
    // No claim known: the volume as the broker reports it.
    assert_eq!(
        broker_disk(&usage, None).expect("known").room,
        800 * MIB,
        "900 MiB usable less 10% of 1000 MiB"
    );
    // Full beyond the reserve: no room, never an underflow.
    let brim = LogDirUsage {
        usable_bytes: Some(MIB),
        ..usage.clone()
    };
    assert_eq!(broker_disk(&brim, Some(100 * MIB)).expect("known").room, 0);
    // Nothing known about the volume (a broker before DescribeLogDirs v4, no claim).
    let unknown = LogDirUsage {
        total_bytes: None,
        usable_bytes: None,
        ..usage
    };
    assert_eq!(broker_disk(&unknown, None), None);
}

#[test]
fn byte_counts_read_like_people_write_them() {
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(3 * MIB / 2), "1.5 MiB");
    assert_eq!(human_bytes(5 << 30), "5.0 GiB");
}

#[test]
fn partitions_go_largest_first_to_brokers_with_room() {
    // brokers 0 and 1 stay; broker 2 holds a big and two small partitions
    let v =
        view(&[0, 1, 2], &[("a", 0, 2), ("a", 1, 2), ("a", 2, 2)]).with_disks(BTreeMap::from([
            (0, disk(&[], 5 * MIB)),
            (1, disk(&[], 12 * MIB)),
            (
                2,
                disk(&[("a", 0, MIB), ("a", 1, 10 * MIB), ("a", 2, MIB)], 0),
            ),
        ]));
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Moving {
            requests,
            remaining,
            moving,
        } => {
            // a-1 (10 MiB) only fits on 1; then a-0 and a-2 balance the count onto 0
            assert_eq!(
                requests,
                vec![
                    (tp("a", 1), vec![1]),
                    (tp("a", 0), vec![0]),
                    (tp("a", 2), vec![0])
                ]
            );
            assert_eq!((remaining, moving), (3, 3));
        }
        other => panic!("expected moves, got {other:?}"),
    }
}

#[test]
fn partitions_that_fit_nowhere_refuse_the_scale_down_before_anything_moves() {
    let v =
        view(&[0, 1, 2], &[("a", 0, 0), ("a", 1, 2), ("a", 2, 2)]).with_disks(BTreeMap::from([
            (0, disk(&[("a", 0, MIB)], 3 * MIB)),
            (1, disk(&[], 2 * MIB)),
            (2, disk(&[("a", 1, 4 * MIB), ("a", 2, MIB)], 0)),
        ]));
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Blocked { reason, blocking } => {
            assert_eq!(
                blocking,
                vec![tp("a", 1)],
                "a-2 would fit, a-1 fits nowhere"
            );
            assert!(reason.contains("a-1 (4.0 MiB)"), "{reason}");
            assert!(reason.contains("hold 5.0 MiB in all"), "{reason}");
            assert!(
                reason.contains("broker 0 3.0 MiB, broker 1 2.0 MiB"),
                "{reason}"
            );
            assert!(reason.contains("grow storage.size"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A broker that did not report its disk is not held to a limit.
    let mut unknown = v.clone();
    unknown.disks.remove(&1);
    match plan_drain(&unknown, 2, &[2]) {
        DrainPlan::Moving { requests, .. } => {
            assert_eq!(requests, vec![(tp("a", 1), vec![1]), (tp("a", 2), vec![0])])
        }
        other => panic!("expected moves, got {other:?}"),
    }
}

#[test]
fn moves_in_flight_take_their_room_on_the_target() {
    // a-0 (4 MiB) is being copied to broker 0, 1 MiB of it already there
    let mut v = view(&[0, 1, 2], &[("a", 0, 2), ("a", 1, 2)]).with_disks(BTreeMap::from([
        (0, disk(&[("a", 0, MIB)], 5 * MIB)),
        (1, disk(&[], MIB)),
        (2, disk(&[("a", 0, 4 * MIB), ("a", 1, 2 * MIB)], 0)),
    ]));
    v.ongoing.insert(tp("a", 0), vec![0]);
    // 5 - (4 - 1) = 2 MiB left on 0: a-1 (2 MiB) fits there, not on 1
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Moving { requests, .. } => assert_eq!(requests, vec![(tp("a", 1), vec![0])]),
        other => panic!("expected a move, got {other:?}"),
    }
    v.disks.get_mut(&0).expect("disk").partitions.clear();
    // nothing copied yet: 1 MiB left on 0, and a-1 fits nowhere
    assert!(matches!(plan_drain(&v, 2, &[2]), DrainPlan::Blocked { .. }));
}

#[test]
fn a_new_broker_gets_partitions_from_the_most_loaded_until_within_one() {
    // brokers 0 and 1 hold 3 each; broker 2 just joined
    let v = view(
        &[0, 1, 2],
        &[
            ("a", 0, 0),
            ("a", 1, 1),
            ("a", 2, 0),
            ("a", 3, 1),
            ("a", 4, 0),
            ("a", 5, 1),
        ],
    );
    match plan_rebalance(&v, 3) {
        RebalancePlan::Move { requests, load } => {
            // the highest-numbered partition of broker 1 (ties: the higher id gives), then
            // of broker 0; 2-2-2 afterwards
            assert_eq!(requests, vec![(tp("a", 5), vec![2]), (tp("a", 4), vec![2])]);
            assert_eq!(load, BTreeMap::from([(0, 3), (1, 3), (2, 0)]));
        }
        other => panic!("expected moves, got {other:?}"),
    }
    let balanced = view(
        &[0, 1, 2],
        &[("a", 0, 0), ("a", 1, 1), ("a", 2, 0), ("b", 0, 2)],
    );
    assert_eq!(plan_rebalance(&balanced, 3), RebalancePlan::Balanced);
}

#[test]
fn a_rebalance_waits_for_moves_in_flight_and_leaves_fenced_and_removed_brokers_alone() {
    let mut v = view(&[0, 1, 2], &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)]);
    v.ongoing.insert(tp("a", 0), vec![1]);
    assert_eq!(plan_rebalance(&v, 3), RebalancePlan::Waiting { moving: 1 });
    // broker 2 fenced, broker 3 beyond spec.replicas: only 0 and 1 take part
    let v = view(
        &[0, 1, 2, 3],
        &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("b", 0, 3)],
    )
    .with_registered(&BTreeMap::from([
        (0, false),
        (1, false),
        (2, true),
        (3, false),
    ]));
    match plan_rebalance(&v, 3) {
        RebalancePlan::Move { requests, .. } => assert_eq!(requests, vec![(tp("a", 2), vec![1])]),
        other => panic!("expected a move, got {other:?}"),
    }
    assert_eq!(
        plan_rebalance(&view(&[0], &[("a", 0, 0)]), 1),
        RebalancePlan::Balanced
    );
}

#[test]
fn a_rebalance_moves_the_smallest_partitions_and_only_where_they_fit() {
    let v = view(
        &[0, 1],
        &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("a", 3, 0)],
    )
    .with_disks(BTreeMap::from([
        (
            0,
            disk(
                &[
                    ("a", 0, 5 * MIB),
                    ("a", 1, MIB),
                    ("a", 2, 9 * MIB),
                    ("a", 3, 2 * MIB),
                ],
                0,
            ),
        ),
        (1, disk(&[], 4 * MIB)),
    ]));
    match plan_rebalance(&v, 2) {
        RebalancePlan::Move { requests, .. } => {
            // 1 MiB then 2 MiB; the next (5 MiB) would not fit, and 2-2 is balanced anyway
            assert_eq!(requests, vec![(tp("a", 1), vec![1]), (tp("a", 3), vec![1])])
        }
        other => panic!("expected moves, got {other:?}"),
    }
    let mut tight = v.clone();
    tight.disks.get_mut(&1).expect("disk").room = MIB / 2;
    assert_eq!(
        plan_rebalance(&tight, 2),
        RebalancePlan::Balanced,
        "nothing fits"
    );
    // many partitions: one batch at a time
    let parts: Vec<(String, i32, i32)> = (0..20).map(|p| ("m".to_string(), p, 0)).collect();
    let refs: Vec<(&str, i32, i32)> = parts.iter().map(|(t, p, o)| (t.as_str(), *p, *o)).collect();
    match plan_rebalance(&view(&[0, 1], &refs), 2) {
        RebalancePlan::Move { requests, .. } => assert_eq!(requests.len(), REBALANCE_BATCH),
        other => panic!("expected moves, got {other:?}"),
    }
}

#[test]
fn view_is_built_from_metadata_and_ongoing_moves() {
    let md = ClusterMetadata {
        topics: BTreeMap::from([("a".to_string(), BTreeMap::from([(0, 3), (1, 0)]))]),
        replicas: BTreeMap::from([(
            "a".to_string(),
            BTreeMap::from([(0, vec![3]), (1, vec![0])]),
        )]),
        brokers: BTreeMap::from([(0, "h0:9092".to_string()), (3, "h3:9092".to_string())]),
        ..ClusterMetadata::default()
    };
    let ongoing = BTreeMap::from([(
        tp("a", 0),
        OngoingReassignment {
            replicas: vec![3, 0],
            adding: vec![0],
            removing: vec![3],
        },
    )]);
    let v = ClusterView::new(&md, &ongoing);
    assert_eq!(v.brokers, BTreeSet::from([0, 3]));
    assert_eq!(v.partitions[&tp("a", 0)], (vec![3], 3));
    assert_eq!(v.ongoing[&tp("a", 0)], vec![0]);
}

/// Brokers, and partitions as (topic, partition, replicas); the first replica leads.
fn view_of(brokers: &[i32], parts: &[(&str, i32, &[i32])]) -> ClusterView {
    ClusterView {
        brokers: brokers.iter().copied().collect(),
        partitions: parts
            .iter()
            .map(|(t, p, replicas)| (tp(t, *p), (replicas.to_vec(), replicas[0])))
            .collect(),
        ..ClusterView::default()
    }
}

#[test]
fn a_drain_with_three_copies_replaces_only_the_leaving_broker_in_place() {
    // 5 brokers, RF 3; broker 4 leaves. Load before: 0:3 1:3 2:2 3:2 4:2 (over 4 partitions)
    let v = view_of(
        &[0, 1, 2, 3, 4],
        &[
            ("a", 0, &[4, 0, 1]),
            ("a", 1, &[0, 4, 2]),
            ("a", 2, &[1, 2, 3]),
            ("a", 3, &[3, 0, 1]),
        ],
    );
    match plan_drain(&v, 4, &[4]) {
        DrainPlan::Moving {
            requests,
            remaining,
            moving,
        } => {
            assert_eq!(
                requests,
                vec![
                    // a-0 holds 0 and 1: of 2 and 3 (two replicas each) the lower id; the
                    // leader was leaving, so broker 2 takes its place first in the list
                    (tp("a", 0), vec![2, 0, 1]),
                    // a-1 holds 0 and 2: 3 is left with the fewest (2); leader 0 stays first
                    (tp("a", 1), vec![0, 3, 2]),
                ]
            );
            assert_eq!((remaining, moving), (2, 2));
            assert_eq!(
                move_text(&tp("a", 1), &requests[1].1),
                "a-1 → brokers 0,3,2"
            );
            assert_eq!(move_text(&tp("a", 1), &[3]), "a-1 → broker 3");
        }
        other => panic!("expected moves, got {other:?}"),
    }
}

#[test]
fn a_partition_with_two_copies_on_leaving_brokers_gets_two_new_ones() {
    let v = view_of(&[0, 1, 2, 3, 4], &[("a", 0, &[3, 4, 0])]);
    match plan_drain(&v, 3, &[3, 4]) {
        DrainPlan::Moving { requests, .. } => {
            assert_eq!(requests, vec![(tp("a", 0), vec![1, 2, 0])])
        }
        other => panic!("expected moves, got {other:?}"),
    }
}

#[test]
fn scale_down_below_a_partitions_replication_factor_is_refused_before_anything_moves() {
    let v = view_of(
        &[0, 1, 2],
        &[
            ("orders", 0, &[2, 0, 1]),
            ("orders", 1, &[0, 1]),
            ("audit", 0, &[1, 2, 0]),
        ],
    );
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Blocked { reason, blocking } => {
            assert_eq!(blocking, vec![tp("audit", 0), tp("orders", 0)]);
            assert_eq!(
                reason,
                "partitions audit-0 (replication factor 3), orders-0 (replication factor 3) \
                 have more copies than the 2 brokers that would stay: a partition keeps its \
                 replication factor and each copy needs a broker of its own; set replicas \
                 back to at least 3"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // one partition: named in the singular; one with two copies on a staying pair is fine
    let v = view_of(&[0, 1, 2], &[("orders", 0, &[2, 0, 1]), ("x", 0, &[0, 1])]);
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Blocked { reason, .. } => assert!(
            reason.starts_with("partition orders-0 (replication factor 3) has more copies"),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let v = view_of(&[0, 1, 2], &[("x", 0, &[2, 1])]);
    assert!(matches!(plan_drain(&v, 2, &[2]), DrainPlan::Moving { .. }));
}

#[test]
fn a_copy_needs_a_live_staying_broker_that_holds_none_yet() {
    // RF 2 onto brokers 0 and 1, but 1 is fenced: 0 already holds a copy of a-0
    let v = view_of(&[0, 1, 2], &[("a", 0, &[2, 0])]).with_registered(&BTreeMap::from([
        (0, false),
        (1, true),
        (2, false),
    ]));
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Blocked { reason, blocking } => {
            assert_eq!(blocking, vec![tp("a", 0)]);
            assert!(
                reason.contains("of the remaining brokers 0..1 only 0 are live members"),
                "{reason}"
            );
            assert!(reason.contains("fenced: 1"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_move_in_flight_towards_a_leaving_broker_is_redirected_from_its_target() {
    // a-0 was being moved from [0,1,2] to [0,1,3]; now 3 leaves too (keep 3)
    let mut v = view_of(&[0, 1, 2, 3], &[("a", 0, &[0, 1, 2])]);
    v.ongoing.insert(tp("a", 0), vec![0, 1, 3]);
    match plan_drain(&v, 3, &[3]) {
        DrainPlan::Moving { requests, .. } => {
            assert_eq!(requests, vec![(tp("a", 0), vec![0, 1, 2])])
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
}

#[test]
fn every_copy_must_fit_on_its_new_broker() {
    const MIB: u64 = 1 << 20;
    // a-0 (4 MiB, RF 2) leaves broker 2; broker 1 holds its other copy, broker 0 has 3 MiB
    let v = view_of(&[0, 1, 2], &[("a", 0, &[2, 1])]).with_disks(BTreeMap::from([
        (0, disk(&[], 3 * MIB)),
        (1, disk(&[("a", 0, 4 * MIB)], 100 * MIB)),
        (2, disk(&[("a", 0, 4 * MIB)], 0)),
    ]));
    match plan_drain(&v, 2, &[2]) {
        DrainPlan::Blocked { reason, blocking } => {
            assert_eq!(blocking, vec![tp("a", 0)]);
            assert!(reason.contains("a-0 (4.0 MiB)"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_rebalance_with_three_copies_moves_one_copy_to_a_broker_without_one() {
    // 4 brokers, RF 3: brokers 0-2 hold every copy, broker 3 just joined
    let v = view_of(
        &[0, 1, 2, 3],
        &[
            ("a", 0, &[0, 1, 2]),
            ("a", 1, &[1, 2, 0]),
            ("a", 2, &[2, 0, 1]),
            ("a", 3, &[0, 2, 1]),
        ],
    );
    match plan_rebalance(&v, 4) {
        RebalancePlan::Move { requests, load } => {
            assert_eq!(load, BTreeMap::from([(0, 4), (1, 4), (2, 4), (3, 0)]));
            // 12 copies over 4 brokers: three move to broker 3, one from each of 2, 1, 0
            // (ties: the higher id gives), the highest partition each can give, each
            // partition once
            assert_eq!(
                requests,
                vec![
                    (tp("a", 3), vec![0, 3, 1]),
                    (tp("a", 2), vec![2, 0, 3]),
                    (tp("a", 1), vec![1, 2, 3]),
                ]
            );
            for (_, replicas) in &requests {
                let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
                assert_eq!(
                    distinct.len(),
                    3,
                    "copies on distinct brokers: {replicas:?}"
                );
            }
        }
        other => panic!("expected moves, got {other:?}"),
    }
    // 3-3-3-3: balanced
    let v = view_of(
        &[0, 1, 2, 3],
        &[
            ("a", 0, &[0, 1, 2]),
            ("a", 1, &[1, 2, 3]),
            ("a", 2, &[2, 3, 0]),
            ("a", 3, &[3, 0, 1]),
        ],
    );
    assert_eq!(plan_rebalance(&v, 4), RebalancePlan::Balanced);
}

#[test]
fn a_rebalance_leaves_partitions_with_a_copy_on_a_fenced_broker_alone() {
    let v = view_of(
        &[0, 1, 2],
        &[("a", 0, &[0, 1]), ("a", 1, &[0, 1]), ("a", 2, &[0, 1])],
    )
    .with_registered(&BTreeMap::from([(0, false), (1, true), (2, false)]));
    assert_eq!(plan_rebalance(&v, 3), RebalancePlan::Balanced);
}
