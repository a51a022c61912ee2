//! Tests of the cluster state machine (`state/`): every command's effect and refusals,
//! placement, elections, ISR changes and reassignments.

use super::*;

fn broker(id: i32) -> Command {
    Command::RegisterBroker(BrokerRecord {
        id,
        host: format!("b{id}"),
        port: 9092,
        cluster_addr: format!("b{id}:9093"),
        rack: None,
        state: BrokerState::Active,
        listeners: Vec::new(),
        fresh_volume: false,
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
    create_rf(name, partitions, 1)
}

fn create_rf(name: &str, partitions: i32, replication_factor: i32) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: Uuid::from_u128(name.len() as u128 + 1),
        partitions,
        configs: BTreeMap::new(),
        replication_factor,
        assignment: None,
    }
}

fn owners(s: &ClusterState, topic: &str) -> Vec<i32> {
    s.topics[topic]
        .partitions
        .iter()
        .map(|p| p.leader)
        .collect()
}

fn fence(id: i32) -> Command {
    Command::SetBrokerState {
        id,
        state: BrokerState::Fenced,
    }
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
        assignment: None,
    };
    assert_eq!(refused_code(s.apply(&grow(1))), code::INVALID_PARTITIONS);
    assert!(matches!(s.apply(&grow(3)), Outcome::Topic { .. }));
    assert_eq!(owners(&s, "a"), vec![0, 1, 0]);
    assert_eq!(
        refused_code(s.apply(&Command::CreatePartitions {
            name: "nope".into(),
            total: 2,
            assignment: None,
        })),
        code::UNKNOWN_TOPIC_OR_PARTITION
    );
}

/// Group configs: set before the group exists, changed incrementally or replaced, gone from
/// the state once the last override is deleted, and kept through a snapshot (JSON) while a
/// snapshot from before group configs still reads.
#[test]
fn group_configs_change_like_topic_configs_and_survive_a_snapshot() {
    let mut s = with_brokers(&[0]);
    let alter = |changes, replace| Command::AlterGroupConfigs {
        group: "g".into(),
        changes,
        replace,
    };
    let set = |k: &str, v: &str| ConfigChange::Set(k.into(), v.into());
    s.apply(&alter(
        vec![
            set("share.auto.offset.reset", "earliest"),
            set("consumer.session.timeout.ms", "10000"),
        ],
        false,
    ));
    s.apply(&alter(
        vec![ConfigChange::Delete("consumer.session.timeout.ms".into())],
        false,
    ));
    let only = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    assert_eq!(
        s.group_configs["g"],
        only("share.auto.offset.reset", "earliest")
    );
    let json = serde_json::to_vec(&s).expect("encode");
    let back: ClusterState = serde_json::from_slice(&json).expect("decode");
    assert_eq!(back.group_configs, s.group_configs);
    s.apply(&alter(vec![set("share.delivery.count.limit", "3")], true));
    assert_eq!(
        s.group_configs["g"],
        only("share.delivery.count.limit", "3")
    );
    s.apply(&alter(vec![], true));
    assert!(s.group_configs.is_empty(), "{:?}", s.group_configs);
    let before: ClusterState = serde_json::from_str(
        r#"{"cluster_id":null,"brokers":{},"topics":{},"groups":{},"next_producer_id":0}"#,
    )
    .expect("a snapshot without group configs");
    assert!(before.group_configs.is_empty());
}

