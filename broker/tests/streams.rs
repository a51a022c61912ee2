//! Kafka Streams (`org.apache.kafka:kafka-streams` 4.x, fetched by `scripts/java-clients.sh`)
//! works unchanged against the broker: a stateful application (`tests/java/SluiceStreamsApp.java`,
//! a word count with a repartition topic and a state store) creates its internal topics
//! (the changelog with `cleanup.policy=compact`), rebalances its consumer group, commits, purges
//! its repartition topic with DeleteRecords, and after the broker has compacted the changelog and
//! restarted, a second run with an empty state folder restores the store from that compacted
//! changelog and counts on from where the first left off. On three broker processes (every
//! topic at three copies), the same two runs with a broker SIGKILLed between them.
//!
//! Exactly-once processing (`processing.guarantee=exactly_once_v2`) runs on the broker's
//! transactions: the same word count counts exactly across a broker restart.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rdkafka::admin::{NewTopic, TopicReplication};

/// Lines per run, and words per line (`SluiceStreamsApp.WORDS_PER_LINE`).
const LINES: u64 = 3000;
const WORDS_PER_LINE: u64 = 5;
/// Partitions of the input topic: the repartition and changelog topics get as many.
const INPUT_PARTITIONS: i32 = 3;

/// One run of the application over the lines of `seeds` (the last seed's lines produced by this
/// run); returns the output topic's latest counts and the repartition partitions' start offsets.
/// `props` are more Streams settings (`k=v`).
fn run_wordcount(
    bootstrap: &str,
    app: &str,
    seeds: &str,
    state_dir: &std::path::Path,
    props: &[&str],
) -> (BTreeMap<String, u64>, Vec<i64>) {
    let (input, output) = (format!("{app}-in"), format!("{app}-out"));
    let lines = LINES.to_string();
    let state = state_dir.display().to_string();
    let mut args = vec![
        "wordcount",
        "--bootstrap",
        bootstrap,
        "--app",
        app,
        "--input",
        &input,
        "--output",
        &output,
        "--state-dir",
        &state,
        "--seeds",
        seeds,
        "--lines",
        &lines,
        // Every count update goes to the changelog (no cache in front of it), in 4 KiB
        // segments the broker compacts as soon as one is closed.
        "--prop",
        "statestore.cache.max.bytes=0",
        "--prop",
        "topic.segment.bytes=4096",
        "--prop",
        "topic.min.cleanable.dirty.ratio=0.01",
    ];
    for p in props {
        args.extend(["--prop", p]);
    }
    let done = run_bounded(
        streams_cmd(&args),
        &format!("Kafka Streams word count over seeds {seeds}"),
        RUN,
    );
    let mut counts = BTreeMap::new();
    let mut starts = Vec::new();
    for line in done.stdout.lines() {
        if let Some(list) = line.strip_prefix("#counts ") {
            for pair in list.split(',').filter(|p| !p.is_empty()) {
                let (w, n) = pair.split_once('=').expect("word=count");
                counts.insert(w.to_string(), n.parse().expect("a count"));
            }
        } else if let Some(rest) = line.strip_prefix("#purged ") {
            let start = rest.rsplit(' ').next().expect("start offset");
            starts.push(start.parse().expect("an offset"));
        }
    }
    (counts, starts)
}

