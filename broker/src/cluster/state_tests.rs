//! Tests of the cluster state machine (`state.rs`): every command's effect and refusals, and
//! placement.

use super::*;

fn broker(id: i32) -> Command {
    Command::RegisterBroker(BrokerRecord {
        id,
        host: format!("b{id}"),
        port: 9092,
        cluster_addr: format!("b{id}:9093"),
        rack: None,
        state: BrokerState::Active,
    })
}

fn with_brokers(ids: &[i32]) -> ClusterState {
    let mut s = ClusterState::default();
    for id in ids {
        assert_eq!(s.apply(&broker(*id)), Outcome::Done);
    }
    s
}

fn create(name: &str, partitions: i32) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: Uuid::from_u128(name.len() as u128 + 1),
        partitions,
        configs: BTreeMap::new(),
    }
}

fn owners(s: &ClusterState, topic: &str) -> Vec<i32> {
    s.topics[topic].partitions.iter().map(|p| p.owner).collect()
}

fn refused_code(o: Outcome) -> i16 {
    match o {
        Outcome::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn cluster_id_is_set_once() {
    let mut s = ClusterState::default();
    let first = s.apply(&Command::InitCluster {
        cluster_id: "a".into(),
    });
    let second = s.apply(&Command::InitCluster {
        cluster_id: "b".into(),
    });
    assert_eq!(first, Outcome::ClusterId("a".into()));
    assert_eq!(second, Outcome::ClusterId("a".into()));
}

#[test]
fn partitions_spread_over_brokers_then_fill_the_emptiest() {
    let mut s = with_brokers(&[0, 1, 2]);
    s.apply(&create("a", 4));
    assert_eq!(owners(&s, "a"), vec![0, 1, 2, 0]);
    s.apply(&create("b", 2));
    assert_eq!(owners(&s, "b"), vec![1, 2]);
    let counts = s.partition_counts();
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
}

#[test]
fn draining_brokers_get_no_new_partitions_or_groups() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&Command::SetBrokerState {
        id: 0,
        state: BrokerState::Draining,
    });
    s.apply(&create("a", 3));
    assert_eq!(owners(&s, "a"), vec![1, 1, 1]);
    assert_eq!(
        s.apply(&Command::AssignGroup { group: "g".into() }),
        Outcome::Coordinator(1)
    );
    // Re-registering after a restart keeps the draining mark.
    s.apply(&broker(0));
    assert_eq!(s.brokers[&0].state, BrokerState::Draining);
}

#[test]
fn fenced_brokers_get_nothing_new_until_they_register_again() {
    let mut s = with_brokers(&[0, 1, 2]);
    s.apply(&Command::SetBrokerState {
        id: 2,
        state: BrokerState::Fenced,
    });
    s.apply(&create("a", 4));
    assert_eq!(owners(&s, "a"), vec![0, 1, 0, 1]);
    s.apply(&broker(2));
    assert_eq!(s.brokers[&2].state, BrokerState::Active);
    s.apply(&create("b", 1));
    assert_eq!(owners(&s, "b"), vec![2]);
}

#[test]
fn topic_creation_refusals_change_nothing() {
    let mut s = ClusterState::default();
    assert_eq!(
        refused_code(s.apply(&create("a", 1))),
        code::INVALID_REPLICATION_FACTOR
    );
    let mut s = with_brokers(&[0]);
    s.apply(&create("a", 1));
    let before = s.clone();
    assert_eq!(
        refused_code(s.apply(&create("a", 1))),
        code::TOPIC_ALREADY_EXISTS
    );
    assert_eq!(
        refused_code(s.apply(&create("b", 0))),
        code::INVALID_PARTITIONS
    );
    assert_eq!(
        refused_code(s.apply(&create("c", -3))),
        code::INVALID_PARTITIONS
    );
    assert_eq!(s, before);
}

#[test]
fn partitions_only_grow_and_new_ones_are_placed() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 1));
    let grow = |total| Command::CreatePartitions {
        name: "a".into(),
        total,
    };
    assert_eq!(refused_code(s.apply(&grow(1))), code::INVALID_PARTITIONS);
    assert!(matches!(s.apply(&grow(3)), Outcome::Topic { .. }));
    assert_eq!(owners(&s, "a"), vec![0, 1, 0]);
    assert_eq!(
        refused_code(s.apply(&Command::CreatePartitions {
            name: "nope".into(),
            total: 2
        })),
        code::UNKNOWN_TOPIC_OR_PARTITION
    );
}

#[test]
fn config_changes_incremental_and_replacing() {
    let mut s = with_brokers(&[0]);
    s.apply(&create("a", 1));
    let alter = |changes, replace| Command::AlterTopicConfigs {
        name: "a".into(),
        changes,
        replace,
    };
    s.apply(&alter(
        vec![
            ConfigChange::Set("retention.ms".into(), "1000".into()),
            ConfigChange::Set("segment.bytes".into(), "2000".into()),
        ],
        false,
    ));
    s.apply(&alter(
        vec![ConfigChange::Delete("segment.bytes".into())],
        false,
    ));
    assert_eq!(
        s.topics["a"].configs,
        BTreeMap::from([("retention.ms".to_string(), "1000".to_string())])
    );
    s.apply(&alter(
        vec![ConfigChange::Set("max.message.bytes".into(), "10".into())],
        true,
    ));
    assert_eq!(
        s.topics["a"].configs,
        BTreeMap::from([("max.message.bytes".to_string(), "10".to_string())])
    );
}

