// A Kafka Streams application (org.apache.kafka:kafka-streams) for broker/tests/streams.rs: a
// word count whose topology needs what every stateful Streams application needs from a broker:
// a repartition topic (groupBy), a state store with a compacted changelog topic, consumer-group
// rebalancing with the "consumer" protocol, offset commits, and DeleteRecords purging the
// repartition topic. Compiled with javac at test time, like SluiceJavaClient.
//
//   wordcount --bootstrap B --app ID --input T --output T --state-dir D --seeds S1,S2,...
//             --lines N [--prop k=v]...
//     Produces N lines of five words from the last seed's generator to T (acks=all), runs the
//     topology (application.id ID, state in D, the --prop settings on top), and waits until
//     the output topic's latest count of every word equals its count over the lines of every
//     seed listed (the earlier seeds' lines are already in the input, from earlier runs) and
//     the repartition topic is purged up to what was consumed. Then it closes the application
//     cleanly and prints
//       #counts w1=c1,w2=c2,...      (the output topic's latest values)
//       #purged <topic> <partition> <log start offset>   (one per repartition partition)
//     Exit 0 when the counts match; 1 when they do not within 90 s (expected and seen printed),
//     or the application died; 2 on any other failure.

import java.time.Duration;
import java.util.*;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;
import org.apache.kafka.streams.*;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.*;

public final class SluiceStreamsApp {
    static final String[] VOCABULARY = {
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    };
    static final int WORDS_PER_LINE = 5;
    static final String STORE = "counts";

    /** The `lines` lines of seed `seed`: the same on every run. */
    static List<String> lines(long seed, int lines) {
        Random r = new Random(seed);
        List<String> out = new ArrayList<>(lines);
        for (int i = 0; i < lines; i++) {
            StringJoiner line = new StringJoiner(" ");
            for (int j = 0; j < WORDS_PER_LINE; j++) {
                line.add(VOCABULARY[r.nextInt(VOCABULARY.length)]);
            }
            out.add(line.toString());
        }
        return out;
    }

    public static void main(String[] argv) {
        try {
            if (argv.length == 0 || !argv[0].equals("wordcount")) {
                throw new IllegalArgumentException("usage: wordcount --bootstrap B --app ID ...");
            }
            System.exit(wordcount(new SluiceJavaClient.Args(argv, 1)));
        } catch (Throwable t) {
            t.printStackTrace();
            System.exit(2);
        }
    }

    static int wordcount(SluiceJavaClient.Args a) throws Exception {
        String bootstrap = a.get("bootstrap");
        String app = a.get("app");
        String input = a.get("input");
        String output = a.get("output");
        int lines = Integer.parseInt(a.get("lines"));
        long[] seeds = Arrays.stream(a.get("seeds").split(",")).mapToLong(Long::parseLong).toArray();

        Map<String, Long> expected = new TreeMap<>();
        for (long seed : seeds) {
            for (String line : lines(seed, lines)) {
                for (String w : line.split(" ")) {
                    expected.merge(w, 1L, Long::sum);
                }
            }
        }

        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("acks", "all");
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            for (String line : lines(seeds[seeds.length - 1], lines)) {
                p.send(new ProducerRecord<>(input, null, line));
            }
            p.flush();
        }

        StreamsBuilder b = new StreamsBuilder();
        b.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
            .flatMapValues(v -> Arrays.asList(v.split(" ")))
            .groupBy((k, w) -> w, Grouped.with(Serdes.String(), Serdes.String()))
            .count(Materialized.as(STORE))
            .toStream()
            .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        Topology topology = b.build();

        Properties sp = new Properties();
        sp.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        sp.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        sp.put(StreamsConfig.STATE_DIR_CONFIG, a.get("state-dir"));
        sp.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        sp.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 100);
        sp.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        a.applyProps(sp);

        KafkaStreams streams = new KafkaStreams(topology, sp);
        AtomicReference<Throwable> died = new AtomicReference<>();
        CountDownLatch dead = new CountDownLatch(1);
        streams.setUncaughtExceptionHandler(e -> {
            died.set(e);
            dead.countDown();
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();

        String repartition = app + "-" + STORE + "-repartition";
        Map<String, Long> seen = new TreeMap<>();
        Map<TopicPartition, Long> starts = new TreeMap<>(Comparator.comparing(TopicPartition::toString));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        Properties cp = new Properties();
        cp.put("bootstrap.servers", bootstrap);
        cp.put("key.deserializer", StringDeserializer.class.getName());
        cp.put("value.deserializer", LongDeserializer.class.getName());
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        boolean purged = false;
        try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(cp); Admin admin = Admin.create(ap)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (var info : c.partitionsFor(output, Duration.ofSeconds(30))) {
                parts.add(new TopicPartition(output, info.partition()));
            }
            c.assign(parts);
            c.seekToBeginning(parts);
            while (System.nanoTime() < deadline && dead.getCount() > 0) {
                for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(100))) {
                    seen.put(r.key(), r.value());
                }
                if (seen.equals(expected)) {
                    purged = purgedUpToCommitted(admin, app, repartition, starts);
                    if (purged) {
                        break;
                    }
                }
            }
        }
        // Leave the group on close: a Streams member otherwise stays until its session times
        // out, and the next run would wait for that before it is given the tasks.
        streams.close(CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
            .withTimeout(Duration.ofSeconds(30)));

        StringJoiner counts = new StringJoiner(",");
        seen.forEach((w, n) -> counts.add(w + "=" + n));
        System.out.println("#counts " + counts);
        starts.forEach((tp, o) -> System.out.println("#purged " + tp.topic() + " " + tp.partition() + " " + o));
        if (died.get() != null) {
            System.err.println("the Streams application died:");
            died.get().printStackTrace();
            return 1;
        }
        if (!seen.equals(expected)) {
            System.err.println("counts differ after 90 s:\nexpected " + expected + "\nseen     " + seen);
            return 1;
        }
        if (!purged) {
            System.err.println("the repartition topic " + repartition + " was not purged up to the committed offsets within 90 s: " + starts);
            return 1;
        }
        return 0;
    }

    /**
     * Whether every partition of the repartition topic starts at the application's committed
     * offset (Streams deletes what it has consumed and committed). Records the start offsets.
     */
    static boolean purgedUpToCommitted(Admin admin, String app, String topic, Map<TopicPartition, Long> starts)
        throws Exception {
        Map<TopicPartition, OffsetAndMetadata> committed =
            admin.listConsumerGroupOffsets(app).partitionsToOffsetAndMetadata().get();
        Map<TopicPartition, OffsetSpec> ask = new HashMap<>();
        for (TopicPartition tp : committed.keySet()) {
            if (tp.topic().equals(topic)) {
                ask.put(tp, OffsetSpec.earliest());
            }
        }
        if (ask.isEmpty()) {
            return false;
        }
        var earliest = admin.listOffsets(ask).all().get();
        boolean all = true;
        for (TopicPartition tp : ask.keySet()) {
            long start = earliest.get(tp).offset();
            starts.put(tp, start);
            all &= start == committed.get(tp).offset();
        }
        return all;
    }
}