/// The application's input (`INPUT_PARTITIONS`) and output (2 partitions) topics, `copies`
/// replicas each.
fn create_app_topics(bootstrap: &str, app: &str, copies: i32) {
    let created = broker_runtime()
        .block_on(rd_admin(bootstrap).create_topics(
            [
                &NewTopic::new(
                    &format!("{app}-in"),
                    INPUT_PARTITIONS,
                    TopicReplication::Fixed(copies),
                ),
                &NewTopic::new(&format!("{app}-out"), 2, TopicReplication::Fixed(copies)),
            ],
            &admin_opts(),
        ))
        .expect("create_topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// Asserts the counts of `runs` runs: every word of every line counted once (the application
/// itself checks each word's count).
fn assert_counted(counts: &BTreeMap<String, u64>, runs: u64) {
    assert_eq!(
        counts.values().sum::<u64>(),
        runs * LINES * WORDS_PER_LINE,
        "every word of {runs} run(s) counted once: {counts:?}"
    );
}

#[test]
fn a_kafka_streams_word_count_restores_its_store_from_a_compacted_changelog() {
    let mut broker = TestBroker::start(&["--retention-check-interval-ms", "100"]);
    let app = topic_name("wordcount");
    create_app_topics(&broker.bootstrap(), &app, 1);

    let first_state = tempfile::tempdir().expect("state dir");
    let (counts, starts) = run_wordcount(&broker.bootstrap(), &app, "1", first_state.path(), &[]);
    assert_counted(&counts, 1);
    assert_eq!(starts.len(), INPUT_PARTITIONS as usize, "{starts:?}");
    assert!(
        starts.iter().any(|&s| s > 0),
        "Streams purged its repartition topic (DeleteRecords): {starts:?}"
    );

    // The store's changelog was created compacted, and the broker compacts it.
    let changelog = format!("{app}-counts-changelog");
    let logs: Vec<_> = (0..INPUT_PARTITIONS)
        .map(|p| {
            let log = broker
                .ctx()
                .logs
                .partition(&changelog, p)
                .unwrap_or_else(|| panic!("{changelog}-{p} here"));
            assert!(log.config().cleanup.compact, "{changelog} is compacted");
            log
        })
        .collect();
    wait_for(
        "the changelog's closed segments to be compacted",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            (broker.ctx().logs.compacted_records() > 0 && logs.iter().all(|l| !l.compaction_due()))
                .then_some(())
        },
    );
    drop(logs);

    // A restarted broker, and an application instance without its local state: the store comes
    // back from the compacted changelog, and the second run's words add to it.
    broker.restart();
    let second_state = tempfile::tempdir().expect("state dir");
    let (counts, _) = run_wordcount(&broker.bootstrap(), &app, "1,2", second_state.path(), &[]);
    assert_counted(&counts, 2);
}

#[test]
fn kafka_streams_on_three_brokers_goes_on_after_one_is_killed() {
    let mut cluster = ProcessCluster::start(
        3,
        41,
        &[
            "--retention-check-interval-ms",
            "100",
            "--min-insync-replicas",
            "2",
        ],
    );
    let app = topic_name("wordcount3");
    create_app_topics(&cluster.bootstrap(), &app, 3);
    // Internal topics at three copies too.
    let rf3 = ["replication.factor=3"];
    let first_state = tempfile::tempdir().expect("state dir");
    let (counts, _) = run_wordcount(&cluster.bootstrap(), &app, "1", first_state.path(), &rf3);
    assert_counted(&counts, 1);
    // Every copy of the changelog is compacted by its own broker.
    for id in 0..3 {
        let http = cluster.broker(id).http_addr;
        wait_for(
            &format!("broker {id} to compact its changelog copies"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || (metric_sum(http, "sluice_log_compacted_records_total", "") > 0.0).then_some(()),
        );
    }

    // Broker 0 leads some partitions of every topic (and maybe the group's coordinator): gone
    // without a shutdown, the others take over and a new instance restores from them.
    cluster.kill9(0);
    let second_state = tempfile::tempdir().expect("state dir");
    let (counts, _) = run_wordcount(&cluster.bootstrap(), &app, "1,2", second_state.path(), &rf3);
    assert_counted(&counts, 2);
}

/// `processing.guarantee=exactly_once_v2`: every task's output, changelog writes and input
/// offsets go in one transaction per commit. Two runs around a broker restart, the second
/// from an empty state folder (its store restored with read_committed from a changelog of
/// transactional batches and markers), count every word exactly once.
#[test]
fn a_kafka_streams_word_count_with_exactly_once_v2_counts_exactly() {
    let mut broker = TestBroker::start(&["--retention-check-interval-ms", "100"]);
    let app = topic_name("wordcount-eos");
    create_app_topics(&broker.bootstrap(), &app, 1);
    let eos = [
        "processing.guarantee=exactly_once_v2",
        "commit.interval.ms=200",
    ];
    let first_state = tempfile::tempdir().expect("state dir");
    let (counts, _) = run_wordcount(&broker.bootstrap(), &app, "1", first_state.path(), &eos);
    assert_counted(&counts, 1);
    // Streams ran transactions (a transactional id of the application committed some), and
    // the changelog holds them: committed, nothing left open.
    let committed = broker
        .ctx()
        .cluster
        .state()
        .transactions
        .iter()
        .filter(|(id, r)| {
            id.starts_with(&app)
                && r.state == sluice_broker::cluster::state::TxnState::CompleteCommit
        })
        .count();
    assert!(committed > 0, "no transaction of {app} committed");
    let changelog = format!("{app}-counts-changelog");
    for p in 0..INPUT_PARTITIONS {
        let log = broker
            .ctx()
            .logs
            .partition(&changelog, p)
            .unwrap_or_else(|| panic!("{changelog}-{p} here"));
        assert_eq!(log.last_stable_offset(), log.high_watermark());
    }
    broker.restart();
    let second_state = tempfile::tempdir().expect("state dir");
    let (counts, _) = run_wordcount(&broker.bootstrap(), &app, "1,2", second_state.path(), &eos);
    assert_counted(&counts, 2);
}

/// exactly_once_v2 on three broker processes (every topic, the internal ones too, at three
/// copies): a broker SIGKILLed between the runs (it may coordinate the application's
/// transactions, lead some of its partitions, or both), and the second run, restoring from
/// the changelog the others hold, counts every word exactly once.
#[test]
fn kafka_streams_exactly_once_v2_on_three_brokers_goes_on_after_one_is_killed() {
    let mut cluster = ProcessCluster::start(3, 45, &["--min-insync-replicas", "2"]);
    let app = topic_name("wordcount3-eos");
    create_app_topics(&cluster.bootstrap(), &app, 3);
    let props = [
        "replication.factor=3",
        "processing.guarantee=exactly_once_v2",
        "commit.interval.ms=200",
    ];
    let first_state = tempfile::tempdir().expect("state dir");
    let (counts, _) = run_wordcount(&cluster.bootstrap(), &app, "1", first_state.path(), &props);
    assert_counted(&counts, 1);
    cluster.kill9(0);
    let second_state = tempfile::tempdir().expect("state dir");
    let (counts, _) = run_wordcount(
        &cluster.bootstrap(),
        &app,
        "1,2",
        second_state.path(),
        &props,
    );
    assert_counted(&counts, 2);
}
