// A driver of the Java share consumer (KafkaShareConsumer, KIP-932) for broker/tests/share_groups.rs.
// Compiled with javac at test time beside SluiceJavaClient.java.
//
//   produce   --bootstrap B --topic T --count N [--poison-every K]
//             values "m-<i>" (every K-th "poison-<i>"), one record per batch; prints "#produced N"
//   consume   --bootstrap B --topic T --group G [--max-poll N] [--process-ms MS] [--idle-ms MS]
//             [--timeout-ms MS] [--give-up-ms MS] [--hang true] [--reject-prefix P]
//             [--max-records N] [--prop k=v]...
//             prints "got <partition> <offset> <deliveryCount> <value>" per record handed to the
//             application; implicit acknowledgement (ACCEPT on the next poll) unless
//             --reject-prefix, which acknowledges explicitly: REJECT for values starting with P,
//             ACCEPT for the rest, then commitSync; --release-prefix P likewise RELEASEs those. --hang: after the first records, print
//             "#hang" and sleep without acknowledging (the test kills the JVM). --max-records: commit
//             and close after the poll that brought the N-th record. Stops once no
//             record came for --idle-ms after the first, after --give-up-ms without any, or at
//             --timeout-ms; closes.
//   describe  --bootstrap B --group G      prints "#members N" and "#member <id> <client>"
//   dump      --bootstrap B --topic T --count N [--timeout-ms MS]
//             reads N records of T from the start with a plain consumer, prints
//             "dlq <value> <header>=<value>..." per record
//
// Exit status 0 on success; on any failure the exception chain goes to stderr and the status is 2.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class SluiceShareClient {
    static Map<String, String> opts = new HashMap<>();
    static List<String> props = new ArrayList<>();

    static String get(String k, String dflt) {
        String v = opts.get(k);
        if (v == null && dflt == null) {
            throw new IllegalArgumentException("missing --" + k);
        }
        return v == null ? dflt : v;
    }

    static void applyProps(Properties p) {
        for (String kv : props) {
            int eq = kv.indexOf('=');
            p.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
    }

    public static void main(String[] argv) {
        try {
            for (int i = 1; i + 1 < argv.length; i += 2) {
                String k = argv[i].substring(2);
                if (k.equals("prop")) {
                    props.add(argv[i + 1]);
                } else {
                    opts.put(k, argv[i + 1]);
                }
            }
            switch (argv[0]) {
                case "produce": produce(); break;
                case "consume": consume(); break;
                case "describe": describe(); break;
                case "dump": dump(); break;
                default: throw new IllegalArgumentException("unknown command " + argv[0]);
            }
            System.out.flush();
            System.exit(0);
        } catch (Throwable t) {
            t.printStackTrace();
            System.out.flush();
            System.exit(2);
        }
    }

    static void produce() throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, get("bootstrap", null));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        int count = Integer.parseInt(get("count", null));
        int poison = Integer.parseInt(get("poison-every", "0"));
        // --first N: numbers the values from N; --age-ms N: records stamped N ms in the past.
        int first = Integer.parseInt(get("first", "0"));
        String age = opts.get("age-ms");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = first; i < first + count; i++) {
                String v = (poison > 0 && i % poison == 0 ? "poison-" : "m-") + i;
                Long ts = age == null ? null : System.currentTimeMillis() - Long.parseLong(age);
                producer.send(new ProducerRecord<>(get("topic", null), null, ts, "k" + i, v)).get();
            }
        }
        System.out.println("#produced " + count);
    }

    static void consume() throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, get("bootstrap", null));
        p.put(ConsumerConfig.GROUP_ID_CONFIG, get("group", null));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, get("max-poll", "10"));
        String reject = opts.get("reject-prefix");
        String release = opts.get("release-prefix");
        if (reject != null || release != null) {
            p.put("share.acknowledgement.mode", "explicit");
        }
        applyProps(p);
        long processMs = Long.parseLong(get("process-ms", "0"));
        long idleMs = Long.parseLong(get("idle-ms", "5000"));
        long started = System.currentTimeMillis();
        long deadline = started + Long.parseLong(get("timeout-ms", "60000"));
        long giveUpMs = Long.parseLong(get("give-up-ms", "-1"));
        boolean hang = Boolean.parseBoolean(get("hang", "false"));
        long maxRecords = Long.parseLong(get("max-records", "-1"));
        long processed = 0;
        long lastRecord = -1;
        try (KafkaShareConsumer<String, String> consumer = new KafkaShareConsumer<>(p)) {
            consumer.subscribe(List.of(get("topic", null)));
            System.out.println("#subscribed");
            System.out.flush();
            while (System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : records) {
                    System.out.println("got " + r.partition() + " " + r.offset() + " "
                            + r.deliveryCount().orElse((short) -1) + " " + r.value());
                    if (processMs > 0) {
                        Thread.sleep(processMs);
                    }
                    processed++;
                    if (reject != null && r.value().startsWith(reject)) {
                        consumer.acknowledge(r, AcknowledgeType.REJECT);
                    } else if (release != null && r.value().startsWith(release)) {
                        consumer.acknowledge(r, AcknowledgeType.RELEASE);
                    } else if (reject != null || release != null) {
                        consumer.acknowledge(r, AcknowledgeType.ACCEPT);
                    }
                }
                System.out.flush();
                if (!records.isEmpty()) {
                    lastRecord = System.currentTimeMillis();
                    if (hang) {
                        System.out.println("#hang");
                        System.out.flush();
                        Thread.sleep(Long.MAX_VALUE);
                    }
                    if (reject != null || release != null) {
                        consumer.commitSync();
                    }
                    if (maxRecords >= 0 && processed >= maxRecords) {
                        // Implicit mode accepts a poll's records at the next poll or commit;
                        // close alone would release them.
                        consumer.commitSync();
                        break;
                    }
                } else if (lastRecord > 0 && System.currentTimeMillis() - lastRecord > idleMs) {
                    break;
                } else if (lastRecord < 0 && giveUpMs >= 0
                        && System.currentTimeMillis() - started > giveUpMs) {
                    break;
                }
            }
        }
        System.out.println("#closed");
    }

    static void describe() throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, get("bootstrap", null));
        String group = get("group", null);
        try (Admin admin = Admin.create(p)) {
            ShareGroupDescription d = admin.describeShareGroups(List.of(group))
                    .describedGroups().get(group).get();
            System.out.println("#state " + d.groupState());
            System.out.println("#members " + d.members().size());
            for (ShareMemberDescription m : d.members()) {
                System.out.println("#member " + m.consumerId() + " " + m.clientId() + " "
                        + m.assignment().topicPartitions());
            }
        }
    }

    static void dump() throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, get("bootstrap", null));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        p.put(ConsumerConfig.GROUP_ID_CONFIG, "dump-" + UUID.randomUUID());
        int count = Integer.parseInt(get("count", null));
        long deadline = System.currentTimeMillis() + Long.parseLong(get("timeout-ms", "30000"));
        int seen = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            consumer.subscribe(List.of(get("topic", null)));
            while (seen < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    StringBuilder b = new StringBuilder("dlq " + r.value());
                    for (Header h : r.headers()) {
                        b.append(' ').append(h.key()).append('=')
                                .append(new String(h.value(), StandardCharsets.UTF_8));
                    }
                    System.out.println(b);
                    seen++;
                }
            }
        }
        System.out.println("#dumped " + seen);
    }
}
