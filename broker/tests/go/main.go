// A small driver of github.com/twmb/franz-go (kgo, kadm), github.com/segmentio/kafka-go and
// github.com/IBM/sarama for the broker integration tests in broker/tests/go_client.rs. Built with `go build` at test time
// into a generated module.
//
//	produce --brokers B --topic T --from N --to M [--compression C] [--partition P]
//	        prints one line per acknowledged record: {"i":idx,"p":partition,"o":offset}
//	consume --brokers B --topic T --group G --count N [--timeout-ms MS] [--server-side] [--stop-file F]
//	        consumes as a member of group G, prints every record as a JSON line (the format
//	        parse_consumed_lines in common/mod.rs reads) up to N records, commits exactly the
//	        offsets after the printed records, prints "#committed <p> <offset>" as fetched back
//	        with kadm, then leaves the group. --stop-file: also stop once file F exists.
//	        --server-side: a member of a KIP-848 consumer group (kgo.ServerSideBalancer), which
//	        holds off revocations while it prints and commits what it polled
//	        (kgo.BlockRebalanceOnPoll), prints "#owns <p,p,...|-> <member id>" after each change
//	        of its assignment and, before leaving, the group as ConsumerGroupDescribe shows it:
//	        "#described <state> epoch <group epoch> assignor <name> members <n>" and
//	        "#described-member <member id> epoch <epoch> assigned <p,p,...|->" per member.
//	admin   <create-topic|list-offsets|describe-group|metadata|api-versions|delete-topic> --brokers B ...
//	txn --brokers B --topic T --id TID --txns N --per M [--abort-every K] [--partitions P]
//	        N transactions of M records (key "k<i>-<j>", value "t<i>-<j>" on partition
//	        (i + j) % P) with kgo's transactional producer; every K-th (i % K == K - 1) aborted,
//	        the others committed; prints "#committed <i>" or "#aborted <i>" after each.
//	sarama-txn --brokers B --topic T --id TID --txns N --per M [--abort-every K] [--partitions P] [--group G]
//	        the same transactions with sarama's transactional SyncProducer; with --group, each
//	        transaction also commits offset i + 1 of partition 0 of T for group G (AddOffsetsToTxn).
//	kafkago-latest --brokers B --topic T --through O
//	        reads partition 0 from its start with kafka-go's Reader through offset O, checks that
//	        offsets rise, prints "#read <records> <last offset>" and "#latest <key> <value>" per key.
//
// The records are the deterministic test records of test_record() in common/mod.rs.
// Exit status 0 on success; on failure the error goes to stderr and the status is 2.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
)

func key(i int64) []byte {
	if i%5 == 4 {
		return nil
	}
	return []byte(fmt.Sprintf("key-%d", i))
}

func value(i int64) []byte {
	if i%11 == 10 && key(i) != nil {
		return nil
	}
	n := i*97%1500 + 1
	v := make([]byte, n)
	for j := int64(0); j < n; j++ {
		v[j] = byte((i*131 + j*7) % 256)
	}
	return v
}

func headers(i int64) []kgo.RecordHeader {
	h := []kgo.RecordHeader{{Key: "idx", Value: []byte(strconv.FormatInt(i, 10))}}
	if i%3 != 0 {
		h = append(h,
			kgo.RecordHeader{Key: "bin", Value: []byte{0, 255, byte(i % 256)}},
			kgo.RecordHeader{Key: "dup", Value: []byte("a")},
			kgo.RecordHeader{Key: "dup", Value: []byte("b")},
		)
	}
	return h
}

func hexOrNull(b []byte) any {
	if b == nil {
		return nil
	}
	return hex.EncodeToString(b)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sluice-go-client: FAILED: "+format+"\n", args...)
	os.Exit(2)
}

func codec(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	fail("unknown compression %q", name)
	return kgo.NoCompression()
}

// ownsPrinter prints "#owns <partitions> <member id>" after each change of a KIP-848 member's
// assignment (one topic is consumed, so partition numbers suffice).
type ownsPrinter struct {
	mu    sync.Mutex
	owned map[int32]bool
}