#[test]
fn a_move_bumps_the_leader_epoch_only_when_completed_at_the_expected_epoch() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 1));
    let start = Command::StartReassignment {
        topic: "a".into(),
        partition: 0,
        target: 1,
    };
    assert_eq!(s.apply(&start), Outcome::Done);
    assert_eq!(s.partition("a", 0).map(|p| p.moving_to), Some(Some(1)));
    // Counted on the target while in flight.
    assert_eq!(s.partition_counts()[&1], 1);
    let complete = |epoch| Command::CompleteReassignment {
        topic: "a".into(),
        partition: 0,
        target: 1,
        leader_epoch: epoch,
    };
    assert_eq!(
        refused_code(s.apply(&complete(7))),
        code::FENCED_LEADER_EPOCH
    );
    assert_eq!(s.apply(&complete(0)), Outcome::Done);
    let p = s.partition("a", 0).copied();
    assert_eq!(
        p,
        Some(PartitionRecord {
            owner: 1,
            leader_epoch: 1,
            moving_to: None
        })
    );
    // Completing twice is refused: the move is over.
    assert_eq!(
        refused_code(s.apply(&complete(1))),
        code::NO_REASSIGNMENT_IN_PROGRESS
    );
}

#[test]
fn assigning_the_current_owner_cancels_a_move() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 1));
    s.apply(&Command::StartReassignment {
        topic: "a".into(),
        partition: 0,
        target: 1,
    });
    s.apply(&Command::StartReassignment {
        topic: "a".into(),
        partition: 0,
        target: 0,
    });
    assert_eq!(s.partition("a", 0).and_then(|p| p.moving_to), None);
    assert_eq!(
        refused_code(s.apply(&Command::CancelReassignment {
            topic: "a".into(),
            partition: 0
        })),
        code::NO_REASSIGNMENT_IN_PROGRESS
    );
    assert_eq!(
        refused_code(s.apply(&Command::StartReassignment {
            topic: "a".into(),
            partition: 0,
            target: 9,
        })),
        code::INVALID_REPLICA_ASSIGNMENT
    );
}

#[test]
fn a_broker_is_unregistered_only_once_empty() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 2));
    s.apply(&Command::AssignGroup { group: "g".into() });
    let unregister = Command::UnregisterBroker { id: 1 };
    match s.apply(&unregister) {
        Outcome::Refused { code: c, message } => {
            assert_eq!(c, code::INVALID_REQUEST);
            assert!(message.contains("a-1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    s.apply(&Command::StartReassignment {
        topic: "a".into(),
        partition: 1,
        target: 0,
    });
    // Still refused while the move is in flight.
    assert!(matches!(s.apply(&unregister), Outcome::Refused { .. }));
    s.apply(&Command::CompleteReassignment {
        topic: "a".into(),
        partition: 1,
        target: 0,
        leader_epoch: 0,
    });
    assert_eq!(s.apply(&unregister), Outcome::Done);
    assert!(!s.brokers.contains_key(&1));
    assert_eq!(
        refused_code(s.apply(&unregister)),
        code::BROKER_ID_NOT_REGISTERED
    );
}

#[test]
fn group_placement_is_sticky_and_balanced() {
    let mut s = with_brokers(&[0, 1]);
    let assign = |g: &str| Command::AssignGroup { group: g.into() };
    assert_eq!(s.apply(&assign("a")), Outcome::Coordinator(0));
    assert_eq!(s.apply(&assign("b")), Outcome::Coordinator(1));
    assert_eq!(s.apply(&assign("a")), Outcome::Coordinator(0));
    assert_eq!(
        s.apply(&Command::MoveGroup {
            group: "a".into(),
            to: 1
        }),
        Outcome::Coordinator(1)
    );
    assert_eq!(s.groups_of(1), vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut s = with_brokers(&[0, 1]);
    let a = s.apply(&Command::AllocateProducerIds {
        broker: 0,
        count: 1000,
    });
    let b = s.apply(&Command::AllocateProducerIds {
        broker: 1,
        count: 1000,
    });
    assert_eq!(
        a,
        Outcome::ProducerIds {
            first: 0,
            count: 1000
        }
    );
    assert_eq!(
        b,
        Outcome::ProducerIds {
            first: 1000,
            count: 1000
        }
    );
    assert_eq!(
        refused_code(s.apply(&Command::AllocateProducerIds {
            broker: 5,
            count: 1
        })),
        code::BROKER_ID_NOT_REGISTERED
    );
}

#[test]
fn state_round_trips_through_json() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 3));
    s.apply(&Command::AssignGroup { group: "g".into() });
    let bytes = serde_json::to_vec(&s).expect("serializes");
    let back: ClusterState = serde_json::from_slice(&bytes).expect("deserializes");
    assert_eq!(back, s);
}