/// Client quotas: set per entity (kept in entity order), changed key by key, gone once the
/// last key is removed, and kept through a snapshot.
#[test]
fn client_quotas_are_kept_per_entity_and_survive_a_snapshot() {
    use crate::quota::{EntityName, QuotaEntity};
    let mut s = with_brokers(&[0]);
    let client = |name: Option<&str>| QuotaEntity {
        user: None,
        client_id: Some(EntityName::from_wire(name)),
    };
    let alter =
        |entity: QuotaEntity, set: &[(&str, i64)], remove: &[&str]| Command::AlterClientQuotas {
            entity,
            set: set.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
        };
    s.apply(&alter(
        client(Some("b")),
        &[("producer_byte_rate", 10)],
        &[],
    ));
    s.apply(&alter(client(None), &[("consumer_byte_rate", 20)], &[]));
    s.apply(&alter(
        client(Some("a")),
        &[("producer_byte_rate", 30)],
        &[],
    ));
    s.apply(&alter(
        client(Some("b")),
        &[("consumer_byte_rate", 40)],
        &[],
    ));
    let entities: Vec<_> = s.client_quotas.iter().map(|q| q.entity.clone()).collect();
    assert_eq!(
        entities,
        vec![client(None), client(Some("a")), client(Some("b"))]
    );
    assert_eq!(
        s.client_quotas[2].values,
        BTreeMap::from([
            ("consumer_byte_rate".to_string(), 40),
            ("producer_byte_rate".to_string(), 10)
        ])
    );
    let json = serde_json::to_vec(&s).expect("encode");
    let back: ClusterState = serde_json::from_slice(&json).expect("decode");
    assert_eq!(back.client_quotas, s.client_quotas);
    s.apply(&alter(client(Some("a")), &[], &["producer_byte_rate"]));
    assert_eq!(s.client_quotas.len(), 2, "{:?}", s.client_quotas);
    assert!(s
        .client_quotas
        .iter()
        .all(|q| q.entity != client(Some("a"))));
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
fn a_legacy_move_replays_as_it_was_decided() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 1));
    let start = Command::StartReassignment {
        topic: "a".into(),
        partition: 0,
        target: 1,
    };
    assert_eq!(s.apply(&start), Outcome::Done);
    assert_eq!(s.partition("a", 0).map(|p| p.adding.clone()), Some(vec![1]));
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
    assert_eq!(
        s.partition("a", 0).cloned(),
        Some(PartitionRecord::new(vec![1], 1))
    );
    // Completing twice is refused: the move is over.
    assert_eq!(
        refused_code(s.apply(&complete(1))),
        code::NO_REASSIGNMENT_IN_PROGRESS
    );
}

#[test]
fn assigning_the_current_replicas_cancels_a_reassignment() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 1));
    let reassign = |replicas: Option<Vec<i32>>| Command::Reassign {
        topic: "a".into(),
        partition: 0,
        replicas,
    };
    assert_eq!(s.apply(&reassign(Some(vec![1]))), Outcome::Done);
    assert_eq!(s.apply(&reassign(Some(vec![0]))), Outcome::Done);
    let p = s.partition("a", 0).cloned().expect("partition");
    assert_eq!((p.replicas, p.isr, p.leader), (vec![0], vec![0], 0));
    assert!(p.adding.is_empty() && p.removing.is_empty());
    assert_eq!(
        refused_code(s.apply(&reassign(None))),
        code::NO_REASSIGNMENT_IN_PROGRESS
    );
    assert_eq!(
        refused_code(s.apply(&reassign(Some(vec![9])))),
        code::INVALID_REPLICA_ASSIGNMENT
    );
}

