// A small driver of the Java Kafka client (org.apache.kafka:kafka-clients) for the broker
// integration tests in broker/tests/java_client.rs. Compiled with javac at test time.
//
//   produce  --bootstrap B --topic T --from N --to M [--compression C] [--partition P] [--acks A]
//            [--value-bytes N] [--pause-ms MS] [--prop k=v]...  prints one line per acknowledged
//            record: {"i":idx,"p":partition,"o":offset}  (--pause-ms: wait MS after each send, so
//            a test can act while the producer is still sending)
//   consume  --bootstrap B --topic T --group G --count N [--timeout-ms MS] [--idle-ms MS]
//            [--distinct true] [--retry-commits true] [--stop-file F] [--prop k=v]...
//            (--idle-ms: also stop once no record came for MS after the first; --stop-file: also
//            stop once file F exists, so a test can end a member that runs alongside others;
//            --distinct: count only records not seen before, for a group that may re-read after a
//            coordinator change; --retry-commits: a commit refused because the group moved on
//            (the member must rejoin, or its KIP-848 member epoch was bumped meanwhile) prints
//            "#commit-retry <error>" and the consumer keeps going, committing those offsets with
//            its next commit or before it gives their partitions up, as an application does)
//            subscribes as a member of group G, prints every record as a JSON line (the format
//            parse_consumed_lines in common/mod.rs reads) up to N records, commits synchronously
//            the offsets after the printed records (of every partition it owns) before it polls
//            again, prints "#committed <p> <offset>" lines as read back from the broker, then
//            closes (leaving the group). Each change of its assignment prints
//            "#owns <p,p,...|-> <member id>" (the partitions it owns after it). With
//            --prop group.protocol=consumer it is a member of a KIP-848 consumer group.
//   admin    --bootstrap B <op> [args]      one admin operation, results as "#..." text lines.
//
// The records are the deterministic test records of test_record() in common/mod.rs.
// Exit status 0 on success; on any failure the exception chain goes to stderr and the status is 2.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class SluiceJavaClient {

    // ------------------------------------------------------------------------------------------
    // Arguments

    static final class Args {
        final Map<String, String> opts = new HashMap<>();
        final List<String> props = new ArrayList<>();
        final List<String> sets = new ArrayList<>();
        final List<String> deletes = new ArrayList<>();
        final List<String> positional = new ArrayList<>();

        Args(String[] argv, int from) {
            for (int i = from; i < argv.length; i++) {
                String a = argv[i];
                if (a.startsWith("--")) {
                    if (i + 1 >= argv.length) {
                        throw new IllegalArgumentException("option " + a + " needs a value");
                    }
                    String v = argv[++i];
                    switch (a) {
                        case "--prop": props.add(v); break;
                        case "--set": sets.add(v); break;
                        case "--delete": deletes.add(v); break;
                        default: opts.put(a.substring(2), v);
                    }
                } else {
                    positional.add(a);
                }
            }
        }

        String get(String name) {
            String v = opts.get(name);
            if (v == null) {
                throw new IllegalArgumentException("missing option --" + name);
            }
            return v;
        }

        String get(String name, String dflt) {
            return opts.getOrDefault(name, dflt);
        }

        void applyProps(Properties p) {
            for (String kv : props) {
                int eq = kv.indexOf('=');
                if (eq <= 0) {
                    throw new IllegalArgumentException("--prop needs key=value, got " + kv);
                }
                p.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Test records (same as test_record in broker/tests/common/mod.rs)

    static byte[] key(long i) {
        return i % 5 == 4 ? null : ("key-" + i).getBytes(StandardCharsets.UTF_8);
    }

    static byte[] value(long i) {
        if (i % 11 == 10 && key(i) != null) {
            return null;
        }
        int len = (int) (i * 97 % 1500 + 1);
        byte[] v = new byte[len];
        for (int j = 0; j < len; j++) {
            v[j] = (byte) ((i * 131 + (long) j * 7) % 256);
        }
        return v;
    }

    static List<Header> headers(long i) {
        List<Header> h = new ArrayList<>();
        h.add(new RecordHeader("idx", Long.toString(i).getBytes(StandardCharsets.UTF_8)));
        if (i % 3 != 0) {
            h.add(new RecordHeader("bin", new byte[] {0, (byte) 255, (byte) (i % 256)}));
            h.add(new RecordHeader("dup", "a".getBytes(StandardCharsets.UTF_8)));
            h.add(new RecordHeader("dup", "b".getBytes(StandardCharsets.UTF_8)));
        }
        return h;
    }

    // ------------------------------------------------------------------------------------------
    // Output helpers

    static String hex(byte[] b) {
        if (b == null) {
            return "null";
        }
        StringBuilder s = new StringBuilder(b.length * 2 + 2).append('"');
        for (byte x : b) {
            s.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
        }
        return s.append('"').toString();
    }

    static String jstr(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    static void out(String line) {
        System.out.println(line);
    }

    // ------------------------------------------------------------------------------------------
    // produce

    static void produce(Args a) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(ProducerConfig.ACKS_CONFIG, a.get("acks", "all"));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, a.get("compression", "none"));
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        a.applyProps(p);
        String topic = a.get("topic");
        long from = Long.parseLong(a.get("from"));
        long to = Long.parseLong(a.get("to"));
        Integer partition = a.opts.containsKey("partition") ? Integer.valueOf(a.get("partition")) : null;
        // --value-bytes N: values of N bytes (same byte pattern as value(i)) instead of value(i).
        int valueBytes = Integer.parseInt(a.get("value-bytes", "-1"));
        long pauseMs = Long.parseLong(a.get("pause-ms", "0"));
        boolean transactional = p.containsKey(ProducerConfig.TRANSACTIONAL_ID_CONFIG);
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            if (transactional) {
                producer.initTransactions();
                producer.beginTransaction();
            }
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (long i = from; i < to; i++) {
                byte[] v = value(i);
                if (valueBytes >= 0) {
                    v = new byte[valueBytes];
                    for (int j = 0; j < valueBytes; j++) {
                        v[j] = (byte) ((i * 131 + (long) j * 7) % 256);
                    }
                }
                futures.add(producer.send(new ProducerRecord<>(topic, partition, null, key(i), v, headers(i))));
                if (pauseMs > 0) {
                    Thread.sleep(pauseMs);
                }
            }
            producer.flush();
            if (transactional) {
                producer.commitTransaction();
            }
            long i = from;
            for (Future<RecordMetadata> f : futures) {
                RecordMetadata m = f.get(30, TimeUnit.SECONDS);
                out("{\"i\":" + i + ",\"p\":" + m.partition() + ",\"o\":" + m.offset() + "}");
                i++;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // consume

    static void consume(Args a) throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(ConsumerConfig.GROUP_ID_CONFIG, a.get("group"));
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        a.applyProps(p);
        String topic = a.get("topic");
        int count = Integer.parseInt(a.get("count"));
        long deadline = System.currentTimeMillis() + Long.parseLong(a.get("timeout-ms", "60000"));
        long idleMs = Long.parseLong(a.get("idle-ms", "0"));
        long lastRecordAt = 0;
        int got = 0;
        boolean distinct = a.get("distinct", "false").equals("true");
        boolean retryCommits = a.get("retry-commits", "false").equals("true");
        Set<String> seen = new HashSet<>();
        java.io.File stopFile = a.opts.containsKey("stop-file") ? new java.io.File(a.get("stop-file")) : null;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            Commits commits = new Commits(consumer, retryCommits);
            consumer.subscribe(List.of(topic), new Rebalances(consumer, commits));
            while (got < count) {
                if (idleMs > 0 && got > 0 && System.currentTimeMillis() - lastRecordAt > idleMs) {
                    break;
                }
                if (stopFile != null && stopFile.exists()) {
                    break;
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new IllegalStateException("consumed " + got + " of " + count + " records before the deadline");
                }
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    if (got >= count) {
                        break;
                    }
                    StringBuilder h = new StringBuilder("[");
                    for (Header x : r.headers()) {
                        if (h.length() > 1) {
                            h.append(',');
                        }
                        h.append('[').append(jstr(x.key())).append(',').append(hex(x.value())).append(']');
                    }
                    h.append(']');
                    out("{\"p\":" + r.partition() + ",\"o\":" + r.offset() + ",\"k\":" + hex(r.key())
                            + ",\"v\":" + hex(r.value()) + ",\"h\":" + h + "}");
                    commits.read(new TopicPartition(r.topic(), r.partition()), r.offset());
                    if (!distinct || seen.add(r.partition() + ":" + r.offset())) {
                        got++;
                    }
                    lastRecordAt = System.currentTimeMillis();
                }
                commits.commitAll();
            }
            Map<TopicPartition, OffsetAndMetadata> committed =
                    consumer.committed(new HashSet<>(consumer.assignment()), Duration.ofSeconds(15));
            List<TopicPartition> tps = new ArrayList<>(committed.keySet());
            tps.sort(Comparator.comparingInt(TopicPartition::partition));
            for (TopicPartition tp : tps) {
                OffsetAndMetadata m = committed.get(tp);
                out("#committed " + tp.partition() + " " + (m == null ? -1 : m.offset()) + " "
                        + (m == null ? "" : m.metadata()));
            }
            out("#assignment " + consumer.assignment().size() + " generation "
                    + consumer.groupMetadata().generationId() + " member " + consumer.groupMetadata().memberId());
        }
    }

    /**
     * The offsets after the records printed, per partition owned, committed synchronously after
     * each poll (all of them each time). With `retryCommits`, a commit refused because the group
     * moved on (CommitFailedException: a new generation, or, in a KIP-848 group, a member epoch
     * that a heartbeat bumped while the commit was on its way) or not answered in time prints
     * "#commit-retry <error>"; the next commit carries its offsets again, and so does the
     * revocation of their partitions.
     */
    static final class Commits {
        final KafkaConsumer<byte[], byte[]> consumer;
        final boolean retryCommits;
        final Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
        /** Partitions whose offset in `next` no commit has acknowledged yet. */
        final Set<TopicPartition> unacknowledged = new HashSet<>();

        Commits(KafkaConsumer<byte[], byte[]> consumer, boolean retryCommits) {
            this.consumer = consumer;
            this.retryCommits = retryCommits;
        }

        void read(TopicPartition tp, long offset) {
            next.put(tp, new OffsetAndMetadata(offset + 1, "sluice-java"));
            unacknowledged.add(tp);
        }

        void commitAll() {
            if (!next.isEmpty()) {
                commit(next);
            }
        }

        /** Before `tps` are given up: commits what of them is unacknowledged, then forgets them. */
        void revoked(Collection<TopicPartition> tps) {
            Map<TopicPartition, OffsetAndMetadata> last = new HashMap<>();
            for (TopicPartition tp : tps) {
                if (unacknowledged.contains(tp)) {
                    last.put(tp, next.get(tp));
                }
            }
            if (!last.isEmpty()) {
                commit(last);
            }
            lost(tps);
        }

        void lost(Collection<TopicPartition> tps) {
            next.keySet().removeAll(tps);
            unacknowledged.removeAll(tps);
        }

        void commit(Map<TopicPartition, OffsetAndMetadata> offsets) {
            try {
                consumer.commitSync(offsets, Duration.ofSeconds(15));
                unacknowledged.removeAll(offsets.keySet());
            } catch (CommitFailedException | org.apache.kafka.common.errors.RebalanceInProgressException
                    | org.apache.kafka.common.errors.TimeoutException e) {
                if (!retryCommits) {
                    throw e;
                }
                out("#commit-retry " + e.getClass().getSimpleName() + ": " + e.getMessage());
            }
        }
    }

    /**
     * Prints "#owns <partitions> <member id>" after each change of the assignment; commits what
     * is unacknowledged of partitions before giving them up (not of lost ones: too late).
     */
    static final class Rebalances implements ConsumerRebalanceListener {
        final KafkaConsumer<byte[], byte[]> consumer;
        final Commits commits;
        final SortedSet<Integer> owned = new TreeSet<>();

        Rebalances(KafkaConsumer<byte[], byte[]> consumer, Commits commits) {
            this.consumer = consumer;
            this.commits = commits;
        }

        void print() {
            StringJoiner j = new StringJoiner(",");
            for (int partition : owned) {
                j.add(Integer.toString(partition));
            }
            out("#owns " + (owned.isEmpty() ? "-" : j.toString()) + " " + consumer.groupMetadata().memberId());
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> tps) {
            tps.forEach(tp -> owned.add(tp.partition()));
            print();
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> tps) {
            commits.revoked(tps);
            forget(tps);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> tps) {
            commits.lost(tps);
            forget(tps);
        }

        void forget(Collection<TopicPartition> tps) {
            tps.forEach(tp -> owned.remove(tp.partition()));
            print();
        }
    }

    // ------------------------------------------------------------------------------------------
    // admin

    static void admin(Args a) throws Exception {
        if (a.positional.isEmpty()) {
            throw new IllegalArgumentException("admin needs an operation");
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, a.get("bootstrap"));
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        a.applyProps(p);
        String op = a.positional.get(0);
        try (Admin admin = Admin.create(p)) {
            switch (op) {
                case "create-topic": {
                    NewTopic t = new NewTopic(a.get("topic"), Optional.of(Integer.parseInt(a.get("partitions", "1"))),
                            Optional.empty());
                    Map<String, String> cfg = new HashMap<>();
                    for (String kv : a.sets) {
                        int eq = kv.indexOf('=');
                        cfg.put(kv.substring(0, eq), kv.substring(eq + 1));
                    }
                    t.configs(cfg);
                    CreateTopicsResult r = admin.createTopics(List.of(t),
                            new CreateTopicsOptions().validateOnly(Boolean.parseBoolean(a.get("validate-only", "false"))));
                    r.all().get();
                    out("#created " + a.get("topic") + " partitions " + r.numPartitions(a.get("topic")).get()
                            + " id " + r.topicId(a.get("topic")).get());
                    break;
                }
                case "describe-scram-user": {
                    // DescribeUserScramCredentials: one line per credential, no secret in it.
                    String user = a.get("user");
                    UserScramCredentialsDescription d = admin.describeUserScramCredentials(List.of(user))
                            .description(user).get();
                    for (ScramCredentialInfo c : d.credentialInfos()) {
                        out("#scram " + d.name() + " " + c.mechanism() + " iterations " + c.iterations());
                    }
                    break;
                }
                case "list-topics": {
                    List<String> names = new ArrayList<>(admin.listTopics().names().get());
                    Collections.sort(names);
                    for (String n : names) {
                        out("#topic " + n);
                    }
                    break;
                }
                case "describe-topic": {
                    TopicDescription d = admin.describeTopics(List.of(a.get("topic"))).allTopicNames().get().get(a.get("topic"));
                    out("#topic " + d.name() + " id " + d.topicId() + " internal " + d.isInternal()
                            + " partitions " + d.partitions().size());
                    for (TopicPartitionInfo pi : d.partitions()) {
                        out("#partition " + pi.partition() + " leader " + (pi.leader() == null ? -1 : pi.leader().id())
                                + " replicas " + pi.replicas().size() + " isr " + pi.isr().size());
                    }
                    break;
                }
                case "describe-configs": {
                    ConfigResource res = new ConfigResource(ConfigResource.Type.valueOf(a.get("type", "TOPIC")),
                            a.get("name"));
                    Config c = admin.describeConfigs(List.of(res)).all().get().get(res);
                    List<ConfigEntry> es = new ArrayList<>(c.entries());
                    es.sort(Comparator.comparing(ConfigEntry::name));
                    for (ConfigEntry e : es) {
                        out("#config " + e.name() + "=" + e.value() + " source " + e.source()
                                + " readonly " + e.isReadOnly());
                    }
                    break;
                }
                case "alter-configs": {
                    ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, a.get("topic"));
                    List<AlterConfigOp> ops = new ArrayList<>();
                    for (String kv : a.sets) {
                        int eq = kv.indexOf('=');
                        ops.add(new AlterConfigOp(new ConfigEntry(kv.substring(0, eq), kv.substring(eq + 1)),
                                AlterConfigOp.OpType.SET));
                    }
                    for (String k : a.deletes) {
                        ops.add(new AlterConfigOp(new ConfigEntry(k, null), AlterConfigOp.OpType.DELETE));
                    }
                    admin.incrementalAlterConfigs(Map.of(res, ops)).all().get();
                    out("#altered " + a.get("topic"));
                    break;
                }
                case "create-partitions": {
                    admin.createPartitions(Map.of(a.get("topic"), NewPartitions.increaseTo(Integer.parseInt(a.get("total")))))
                            .all().get();
                    out("#partitions-created " + a.get("topic"));
                    break;
                }
                case "delete-topic": {
                    admin.deleteTopics(List.of(a.get("topic"))).all().get();
                    out("#deleted " + a.get("topic"));
                    break;
                }
                case "describe-cluster": {
                    DescribeClusterResult r = admin.describeCluster();
                    out("#cluster id " + r.clusterId().get() + " controller " + r.controller().get().id());
                    for (Node n : r.nodes().get()) {
                        out("#node " + n.id() + " " + n.host() + ":" + n.port());
                    }
                    break;
                }
                case "list-groups": {
                    List<String> ids = new ArrayList<>();
                    for (GroupListing g : admin.listGroups().all().get()) {
                        ids.add(g.groupId() + " " + g.type().map(Object::toString).orElse("?")
                                + " " + g.groupState().map(Object::toString).orElse("?"));
                    }
                    Collections.sort(ids);
                    for (String g : ids) {
                        out("#group " + g);
                    }
                    break;
                }
                case "describe-group": {
                    String g = a.get("group");
                    ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(g)).all().get().get(g);
                    out("#group " + d.groupId() + " state " + d.groupState() + " members " + d.members().size()
                            + " assignor " + d.partitionAssignor() + " coordinator " + d.coordinator().id());
                    // The group's type, and its epochs (KIP-848 consumer groups only: "-" otherwise).
                    out("#group-type " + d.type() + " epoch " + d.groupEpoch().map(Object::toString).orElse("-")
                            + " target-epoch " + d.targetAssignmentEpoch().map(Object::toString).orElse("-"));
                    for (MemberDescription m : d.members()) {
                        out("#member " + m.consumerId() + " epoch " + m.memberEpoch().map(Object::toString).orElse("-")
                                + " assigned " + partitions(m.assignment())
                                + " target " + m.targetAssignment().map(SluiceJavaClient::partitions).orElse("-"));
                    }
                    break;
                }
                case "list-group-offsets": {
                    String g = a.get("group");
                    Map<TopicPartition, OffsetAndMetadata> m =
                            admin.listConsumerGroupOffsets(g).partitionsToOffsetAndMetadata().get();
                    List<TopicPartition> tps = new ArrayList<>(m.keySet());
                    tps.sort(Comparator.comparing(TopicPartition::topic).thenComparingInt(TopicPartition::partition));
                    for (TopicPartition tp : tps) {
                        out("#offset " + tp.topic() + " " + tp.partition() + " " + m.get(tp).offset());
                    }
                    break;
                }
                case "delete-group": {
                    admin.deleteConsumerGroups(List.of(a.get("group"))).all().get();
                    out("#group-deleted " + a.get("group"));
                    break;
                }
                case "delete-group-offsets": {
                    // --partitions: comma-separated partition numbers of --topic.
                    Set<TopicPartition> tps = new HashSet<>();
                    for (String n : a.get("partitions").split(",")) {
                        tps.add(new TopicPartition(a.get("topic"), Integer.parseInt(n)));
                    }
                    admin.deleteConsumerGroupOffsets(a.get("group"), tps).all().get();
                    out("#group-offsets-deleted " + a.get("group") + " " + tps.size());
                    break;
                }
                case "alter-group-offsets": {
                    TopicPartition tp = new TopicPartition(a.get("topic"), Integer.parseInt(a.get("partition", "0")));
                    admin.alterConsumerGroupOffsets(a.get("group"),
                            Map.of(tp, new OffsetAndMetadata(Long.parseLong(a.get("offset"))))).all().get();
                    out("#group-offsets-altered " + a.get("group"));
                    break;
                }
                case "delete-records": {
                    TopicPartition tp = new TopicPartition(a.get("topic"), Integer.parseInt(a.get("partition", "0")));
                    DeletedRecords d = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(Long.parseLong(a.get("offset")))))
                            .lowWatermarks().get(tp).get();
                    out("#low-watermark " + d.lowWatermark());
                    break;
                }
                case "reassign": {
                    TopicPartition tp = new TopicPartition(a.get("topic"), Integer.parseInt(a.get("partition", "0")));
                    String to = a.get("to", "");
                    Optional<NewPartitionReassignment> r = to.isEmpty() ? Optional.empty()
                            : Optional.of(new NewPartitionReassignment(List.of(Integer.parseInt(to))));
                    admin.alterPartitionReassignments(Map.of(tp, r)).all().get();
                    out("#reassign-accepted " + tp);
                    break;
                }
                case "list-reassignments": {
                    Map<TopicPartition, PartitionReassignment> m = admin.listPartitionReassignments().reassignments().get();
                    for (Map.Entry<TopicPartition, PartitionReassignment> e : m.entrySet()) {
                        out("#reassignment " + e.getKey() + " replicas " + e.getValue().replicas());
                    }
                    out("#reassignments " + m.size());
                    break;
                }
                case "describe-partition-leaders": {
                    TopicDescription d = admin.describeTopics(List.of(a.get("topic"))).allTopicNames().get().get(a.get("topic"));
                    for (TopicPartitionInfo pi : d.partitions()) {
                        out("#leader " + pi.partition() + " " + (pi.leader() == null ? -1 : pi.leader().id()));
                    }
                    break;
                }
                case "describe-topic-by-id": {
                    Uuid id = Uuid.fromString(a.get("id"));
                    TopicDescription d = admin.describeTopics(TopicCollection.ofTopicIds(List.of(id))).allTopicIds().get().get(id);
                    out("#topic " + d.name() + " id " + d.topicId() + " partitions " + d.partitions().size());
                    break;
                }
                case "delete-topic-by-id": {
                    Uuid id = Uuid.fromString(a.get("id"));
                    admin.deleteTopics(TopicCollection.ofTopicIds(List.of(id))).all().get();
                    out("#deleted-id " + id);
                    break;
                }
                case "describe-log-dirs": {
                    int broker = Integer.parseInt(a.get("broker", "0"));
                    Map<Integer, Map<String, LogDirDescription>> m = admin.describeLogDirs(List.of(broker)).allDescriptions().get();
                    for (Map.Entry<String, LogDirDescription> d : m.get(broker).entrySet()) {
                        LogDirDescription desc = d.getValue();
                        out("#log-dir " + d.getKey() + " total " + desc.totalBytes().orElse(-1L)
                                + " usable " + desc.usableBytes().orElse(-1L));
                        desc.replicaInfos().forEach((tp, info) ->
                                out("#log-dir-replica " + tp.topic() + " " + tp.partition() + " size " + info.size()));
                    }
                    break;
                }
                case "describe-producers": {
                    TopicPartition tp = new TopicPartition(a.get("topic"), Integer.parseInt(a.get("partition", "0")));
                    for (ProducerState ps : admin.describeProducers(List.of(tp)).all().get().get(tp).activeProducers()) {
                        out("#producer " + ps.producerId() + " epoch " + ps.producerEpoch() + " last-seq " + ps.lastSequence());
                    }
                    out("#producers-done");
                    break;
                }
                case "describe-quorum": {
                    QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
                    out("#quorum leader " + q.leaderId() + " epoch " + q.leaderEpoch() + " hw " + q.highWatermark());
                    for (QuorumInfo.ReplicaState r : q.voters()) {
                        out("#quorum-voter " + r.replicaId() + " leo " + r.logEndOffset());
                    }
                    break;
                }
                case "elect-leaders": {
                    TopicPartition tp = new TopicPartition(a.get("topic"), Integer.parseInt(a.get("partition", "0")));
                    Map<TopicPartition, Optional<Throwable>> r =
                            admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions().get();
                    out("#election " + tp + " " + r.get(tp).map(e -> e.getClass().getSimpleName()).orElse("elected"));
                    break;
                }
                case "list-offsets": {
                    TopicPartition tp = new TopicPartition(a.get("topic"), Integer.parseInt(a.get("partition", "0")));
                    List<String> specs = new ArrayList<>(List.of("earliest", "latest"));
                    if (Boolean.parseBoolean(a.get("max-timestamp", "false"))) {
                        specs.add("max-timestamp");
                    }
                    for (String spec : specs) {
                        OffsetSpec s = spec.equals("earliest") ? OffsetSpec.earliest()
                                : spec.equals("latest") ? OffsetSpec.latest() : OffsetSpec.maxTimestamp();
                        ListOffsetsResult.ListOffsetsResultInfo info = admin.listOffsets(Map.of(tp, s)).all().get().get(tp);
                        out("#list-offsets " + spec + " " + info.offset());
                    }
                    break;
                }
                default:
                    throw new IllegalArgumentException("unknown admin operation " + op);
            }
        }
    }

    /** The partitions of an assignment as "p,p,..." (sorted, of any topic), "-" when empty. */
    static String partitions(MemberAssignment assignment) {
        StringJoiner j = new StringJoiner(",");
        assignment.topicPartitions().stream().map(TopicPartition::partition).sorted()
                .forEach(partition -> j.add(Integer.toString(partition)));
        return j.length() == 0 ? "-" : j.toString();
    }

    public static void main(String[] argv) {
        try {
            if (argv.length == 0) {
                throw new IllegalArgumentException("usage: produce|consume|admin ...");
            }
            Args a = new Args(argv, 1);
            switch (argv[0]) {
                case "produce": produce(a); break;
                case "consume": consume(a); break;
                case "admin": admin(a); break;
                default: throw new IllegalArgumentException("unknown subcommand " + argv[0]);
            }
            System.out.flush();
            System.exit(0);
        } catch (Throwable t) {
            System.out.flush();
            System.err.println("sluice-java-client: FAILED: " + t);
            Throwable c = t instanceof ExecutionException ? t.getCause() : t;
            for (Throwable x = c; x != null; x = x.getCause()) {
                System.err.println("  caused by: " + x.getClass().getName() + ": " + x.getMessage());
            }
            t.printStackTrace(System.err);
            System.exit(2);
        }
    }
}
