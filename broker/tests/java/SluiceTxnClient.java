// Transactions with the Java Kafka client (org.apache.kafka:kafka-clients) for the broker
// integration tests in broker/tests/transactions.rs. Compiled with javac at test time.
//
//   produce --bootstrap B --topic T --id TID --txns N --per M [--abort-every K] [--partitions P]
//           N transactions of M records each (key "k<i>-<j>", value "t<i>-<j>", spread over
//           P partitions); every K-th transaction (i % K == K - 1) is aborted, the others
//           committed. Prints "#committed <i>" / "#aborted <i>" after each.
//   hang    --bootstrap B --topic T --id TID --count M --timeout-ms X
//           begins a transaction with transaction.timeout.ms X, sends M records (value
//           "hung-<j>"), waits until they are acknowledged, prints "#open" and halts the JVM
//           without ending the transaction (a crashed producer).
//   fence   --bootstrap B --topic T --id TID
//           producer A begins a transaction and writes "fenced-<j>"; producer B with the same
//           id initialises (which aborts A's transaction), writes "winner-<j>" and commits;
//           A's commit must then fail: prints "#fenced <exception class>".
//   consume --bootstrap B --topic T --isolation read_committed|read_uncommitted
//           [--count N] [--idle-ms MS] [--timeout-ms MS]
//           reads every partition from the beginning (no group); prints "v <value>" per record
//           and "#end" once N records came, or nothing new came for MS.
//   copy    --bootstrap B --in T --out U --group G --id TID [--idle-ms MS] [--crash-after K]
//           a consume-transform-produce loop: each poll's records go to U as "copy:<value>"
//           in one transaction with the consumer's offsets (sendOffsetsToTransaction), so each
//           input record is copied exactly once; prints "#txn <records>" per commit. With
//           --crash-after K, after K commits it sends the next batch and halts the JVM before
//           committing. Ends when nothing new came for MS.
// Exit status 0 on success; on any failure the exception chain goes to stderr and the status is 2.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class SluiceTxnClient {

    static Map<String, String> args(String[] argv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 1; i + 1 < argv.length; i += 2) {
            if (!argv[i].startsWith("--")) {
                throw new IllegalArgumentException("expected an option, got " + argv[i]);
            }
            m.put(argv[i].substring(2), argv[i + 1]);
        }
        return m;
    }

    static String need(Map<String, String> a, String k) {
        String v = a.get(k);
        if (v == null) {
            throw new IllegalArgumentException("missing --" + k);
        }
        return v;
    }

    static KafkaProducer<String, String> producer(Map<String, String> a, String id, int timeoutMs) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, need(a, "bootstrap"));
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, Integer.toString(timeoutMs));
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    static void produce(Map<String, String> a) throws Exception {
        String topic = need(a, "topic");
        int txns = Integer.parseInt(need(a, "txns"));
        int per = Integer.parseInt(need(a, "per"));
        int abortEvery = Integer.parseInt(a.getOrDefault("abort-every", "0"));
        int partitions = Integer.parseInt(a.getOrDefault("partitions", "1"));
        try (KafkaProducer<String, String> p = producer(a, need(a, "id"), 60000)) {
            p.initTransactions();
            for (int i = 0; i < txns; i++) {
                p.beginTransaction();
                for (int j = 0; j < per; j++) {
                    p.send(new ProducerRecord<>(topic, (i + j) % partitions, "k" + i + "-" + j, "t" + i + "-" + j));
                }
                if (abortEvery > 0 && i % abortEvery == abortEvery - 1) {
                    p.flush();
                    p.abortTransaction();
                    System.out.println("#aborted " + i);
                } else {
                    p.commitTransaction();
                    System.out.println("#committed " + i);
                }
            }
        }
    }

    static void hang(Map<String, String> a) throws Exception {
        KafkaProducer<String, String> p = producer(a, need(a, "id"), Integer.parseInt(need(a, "timeout-ms")));
        p.initTransactions();
        p.beginTransaction();
        int count = Integer.parseInt(need(a, "count"));
        List<java.util.concurrent.Future<RecordMetadata>> sent = new ArrayList<>();
        for (int j = 0; j < count; j++) {
            sent.add(p.send(new ProducerRecord<>(need(a, "topic"), 0, "h" + j, "hung-" + j)));
        }
        for (java.util.concurrent.Future<RecordMetadata> f : sent) {
            f.get(60, TimeUnit.SECONDS);
        }
        System.out.println("#open");
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }

    static void fence(Map<String, String> a) throws Exception {
        String topic = need(a, "topic");
        String id = need(a, "id");
        KafkaProducer<String, String> first = producer(a, id, 60000);
        first.initTransactions();
        first.beginTransaction();
        for (int j = 0; j < 3; j++) {
            first.send(new ProducerRecord<>(topic, 0, "f" + j, "fenced-" + j)).get(60, TimeUnit.SECONDS);
        }
        try (KafkaProducer<String, String> second = producer(a, id, 60000)) {
            second.initTransactions();
            second.beginTransaction();
            for (int j = 0; j < 3; j++) {
                second.send(new ProducerRecord<>(topic, 0, "w" + j, "winner-" + j));
            }
            second.commitTransaction();
        }
        try {
            first.commitTransaction();
            System.out.println("#not-fenced");
        } catch (KafkaException e) {
            System.out.println("#fenced " + e.getClass().getSimpleName());
        } finally {
            first.close(Duration.ofSeconds(5));
        }
    }

    static KafkaConsumer<String, String> consumer(Map<String, String> a, String group, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, need(a, "bootstrap"));
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            // Several transactions per run, whatever the input holds.
            p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "30");
            // A crashed member leaves the group this long after its last heartbeat.
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
        }
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(p);
    }

    static void consume(Map<String, String> a) throws Exception {
        String topic = need(a, "topic");
        int count = Integer.parseInt(a.getOrDefault("count", "-1"));
        long idleMs = Long.parseLong(a.getOrDefault("idle-ms", "5000"));
        long deadline = System.currentTimeMillis() + Long.parseLong(a.getOrDefault("timeout-ms", "60000"));
        try (KafkaConsumer<String, String> c = consumer(a, null, need(a, "isolation"))) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            int got = 0;
            long last = System.currentTimeMillis();
            while (System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : rs) {
                    System.out.println("v " + r.value());
                    got++;
                }
                if (!rs.isEmpty()) {
                    last = System.currentTimeMillis();
                }
                if ((count >= 0 && got >= count) || (count < 0 && System.currentTimeMillis() - last > idleMs)) {
                    break;
                }
            }
            System.out.println("#end");
        }
    }

    static void copy(Map<String, String> a) throws Exception {
        String in = need(a, "in");
        String out = need(a, "out");
        long idleMs = Long.parseLong(a.getOrDefault("idle-ms", "5000"));
        int crashAfter = Integer.parseInt(a.getOrDefault("crash-after", "-1"));
        try (KafkaConsumer<String, String> c = consumer(a, need(a, "group"), "read_committed");
             KafkaProducer<String, String> p = producer(a, need(a, "id"), 60000)) {
            p.initTransactions();
            c.subscribe(List.of(in));
            long last = System.currentTimeMillis();
            int commits = 0;
            while (System.currentTimeMillis() - last < idleMs) {
                ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(300));
                if (c.assignment().isEmpty()) {
                    // Still joining the group (after a crashed member, until its session
                    // times out): idle time counts once partitions are assigned.
                    last = System.currentTimeMillis();
                }
                if (rs.isEmpty()) {
                    continue;
                }
                last = System.currentTimeMillis();
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : rs) {
                    p.send(new ProducerRecord<>(out, r.partition(), r.key(), "copy:" + r.value()));
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(offsets, c.groupMetadata());
                if (commits == crashAfter) {
                    p.flush();
                    System.out.println("#crash");
                    System.out.flush();
                    Runtime.getRuntime().halt(0);
                }
                p.commitTransaction();
                commits++;
                System.out.println("#txn " + rs.count());
            }
        }
    }

    public static void main(String[] argv) {
        try {
            if (argv.length == 0) {
                throw new IllegalArgumentException("usage: produce|hang|fence|consume|copy --option value ...");
            }
            Map<String, String> a = args(argv);
            switch (argv[0]) {
                case "produce": produce(a); break;
                case "hang": hang(a); break;
                case "fence": fence(a); break;
                case "consume": consume(a); break;
                case "copy": copy(a); break;
                default: throw new IllegalArgumentException("unknown command " + argv[0]);
            }
            System.exit(0);
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(2);
        }
    }
}