#[test]
fn replicated_topics_need_enough_brokers_and_spread_leaders() {
    let mut s = with_brokers(&[0, 1]);
    match s.apply(&create_rf("a", 1, 3)) {
        Outcome::Refused { code: c, message } => {
            assert_eq!(c, code::INVALID_REPLICATION_FACTOR);
            assert!(message.contains("replication factor 3"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    s.apply(&broker(2));
    s.apply(&create_rf("a", 3, 3));
    let t = &s.topics["a"];
    assert_eq!(owners(&s, "a"), vec![0, 1, 2]);
    assert_eq!(t.replication_factor(), 3);
    for p in &t.partitions {
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.replicas.len(), 3);
    }
    // New partitions get the topic's replication factor.
    s.apply(&Command::CreatePartitions {
        name: "a".into(),
        total: 4,
        assignment: None,
    });
    assert_eq!(s.topics["a"].partitions[3].replicas.len(), 3);
    assert_eq!(s.partition_counts().values().sum::<usize>(), 12);
}

#[test]
fn hand_made_assignments_are_checked() {
    let mut s = with_brokers(&[0, 1, 2]);
    let create = |assignment: Vec<Vec<i32>>| Command::CreateTopic {
        name: "a".into(),
        id: Uuid::from_u128(1),
        partitions: -1,
        configs: BTreeMap::new(),
        replication_factor: -1,
        assignment: Some(assignment),
    };
    for bad in [
        vec![vec![0, 0]],
        vec![vec![0, 1], vec![2]],
        vec![vec![0, 7]],
        vec![],
    ] {
        assert!(
            matches!(s.apply(&create(bad.clone())), Outcome::Refused { .. }),
            "{bad:?} accepted"
        );
    }
    s.apply(&create(vec![vec![2, 0], vec![1, 2]]));
    assert_eq!(owners(&s, "a"), vec![2, 1]);
    assert_eq!(s.topics["a"].partitions[1].replicas, vec![1, 2]);
}

#[test]
fn a_fenced_leader_hands_over_and_returns_as_a_follower() {
    let mut s = with_brokers(&[0, 1, 2]);
    s.apply(&create_rf("a", 1, 3));
    assert_eq!(owners(&s, "a"), vec![0]);
    s.apply(&fence(0));
    let p = s.partition("a", 0).cloned().expect("partition");
    assert_eq!(
        (p.leader, p.leader_epoch, p.isr.clone()),
        (1, 1, vec![1, 2])
    );
    assert_eq!(s.under_replicated_partitions(), 1);
    // Back: alive, but it rejoins the ISR only when the leader says it caught up.
    s.apply(&broker(0));
    assert_eq!(s.partition("a", 0).map(|p| p.leader), Some(1));
    let alter = Command::AlterPartition {
        topic: "a".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 1,
        partition_epoch: p.partition_epoch,
        isr: vec![0, 1, 2],
    };
    assert!(matches!(s.apply(&alter), Outcome::Partition(_)));
    assert_eq!(s.under_replicated_partitions(), 0);
    // The same change from the old view is refused.
    assert_eq!(refused_code(s.apply(&alter)), code::INVALID_UPDATE_VERSION);
}

#[test]
fn one_copy_partitions_go_offline_and_come_back_with_their_broker() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 2));
    s.apply(&fence(1));
    assert_eq!(owners(&s, "a"), vec![0, NO_LEADER]);
    assert_eq!(s.offline_partitions(), 1);
    assert_eq!(s.partition("a", 1).map(|p| p.isr.clone()), Some(vec![1]));
    s.apply(&Command::SetBrokerState {
        id: 1,
        state: BrokerState::Active,
    });
    assert_eq!(owners(&s, "a"), vec![0, 1]);
    assert_eq!(s.partition("a", 1).map(|p| p.leader_epoch), Some(2));
}

#[test]
fn controlled_shutdown_moves_leadership_and_registration_ends_it() {
    let mut s = with_brokers(&[0, 1, 2]);
    s.apply(&create_rf("a", 3, 2));
    s.apply(&Command::ControlledShutdown { id: 1 });
    assert_eq!(s.brokers[&1].state, BrokerState::ShuttingDown);
    for (_, _, p) in s.all_partitions() {
        assert_ne!(p.leader, 1);
        assert!(!p.isr.contains(&1), "{p:?}");
    }
    s.apply(&broker(1));
    assert_eq!(s.brokers[&1].state, BrokerState::Active);
}

#[test]
fn elections_report_per_partition() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create_rf("a", 1, 2));
    s.apply(&fence(0));
    s.apply(&broker(0));
    let pe = s.partition("a", 0).map(|p| p.partition_epoch).unwrap_or(0);
    s.apply(&Command::AlterPartition {
        topic: "a".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 1,
        partition_epoch: pe,
        isr: vec![0, 1],
    });
    let elect = Command::ElectLeaders {
        kind: ElectionKind::Preferred,
        partitions: vec![("a".into(), 0), ("a".into(), 0), ("b".into(), 0)],
    };
    let Outcome::Elections(r) = s.apply(&elect) else {
        panic!("not an election outcome");
    };
    let codes: Vec<i16> = r.iter().map(|e| e.code).collect();
    assert_eq!(
        codes,
        vec![
            0,
            code::ELECTION_NOT_NEEDED,
            code::UNKNOWN_TOPIC_OR_PARTITION
        ]
    );
    assert_eq!(owners(&s, "a"), vec![0]);
}