func (o *ownsPrinter) change(cl *kgo.Client, ps map[string][]int32, owned bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, parts := range ps {
		for _, p := range parts {
			if owned {
				o.owned[p] = true
			} else {
				delete(o.owned, p)
			}
		}
	}
	now := make([]int, 0, len(o.owned))
	for p := range o.owned {
		now = append(now, int(p))
	}
	sort.Ints(now)
	member, _ := cl.GroupMetadata()
	fmt.Printf("#owns %s %s\n", joinPartitions(now), member)
}

func (o *ownsPrinter) assigned(_ context.Context, cl *kgo.Client, ps map[string][]int32) {
	o.change(cl, ps, true)
}

func (o *ownsPrinter) revoked(_ context.Context, cl *kgo.Client, ps map[string][]int32) {
	o.change(cl, ps, false)
}

// joinPartitions is "p,p,..." of sorted partitions, "-" when there is none.
func joinPartitions(ps []int) string {
	if len(ps) == 0 {
		return "-"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// describeConsumerGroup prints group as ConsumerGroupDescribe (API 69) shows it; it fails for a
// group that is not a KIP-848 consumer group.
func describeConsumerGroup(ctx context.Context, adm *kadm.Client, group string) {
	described, err := adm.DescribeConsumerGroups(ctx, group)
	if err != nil {
		fail("describe consumer group %s: %v", group, err)
	}
	g, ok := described[group]
	if !ok {
		fail("consumer group %s not described", group)
	}
	if g.Err != nil {
		fail("describe consumer group %s: %v", group, g.Err)
	}
	fmt.Printf("#described %s epoch %d assignor %s members %d\n", g.State, g.Epoch, g.AssignorName, len(g.Members))
	for _, m := range g.Members {
		var ps []int
		for _, parts := range m.Assignment {
			for p := range parts {
				ps = append(ps, int(p))
			}
		}
		sort.Ints(ps)
		fmt.Printf("#described-member %s epoch %d assigned %s\n", m.MemberID, m.MemberEpoch, joinPartitions(ps))
	}
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: produce|consume|admin ...")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	brokers := fs.String("brokers", "", "bootstrap host:port")
	topic := fs.String("topic", "", "topic")
	group := fs.String("group", "", "consumer group")
	from := fs.Int64("from", 0, "first record index")
	to := fs.Int64("to", 0, "end record index (exclusive)")
	comp := fs.String("compression", "none", "none|gzip|snappy|lz4|zstd")
	partition := fs.Int("partition", -1, "partition to produce to (-1: default partitioner)")
	partitions := fs.Int("partitions", 1, "partitions for create-topic")
	count := fs.Int("count", 0, "records to consume")
	timeoutMs := fs.Int("timeout-ms", 60000, "overall deadline")
	sets := fs.String("configs", "", "k=v,k=v topic configs for create-topic")
	capVersions := fs.String("max-versions", "", "key=version,... caps on the request versions the client may use (diagnostics)")
	autoCreate := fs.Bool("auto-create", false, "let the producer's Metadata requests create the topic")
	through := fs.Int64("through", 0, "kafkago-latest: last offset to read")
	serverSide := fs.Bool("server-side", false, "consume: as a member of a KIP-848 consumer group")
	stopFile := fs.String("stop-file", "", "consume: stop once this file exists")
	txnID := fs.String("id", "", "txn: transactional id")
	txns := fs.Int("txns", 0, "txn: transactions")
	per := fs.Int("per", 0, "txn: records per transaction")
	abortEvery := fs.Int("abort-every", 0, "txn: abort every K-th transaction")
	rest := os.Args[2:]
	op := ""
	if os.Args[1] == "admin" && len(rest) > 0 {
		op, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		fail("%v", err)
	}
	if *brokers == "" {
		fail("missing --brokers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeoutMs)*time.Millisecond)
	defer cancel()
	base := []kgo.Opt{kgo.SeedBrokers(*brokers)}
	if *capVersions != "" {
		v := kversion.Stable()
		for _, kv := range strings.Split(*capVersions, ",") {
			k, ver, _ := strings.Cut(kv, "=")
			key, err1 := strconv.Atoi(k)
			n, err2 := strconv.Atoi(ver)
			if err1 != nil || err2 != nil {
				fail("bad --max-versions entry %q (want apikey=version)", kv)
			}
			v.SetMaxKeyVersion(int16(key), int16(n))
		}
		base = append(base, kgo.MaxVersions(v))
	}

	switch os.Args[1] {
	case "kafkago-latest":
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: strings.Split(*brokers, ","), Topic: *topic, Partition: 0, MaxWait: time.Second})
		defer r.Close()
		if err := r.SetOffset(kafkago.FirstOffset); err != nil {
			fail("set offset: %v", err)
		}
		n, last := 0, int64(-1)
		latest := map[string]string{}
		for last < *through {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				fail("kafka-go read after offset %d: %v", last, err)
			}
			if m.Offset <= last {
				fail("offset %d after %d", m.Offset, last)
			}
			n, last = n+1, m.Offset
			latest[string(m.Key)] = string(m.Value)
		}
		fmt.Printf("#read %d %d\n", n, last)
		keys := make([]string, 0, len(latest))
		for k := range latest {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("#latest %s %s\n", k, latest[k])
		}

	case "txn":
		cl, err := kgo.NewClient(append(base, kgo.TransactionalID(*txnID),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(60*time.Second))...)
		if err != nil {
			fail("new client: %v", err)
		}
		defer cl.Close()
		for i := 0; i < *txns; i++ {
			if err := cl.BeginTransaction(); err != nil {
				fail("begin %d: %v", i, err)
			}
			recs := make([]*kgo.Record, 0, *per)
			for j := 0; j < *per; j++ {
				recs = append(recs, &kgo.Record{Topic: *topic, Partition: int32((i + j) % *partitions),
					Key: []byte(fmt.Sprintf("k%d-%d", i, j)), Value: []byte(fmt.Sprintf("t%d-%d", i, j))})
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				fail("produce in transaction %d: %v", i, err)
			}
			end, word := kgo.TryCommit, "committed"
			if *abortEvery > 0 && i%*abortEvery == *abortEvery-1 {
				end, word = kgo.TryAbort, "aborted"
			}
			if err := cl.EndTransaction(ctx, end); err != nil {
				fail("end transaction %d: %v", i, err)
			}
			fmt.Printf("#%s %d\n", word, i)
		}

	case "sarama-txn":
		cfg := sarama.NewConfig()
		// Sarama picks request versions by the version it is told, not by ApiVersions.
		cfg.Version = sarama.V3_6_0_0
		cfg.Producer.Idempotent = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Return.Successes = true
		cfg.Producer.Partitioner = sarama.NewManualPartitioner
		cfg.Producer.Transaction.ID = *txnID
		cfg.Producer.Transaction.Timeout = 60 * time.Second
		cfg.Net.MaxOpenRequests = 1
		p, err := sarama.NewSyncProducer(strings.Split(*brokers, ","), cfg)
		if err != nil {
			fail("new sarama producer: %v", err)
		}
		defer p.Close()
		for i := 0; i < *txns; i++ {
			if err := p.BeginTxn(); err != nil {
				fail("begin %d: %v", i, err)
			}
			for j := 0; j < *per; j++ {
				_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: *topic, Partition: int32((i + j) % *partitions),
					Key: sarama.StringEncoder(fmt.Sprintf("k%d-%d", i, j)), Value: sarama.StringEncoder(fmt.Sprintf("t%d-%d", i, j))})
				if err != nil {
					fail("produce in transaction %d: %v", i, err)
				}
			}
			if *group != "" {
				offsets := map[string][]*sarama.PartitionOffsetMetadata{
					*topic: {{Partition: 0, Offset: int64(i + 1)}},
				}
				if err := p.AddOffsetsToTxn(offsets, *group); err != nil {
					fail("offsets in transaction %d: %v", i, err)
				}
			}
			word := "committed"
			if *abortEvery > 0 && i%*abortEvery == *abortEvery-1 {
				word = "aborted"
				err = p.AbortTxn()
			} else {
				err = p.CommitTxn()
			}
			if err != nil {
				fail("end transaction %d: %v", i, err)
			}
			fmt.Printf("#%s %d\n", word, i)
		}

	case "produce":
		opts := append(base, kgo.ProducerBatchCompression(codec(*comp)), kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.ProducerLinger(5*time.Millisecond), kgo.RecordDeliveryTimeout(30*time.Second))
		if *partition >= 0 {
			opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		}
		if *autoCreate {
			opts = append(opts, kgo.AllowAutoTopicCreation())
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			fail("new client: %v", err)
		}
		defer cl.Close()
		recs := make([]*kgo.Record, 0, *to-*from)
		for i := *from; i < *to; i++ {
			recs = append(recs, &kgo.Record{Topic: *topic, Partition: int32(*partition), Key: key(i), Value: value(i), Headers: headers(i)})
		}
		res := cl.ProduceSync(ctx, recs...)
		if err := res.FirstErr(); err != nil {
			fail("produce: %v", err)
		}
		for k, r := range res {
			fmt.Printf("{\"i\":%d,\"p\":%d,\"o\":%d}\n", *from+int64(k), r.Record.Partition, r.Record.Offset)
		}

	case "consume":
		opts := append(base, kgo.ConsumerGroup(*group), kgo.ConsumeTopics(*topic), kgo.DisableAutoCommit(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		var owns *ownsPrinter
		if *serverSide {
			owns = &ownsPrinter{owned: map[int32]bool{}}
			opts = append(opts, kgo.ServerSideBalancer(), kgo.BlockRebalanceOnPoll(),
				kgo.OnPartitionsAssigned(owns.assigned), kgo.OnPartitionsRevoked(owns.revoked),
				kgo.OnPartitionsLost(owns.revoked))
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			fail("new client: %v", err)
		}
		got := 0
		for got < *count {
			if *stopFile != "" {
				if _, err := os.Stat(*stopFile); err == nil {
					break
				}
			}
			// A short poll, so the stop file is seen while no records come.
			pollCtx, pollCancel := context.WithTimeout(ctx, 500*time.Millisecond)
			fetches := cl.PollFetches(pollCtx)
			pollCancel()
			if ctx.Err() != nil {
				fail("consumed %d of %d records before the deadline", got, *count)
			}
			var errs []string
			fetches.EachError(func(t string, p int32, err error) {
				if errors.Is(err, context.DeadlineExceeded) {
					return // the short poll's own deadline (the overall one was checked above)
				}
				errs = append(errs, fmt.Sprintf("%s[%d]: %v", t, p, err))
			})
			if len(errs) > 0 {
				fail("fetch errors: %s", strings.Join(errs, "; "))
			}
			var done []*kgo.Record
			fetches.EachRecord(func(r *kgo.Record) {
				if got >= *count {
					return
				}
				hs := make([][2]any, 0, len(r.Headers))
				for _, h := range r.Headers {
					hs = append(hs, [2]any{h.Key, hexOrNull(h.Value)})
				}
				line, err := json.Marshal(map[string]any{"p": r.Partition, "o": r.Offset, "k": hexOrNull(r.Key), "v": hexOrNull(r.Value), "h": hs})
				if err != nil {
					fail("json: %v", err)
				}
				fmt.Println(string(line))
				done = append(done, r)
				got++
			})
			if len(done) > 0 {
				if err := cl.CommitRecords(ctx, done...); err != nil {
					fail("commit: %v", err)
				}
			}
			cl.AllowRebalance()
		}
		adm := kadm.NewClient(cl)
		if *serverSide {
			describeConsumerGroup(ctx, adm, *group)
		}
		offs, err := adm.FetchOffsets(ctx, *group)
		if err != nil {
			fail("fetch offsets: %v", err)
		}
		var lines []string
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Err != nil {
				fail("fetch offset %s[%d]: %v", o.Topic, o.Partition, o.Err)
			}
			lines = append(lines, fmt.Sprintf("#committed %d %d", o.Partition, o.At))
		})
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Println(l)
		}
		cl.Close() // leaves the group

	case "admin":
		if op == "" {
			fail("admin needs an operation")
		}
		cl, err := kgo.NewClient(base...)
		if err != nil {
			fail("new client: %v", err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		switch op {
		case "create-topic":
			cfg := map[string]*string{}
			if *sets != "" {
				for _, kv := range strings.Split(*sets, ",") {
					k, v, _ := strings.Cut(kv, "=")
					cfg[k] = &v
				}
			}
			resps, err := adm.CreateTopics(ctx, int32(*partitions), -1, cfg, *topic)
			if err != nil {
				fail("create topics: %v", err)
			}
			for _, r := range resps {
				if r.Err != nil {
					fail("create topic %s: %v (%s)", r.Topic, r.Err, r.ErrMessage)
				}
				fmt.Printf("#created %s partitions %d rf %d id %s\n", r.Topic, r.NumPartitions, r.ReplicationFactor, r.ID)
			}
		case "list-offsets":
			for _, which := range []string{"start", "end"} {
				var lo kadm.ListedOffsets
				var err error
				if which == "start" {
					lo, err = adm.ListStartOffsets(ctx, *topic)
				} else {
					lo, err = adm.ListEndOffsets(ctx, *topic)
				}
				if err != nil {
					fail("list %s offsets: %v", which, err)
				}
				var lines []string
				lo.Each(func(o kadm.ListedOffset) {
					if o.Err != nil {
						fail("list %s offset %s[%d]: %v", which, o.Topic, o.Partition, o.Err)
					}
					lines = append(lines, fmt.Sprintf("#%s %d %d", which, o.Partition, o.Offset))
				})
				sort.Strings(lines)
				for _, l := range lines {
					fmt.Println(l)
				}
			}
		case "describe-group":
			dg, err := adm.DescribeGroups(ctx, *group)
			if err != nil {
				fail("describe groups: %v", err)
			}
			g, ok := dg[*group]
			if !ok {
				fail("group %s not described", *group)
			}
			if g.Err != nil {
				fail("describe group %s: %v", *group, g.Err)
			}
			fmt.Printf("#group %s state %s members %d protocol %s\n", g.Group, g.State, len(g.Members), g.Protocol)
		case "metadata":
			md, err := adm.Metadata(ctx)
			if err != nil {
				fail("metadata: %v", err)
			}
			fmt.Printf("#cluster %s controller %d brokers %d\n", md.Cluster, md.Controller, len(md.Brokers))
			for _, b := range md.Brokers {
				fmt.Printf("#broker %d %s:%d\n", b.NodeID, b.Host, b.Port)
			}
		case "api-versions":
			vs, err := adm.ApiVersions(ctx)
			if err != nil {
				fail("api versions: %v", err)
			}
			for _, bv := range vs {
				if bv.Err != nil {
					fail("api versions from %d: %v", bv.NodeID, bv.Err)
				}
				bv.EachKeySorted(func(key, minV, maxV int16) {
					fmt.Printf("#api %d %d %d\n", key, minV, maxV)
				})
			}
		case "delete-topic":
			resps, err := adm.DeleteTopics(ctx, *topic)
			if err != nil {
				fail("delete topics: %v", err)
			}
			for _, r := range resps {
				if r.Err != nil {
					fail("delete topic %s: %v", r.Topic, r.Err)
				}
				fmt.Printf("#deleted %s\n", r.Topic)
			}
		default:
			fail("unknown admin operation %q", op)
		}

	default:
		fail("unknown subcommand %q", os.Args[1])
	}
}
