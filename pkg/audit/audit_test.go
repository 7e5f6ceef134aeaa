package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/dlq"
	"github.com/sluice-etl/sluice/pkg/record"
)

// kafkaWorld is a kfake cluster with a 2-partition source topic of 100
// records each, a 3-partition dead-letter topic, and a plain client.
func kafkaWorld(t *testing.T) (*kgo.Client, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "orders"), kfake.SeedTopics(3, "sluice-dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.RecordPartitioner(dlq.Partitioner("sluice-dlq")), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx := context.Background()
	for p := range int32(2) {
		var rs []*kgo.Record
		for range 100 {
			rs = append(rs, &kgo.Record{Topic: "orders", Partition: p, Value: []byte("v")})
		}
		mcl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		if err := mcl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		mcl.Close()
	}
	return cl, kadm.NewClient(cl)
}

func letter(p int32, offset int64) *kgo.Record {
	return dlq.Letter("sluice-dlq", "orders", &record.Item{
		Rec:    &kgo.Record{Topic: "orders", Partition: p, Offset: offset, Value: []byte("bad")},
		Failed: &record.Failure{Stage: record.StageDecode, Reason: "test"},
	})
}

// Run reads the log starts, committed offsets, dead letters and high
// watermarks from Kafka and puts each partition's verdict together.
func TestRunKafka(t *testing.T) {
	cl, adm := kafkaWorld(t)
	ctx := context.Background()
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 100})
	os.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 90})
	if r, err := adm.CommitOffsets(ctx, "g", os); err != nil || r.Error() != nil {
		t.Fatalf("commit: %v %v", err, r.Error())
	}
	unattributed := &kgo.Record{Topic: "sluice-dlq", Value: []byte("no headers")}
	foreign := letter(0, 3)
	foreign.Headers[3].Value = []byte("payments")
	if err := cl.ProduceSync(ctx, letter(0, 10), letter(0, 10), letter(1, 5), letter(1, 92), unattributed, foreign).FirstErr(); err != nil {
		t.Fatal(err)
	}

	f := newFake()
	f.put(0, 0, 99, 1)
	f.del(0, 10, 10)
	f.put(1, 0, 95, 1) // 90..95 pending
	f.del(1, 5, 5)
	f.put(1, 7, 7, 1)
	rep, err := Run(ctx, Options{
		Pipelines: []Pipeline{{Name: "orders", Topic: "orders", TableName: "orders", Table: f}},
		Group:     "g", DLQTopic: "sluice-dlq", Kafka: cl,
		BucketWidth: 16, WindowBuckets: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Clean || rep.Defective != 2 || len(rep.Partitions) != 2 || rep.UnattributedLetters != 1 || rep.ForeignLetters != 1 {
		t.Fatalf("report %+v", rep)
	}
	p0, p1 := rep.Partitions[0], rep.Partitions[1]
	if p0.Partition != 0 || !reflect.DeepEqual(p0.Defects, []string{DefectDuplicateLetters}) || p0.DeadLetters != 1 || p0.Rows != 99 || p0.Lag != 0 {
		t.Fatalf("partition 0: %+v", p0)
	}
	if !reflect.DeepEqual(p1.Defects, []string{DefectDuplicates}) || !reflect.DeepEqual(p1.Duplicates.List, []Range{{7, 7, 1}}) {
		t.Fatalf("partition 1: defects %v duplicates %+v", p1.Defects, p1.Duplicates.List)
	}
	if p1.Committed != 90 || p1.HighWatermark != 100 || p1.Lag != 10 || p1.Pending.Rows != 6 || p1.PendingLetters != 1 {
		t.Fatalf("partition 1: %+v", p1)
	}

	var text bytes.Buffer
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"orders[1] duplicates: 1 extra row at 7",
		"orders[0] dead-lettered more than once: 1 offset (1 extra letter) at 10",
		"orders[1] pending (loaded, commit pending): 6 rows at 90-95, 1 dead letter",
		"1 dead letter without readable source headers",
		"audit: 2 partitions, group g: 2 defective",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	parts := back["partitions"].([]any)
	gaps := parts[0].(map[string]any)["accepted_gaps"]
	if g, ok := gaps.([]any); !ok || len(g) != 0 {
		t.Fatalf("accepted_gaps in JSON is %#v, want []", gaps)
	}
}

func TestRunCleanNoGroupNoDLQ(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rep, err := Run(context.Background(), Options{
		Pipelines: []Pipeline{{Name: "orders", Topic: "orders", Table: newFake()}},
		Group:     "nobody", DLQTopic: "missing-dlq", Kafka: cl,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean || !rep.DLQMissing || len(rep.Partitions) != 1 || rep.Partitions[0].Committed != -1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestRunNoTopic(t *testing.T) {
	cl, _ := kafkaWorld(t)
	_, err := Run(context.Background(), Options{
		Pipelines: []Pipeline{{Name: "orders", Topic: "orders", Table: newFake()}, {Name: "x", Topic: "nope", Table: newFake()}},
		Group:     "g", DLQTopic: "sluice-dlq", Kafka: cl,
	})
	var nt *NoTopicError
	if !errors.As(err, &nt) || nt.Pipeline != "x" || nt.Topic != "nope" {
		t.Fatalf("err = %v, want a NoTopicError for x/nope", err)
	}
}