#[test]
fn a_broker_is_unregistered_only_once_empty() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create("a", 2));
    // A group record of an earlier version naming broker 1 (replayed from an old metadata
    // log): coordinators are offsets-partition leaders now, so it holds nothing back.
    s.apply(&Command::AssignGroup { group: "g".into() });
    s.apply(&Command::AssignGroup { group: "h".into() });
    assert_eq!(s.groups_of(1), vec!["h".to_string()]);
    let unregister = Command::UnregisterBroker { id: 1 };
    match s.apply(&unregister) {
        Outcome::Refused { code: c, message } => {
            assert_eq!(c, code::INVALID_REQUEST);
            assert!(message.contains("a-1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    s.apply(&Command::Reassign {
        topic: "a".into(),
        partition: 1,
        replicas: Some(vec![0]),
    });
    // Still refused while the reassignment is in flight.
    assert!(matches!(s.apply(&unregister), Outcome::Refused { .. }));
    let pe = s.partition("a", 1).map(|p| p.partition_epoch).unwrap_or(0);
    s.apply(&Command::AlterPartition {
        topic: "a".into(),
        partition: 1,
        leader: 1,
        leader_epoch: 0,
        partition_epoch: pe,
        isr: vec![0, 1],
    });
    assert_eq!(owners(&s, "a")[1], 0, "the reassignment completed");
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

#[test]
fn a_broker_that_registers_again_while_alive_gives_up_its_leaderships() {
    let mut s = with_brokers(&[0, 1, 2]);
    s.apply(&create_rf("a", 3, 3));
    let led_by_0: Vec<i32> = s
        .all_partitions()
        .filter(|(_, _, p)| p.leader == 0)
        .map(|(_, i, _)| i)
        .collect();
    assert!(!led_by_0.is_empty());
    // Broker 0 crashed and came back before the quorum fenced it.
    s.apply(&broker(0));
    for (_, i, p) in s.all_partitions() {
        assert_ne!(
            p.leader, 0,
            "partition {i} still led by the restarted broker"
        );
        assert!(!p.isr.contains(&0), "partition {i}: {p:?}");
        if led_by_0.contains(&i) {
            assert_eq!(p.leader_epoch, 1, "a new leader, a new epoch");
        }
    }
    assert_eq!(s.brokers[&0].state, BrokerState::Active);
    // A one-copy partition on it comes straight back to it, at a newer epoch.
    let mut s = with_brokers(&[0]);
    s.apply(&create("b", 1));
    s.apply(&broker(0));
    let p = s.partition("b", 0).cloned().expect("partition");
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (0, vec![0], 2));
}

#[test]
fn a_new_broker_registering_changes_no_partition() {
    let mut s = with_brokers(&[0, 1]);
    s.apply(&create_rf("a", 2, 2));
    let before = s.topics.clone();
    s.apply(&broker(2));
    assert_eq!(s.topics, before);
}

#[test]
fn entries_older_brokers_cannot_read_wait_until_every_live_broker_has_their_feature() {
    let quotas = Command::AlterClientQuotas {
        entity: QuotaEntity {
            user: None,
            client_id: None,
        },
        set: Vec::new(),
        remove: Vec::new(),
    };
    let configs = Command::AlterGroupConfigs {
        group: "g".into(),
        changes: Vec::new(),
        replace: false,
    };
    assert_eq!(quotas.feature(), Some(FEATURE_CLIENT_QUOTAS));
    assert_eq!(configs.feature(), Some(FEATURE_GROUP_CONFIGS));
    assert_eq!(Command::UnregisterBroker { id: 1 }.feature(), None);
    assert!(FEATURES.contains(&FEATURE_CLIENT_QUOTAS) && FEATURES.contains(&FEATURE_GROUP_CONFIGS));

    let all: Vec<String> = FEATURES.iter().map(|f| f.to_string()).collect();
    assert!(
        lacking_feature(FEATURE_CLIENT_QUOTAS, &[]).is_empty(),
        "a lone broker"
    );
    assert!(lacking_feature(FEATURE_CLIENT_QUOTAS, &[(1, Ok(all.clone()))]).is_empty());
    assert_eq!(
        lacking_feature(
            FEATURE_CLIENT_QUOTAS,
            &[
                (1, Ok(all)),
                (2, Ok(vec![FEATURE_GROUP_CONFIGS.to_string()])),
                (3, Ok(Vec::new())),
                (4, Err("connection refused".into())),
            ]
        ),
        [
            "broker 2 runs a version without client_quotas",
            "broker 3 runs a version without client_quotas",
            "broker 4 did not say which version it runs (connection refused)",
        ]
    );
}
