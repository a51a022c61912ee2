//! Client quotas with Kafka 4.2's own tools: `kafka-configs.sh` sets, describes and removes
//! them; Kafka's ProducerPerformance and ConsumerPerformance (the Java client) are held to
//! them, see `throttle_time_ms` in their responses, and lose nothing.

mod common;

use common::*;

/// 50 KiB/s: small enough that a thousand 1 KiB records overrun the ten-second burst.
const RATE: &str = "51200";

/// The quotas of client id `app`, as `kafka-configs.sh --describe` prints them.
fn describe_app(bs: &str) -> (bool, String) {
    kafka_configs(
        bs,
        &[
            "--describe",
            "--entity-type",
            "clients",
            "--entity-name",
            "app",
        ],
    )
}

fn set(bs: &str, entity: &[&str], config: &str) {
    let mut args = vec!["--alter"];
    args.extend_from_slice(entity);
    args.extend_from_slice(&["--add-config", config]);
    let (ok, said) = kafka_configs(bs, &args);
    assert!(ok, "{said}");
}

/// The largest value of a `--print-metrics` line `group:name:{tags}` whose tags mention
/// `client`.
fn metric(out: &str, group_name: &str, client: &str) -> Option<f64> {
    out.lines()
        .filter(|l| l.starts_with(group_name) && l.contains(client))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<f64>().ok())
        .reduce(f64::max)
}

#[test]
fn kafka_configs_sets_describes_and_removes_client_quotas_and_refuses_the_unenforced() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let (ok, said) = kafka_configs(&bs, &["--describe", "--entity-type", "clients"]);
    assert!(ok && !said.contains("producer_byte_rate"), "{said}");

    set(
        &bs,
        &["--entity-type", "clients", "--entity-name", "app"],
        "producer_byte_rate=1048576,consumer_byte_rate=2097152",
    );
    set(
        &bs,
        &[
            "--entity-type",
            "users",
            "--entity-name",
            "alice",
            "--entity-type",
            "clients",
            "--entity-default",
        ],
        "producer_byte_rate=4096",
    );
    let (ok, said) = describe_app(&bs);
    assert!(
        ok && said.contains("producer_byte_rate=1048576.0")
            && said.contains("consumer_byte_rate=2097152.0"),
        "{said}"
    );
    let (ok, said) = kafka_configs(
        &bs,
        &[
            "--describe",
            "--entity-type",
            "users",
            "--entity-name",
            "alice",
            "--entity-type",
            "clients",
        ],
    );
    assert!(ok && said.contains("producer_byte_rate=4096.0"), "{said}");

    // What this broker does not enforce is refused, saying so; a fraction is refused too.
    for (entity, config) in [
        (
            ["--entity-type", "clients", "--entity-name", "app"],
            "request_percentage=50",
        ),
        (
            ["--entity-type", "ips", "--entity-name", "10.0.0.1"],
            "connection_creation_rate=10",
        ),
        (
            ["--entity-type", "clients", "--entity-name", "app"],
            "producer_byte_rate=0.5",
        ),
    ] {
        let mut args = vec!["--alter"];
        args.extend_from_slice(&entity);
        args.extend_from_slice(&["--add-config", config]);
        let (ok, said) = kafka_configs(&bs, &args);
        assert!(
            !ok && (said.contains("enforces only producer_byte_rate")
                || said.contains("whole number")),
            "{config}: {said}"
        );
    }

    let (ok, said) = kafka_configs(
        &bs,
        &[
            "--alter",
            "--entity-type",
            "clients",
            "--entity-name",
            "app",
            "--delete-config",
            "producer_byte_rate",
        ],
    );
    assert!(ok, "{said}");
    let (_, said) = describe_app(&bs);
    assert!(
        !said.contains("producer_byte_rate") && said.contains("consumer_byte_rate=2097152.0"),
        "{said}"
    );

    // Quotas live in the metadata quorum: a restart keeps them.
    let mut broker = broker;
    broker.restart();
    let bs = broker.bootstrap();
    let (_, said) = describe_app(&bs);
    assert!(said.contains("consumer_byte_rate=2097152.0"), "{said}");
}

/// ProducerPerformance of `records` 1 KiB records as `client`, with its metrics.
fn produce(bs: &str, topic: &str, client: &str, records: &str) -> String {
    let out = kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic",
            topic,
            "--num-records",
            records,
            "--record-size",
            "1024",
            "--throughput",
            "-1",
            "--bootstrap-server",
            bs,
            "--command-property",
            "acks=all",
            "--command-property",
            &format!("client.id={client}"),
            "--print-metrics",
        ],
    );
    out.stdout
}

/// The MB/s ProducerPerformance's summary line gives.
fn produced_mb_per_s(out: &str) -> f64 {
    out.lines()
        .find(|l| l.contains("records sent") && l.contains("MB/sec"))
        .and_then(|l| {
            let (before, _) = l.split_once(" MB/sec")?;
            before.rsplit('(').next()?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no summary line in {out}"))
}

#[test]
fn java_clients_over_their_quota_are_throttled_and_other_clients_are_not() {
    let broker = TestBroker::start(&[]);
    let bs = broker.bootstrap();
    let java = JavaDriver::at(&bs);
    let topic = "quota-topic";
    java.admin(&["create-topic", "--topic", topic, "--partitions", "1"]);
    set(
        &bs,
        &["--entity-type", "clients", "--entity-name", "slow"],
        &format!("producer_byte_rate={RATE},consumer_byte_rate={RATE}"),
    );

    // 1,000 KiB at 50 KiB/s: past the ten-second burst the producer is told to wait.
    let slow = produce(&bs, topic, "slow", "1000");
    assert!(slow.contains("1000 records sent"), "{slow}");
    let waited = metric(&slow, "producer-metrics:produce-throttle-time-max", "slow");
    assert!(
        waited.is_some_and(|ms| ms > 0.0),
        "no throttle seen: {slow}"
    );
    // Unthrottled, this client moves tens of MB/s here; held, about twice the quota (the
    // burst, then the quota).
    let rate = produced_mb_per_s(&slow);
    eprintln!("throttled producer: {rate} MB/s, max throttle {waited:?} ms");
    assert!(rate < 0.2, "{rate} MB/s against a 0.05 MB/s quota: {slow}");

    // Another client id has no quota.
    let fast = produce(&bs, topic, "fast", "1000");
    let waited = metric(&fast, "producer-metrics:produce-throttle-time-max", "fast");
    assert_eq!(waited, Some(0.0), "{fast}");

    // The throttled consumer still reads every record, and is told to wait.
    let out = kafka_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            topic,
            "--messages",
            "2000",
            "--timeout",
            "60000",
            "--command-property",
            "client.id=slow",
            "--command-property",
            "group.id=quota-readers",
            "--command-property",
            "max.partition.fetch.bytes=65536",
            "--print-metrics",
        ],
    );
    let waited = metric(
        &out.stdout,
        "consumer-fetch-manager-metrics:fetch-throttle-time-max",
        "slow",
    );
    assert!(
        waited.is_some_and(|ms| ms > 0.0),
        "no fetch throttle seen: {}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.split(',').nth(4).is_some_and(|n| n.trim() == "2000")),
        "not every record read: {}",
        out.stdout
    );
    for quota in ["producer_byte_rate", "consumer_byte_rate"] {
        let held = metric_sum(broker.http_addr(), "sluice_client_throttle_ms_total", quota);
        assert!(held > 0.0, "no {quota} throttle counted in /metrics");
    }
}
