//! A cluster of three `sluice-broker` processes, one of which is killed with SIGKILL (no
//! shutdown, no final fsync): the other brokers keep serving their partitions and the metadata
//! quorum, and the killed broker comes back from its volume with every acknowledged record.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;

/// Partition → leader id, from a broker's metadata.
fn leaders(bootstrap: &str, topic: &str) -> Vec<i32> {
    let md = rd_consumer(bootstrap, &[])
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.leader()).collect())
        .unwrap_or_default()
}

#[test]
fn a_killed_broker_takes_away_only_its_partitions_and_returns_with_every_acknowledged_record() {
    let mut cluster = ProcessCluster::start(3, 3, &["--fsync", "always"]);
    let bootstrap = cluster.broker(1).bootstrap();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let admin = rd_admin(&bootstrap);
    let create_topic = |name: &str, partitions: i32| {
        for r in rt
            .block_on(admin.create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            ))
            .expect("create_topics")
        {
            r.unwrap_or_else(|(t, e)| panic!("create {t}: {e}"));
        }
    };
    create_topic("k", 3);
    let owners = leaders(&bootstrap, "k");
    assert_eq!(
        owners.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1, 2])
    );
    for p in 0..3 {
        let base = p as u64 * 1000;
        rd_produce_all(
            &bootstrap,
            "k",
            Some(p),
            base..base + 50,
            &[("acks", "all")],
        );
    }

    // SIGKILL the owner of partition 2 (whichever broker that is; if it leads the quorum,
    // the others elect a new leader too).
    let victim = owners[2];
    cluster.kill9(victim);
    let survivor = cluster.broker(cluster.running()[0]).bootstrap();
    // Its partition is reported offline once the leader fences it; the others take writes.
    wait_for(
        "the killed broker's partition reported without a leader",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (leaders(&survivor, "k")[2] == -1).then_some(()),
    );
    for (p, owner) in owners.iter().enumerate() {
        if *owner == victim {
            continue;
        }
        let base = p as u64 * 1000;
        rd_produce_all(
            &survivor,
            "k",
            Some(p as i32),
            base + 50..base + 60,
            &[("acks", "all")],
        );
        let got = rd_consume_from_start(&survivor, "k", &[p as i32], 60, Duration::from_secs(30));
        assert_records_exact(&got, base..base + 60);
    }
    // The quorum still takes admin changes.
    create_topic("during", 2);
    assert!(!leaders(&survivor, "during").contains(&victim));

    // Back from its volume: every acknowledged record of its partition, and it takes writes.
    cluster.spawn(victim);
    wait_for(
        "the killed broker's partition led by it again",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (leaders(&survivor, "k")[2] == victim).then_some(()),
    );
    rd_produce_all(&survivor, "k", Some(2), 2050..2060, &[("acks", "all")]);
    let got = rd_consume_from_start(&survivor, "k", &[2], 60, Duration::from_secs(30));
    assert_records_exact(&got, 2000..2060);
}
