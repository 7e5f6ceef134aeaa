package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/internal/gentest"
	"github.com/sluice-etl/sluice/internal/srtest"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
)

// consume reads n records from the topics of c, from the start.
func consume(t *testing.T, c *kfake.Cluster, n int, topics ...string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(recs), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// TestEveryFormat runs sluice-gen with each --format and reads the topics
// with the decoders Sluice builds for that format: every order, payment
// and shipment the generator made is there, equal, under its key; the
// reference data is plain Avro whatever the format.
func TestEveryFormat(t *testing.T) {
	const orders, customers, seed = 60, 20, 11
	for _, format := range gen.Formats() {
		t.Run(string(format), func(t *testing.T) {
			c, adm := newCluster(t)
			args := []string{"--brokers", c.ListenAddrs()[0], "--count", "60", "--customers", "20", "--seed", "11",
				"--schemas", schemas, "--partitions", "2", "--format", string(format)}
			var reg decode.SchemaFetcher
			var sr *srtest.Registry
			if format == gen.FormatAvroConfluent {
				sr = srtest.New(t)
				reg = sr
				args = append(args, "--registry", sr.URL())
			}
			r := runArgs(t, nil, false, args...)
			if r.code != exitOK {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "format "+string(format)) {
				t.Errorf("summary does not name the format:\n%s", r.stdout)
			}
			if sr != nil {
				subjects := sr.Subjects()
				for _, s := range []string{"orders-value", "payments-value", "shipments-value"} {
					if len(subjects[s]) != 1 {
						t.Errorf("subject %s holds %v, want one id", s, subjects[s])
					}
				}
				if len(subjects) != 3 || !strings.Contains(r.stderr, "registered schemas: orders-value id") {
					t.Errorf("subjects %v; stderr %s", subjects, r.stderr)
				}
			}

			g, err := gen.New(gen.Options{Seed: seed, Customers: customers, SchemaDir: schemas})
			if err != nil {
				t.Fatal(err)
			}
			wantOrders := map[string]gen.Order{}
			wantPayments := map[string]gen.Payment{}
			wantShipments := map[string]gen.Shipment{} // by id and status
			for _, o := range g.Orders(0, orders) {
				wantOrders[o.OrderID] = o
				for _, p := range g.Payments(o) {
					wantPayments[p.PaymentID] = p
				}
				for _, s := range g.Shipments(o) {
					wantShipments[s.ShipmentID+"/"+string(s.Status)] = s
				}
			}
			n := len(wantOrders) + len(wantPayments) + len(wantShipments)
			if got := endOffsets(t, adm, "orders", "payments", "shipments"); got["orders"]+got["payments"]+got["shipments"] != int64(n) {
				t.Fatalf("event topics hold %v, want %d records in all", got, n)
			}

			decs, err := gentest.NewDecoders(format, schemas, reg)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range consume(t, c, n, "orders", "payments", "shipments") {
				switch rec.Topic {
				case "orders":
					o, err := decs.Order(rec.Value)
					if err != nil {
						t.Fatalf("orders offset %d: %v", rec.Offset, err)
					}
					if want, ok := wantOrders[o.OrderID]; !ok || !gentest.SameOrder(o, want) || string(rec.Key) != want.CustomerID {
						t.Fatalf("order %+v (key %q), want %+v", o, rec.Key, want)
					}
					delete(wantOrders, o.OrderID)
				case "payments":
					p, err := decs.Payment(rec.Value)
					if err != nil {
						t.Fatalf("payments offset %d: %v", rec.Offset, err)
					}
					if want, ok := wantPayments[p.PaymentID]; !ok || !gentest.SamePayment(p, want) || string(rec.Key) != want.OrderID {
						t.Fatalf("payment %+v (key %q), want %+v", p, rec.Key, want)
					}
					delete(wantPayments, p.PaymentID)
				case "shipments":
					s, err := decs.Shipment(rec.Value)
					if err != nil {
						t.Fatalf("shipments offset %d: %v", rec.Offset, err)
					}
					id := s.ShipmentID + "/" + string(s.Status)
					if want, ok := wantShipments[id]; !ok || !gentest.SameShipment(s, want) || string(rec.Key) != want.OrderID {
						t.Fatalf("shipment %+v (key %q), want %+v", s, rec.Key, want)
					}
					delete(wantShipments, id)
				}
			}
			if len(wantOrders)+len(wantPayments)+len(wantShipments) != 0 {
				t.Errorf("not read back: %d orders, %d payments, %d shipments", len(wantOrders), len(wantPayments), len(wantShipments))
			}

			// Reference data: plain Avro, as Sluice's reference loader reads it.
			codecs := g.Codecs()
			for _, rec := range consume(t, c, customers+len(g.FxRates()), "customers", "fx-rates") {
				var err error
				if rec.Topic == "customers" {
					_, err = codecs.DecodeCustomer(rec.Value)
				} else {
					_, err = codecs.DecodeFxRate(rec.Value)
				}
				if err != nil {
					t.Fatalf("%s offset %d is not plain Avro: %v", rec.Topic, rec.Offset, err)
				}
			}
		})
	}
}

func TestFormatUsageErrors(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--format", "protobuf"}, `--format: "protobuf" is not one of avro, avro-confluent, json`},
		{nil, []string{"--format", "AVRO"}, "--format"},
		{nil, []string{"--format", "avro-confluent"}, "--registry: format avro-confluent needs"},
		{nil, []string{"--format", "json", "--registry", "http://127.0.0.1:8081"}, "--registry is only used with --format avro-confluent"},
		{nil, []string{"--registry", "http://127.0.0.1:8081"}, "--registry is only used with"},
		{nil, []string{"--format", "avro-confluent", "--registry", "127.0.0.1:8081"}, "--registry: registry url"},
		{nil, []string{"--format", "avro-confluent", "--registry", "ftp://u:hunter2@host"}, "--registry"},
		{map[string]string{registryEnv: "not a url"}, []string{"--format", "avro-confluent"}, registryEnv + ": registry url"},
	} {
		r := runArgs(t, c.env, false, append([]string{"--schemas", schemas, "--brokers", "127.0.0.1:1"}, c.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want exit %d mentioning %q", c.env, c.args, r.code, r.stderr, exitUsage, c.want)
		}
		if strings.Contains(r.stderr, "hunter2") {
			t.Errorf("%v: the password shows: %s", c.args, r.stderr)
		}
	}

	// The environment's registry URL is not a mistake with another format,
	// and the flag wins over it.
	c, _ := newCluster(t)
	r := runArgs(t, map[string]string{registryEnv: "http://127.0.0.1:1"}, false, "--brokers", c.ListenAddrs()[0],
		"--count", "3", "--customers", "3", "--schemas", schemas, "--format", "json", "--quiet")
	if r.code != exitOK {
		t.Errorf("json with %s set: exit %d: %s", registryEnv, r.code, r.stderr)
	}
	sr := srtest.New(t)
	r = runArgs(t, map[string]string{registryEnv: "http://127.0.0.1:1"}, false, "--brokers", c.ListenAddrs()[0],
		"--count", "3", "--schemas", schemas, "--format", "avro-confluent", "--registry", sr.URL(), "--quiet", "--no-reference")
	if r.code != exitOK || sr.Posts() != 3 {
		t.Errorf("--registry over %s: exit %d, %d registrations: %s", registryEnv, r.code, sr.Posts(), r.stderr)
	}
}

// TestRegistryFailures: a registry that cannot be reached or refuses the
// schemas is a runtime failure (exit 1) naming the registry, before any
// event is produced.
func TestRegistryFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()

	refusing := srtest.New(t)
	refusing.Refuse("payments-value", http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema")

	for _, c := range []struct {
		url  string
		want []string
	}{
		{dead, []string{"cannot register the event schemas with the schema registry at " + dead, "orders-value", "connection refused"}},
		{refusing.URL(), []string{"schema registry at " + refusing.URL(), "payments-value", "409", "incompatible"}},
	} {
		cl, adm := newCluster(t)
		r := runArgs(t, map[string]string{registryEnv: c.url}, false, "--brokers", cl.ListenAddrs()[0],
			"--count", "5", "--schemas", schemas, "--format", "avro-confluent", "--timeout", "2s")
		if r.code != exitFailure {
			t.Errorf("%s: exit %d, want %d: %s", c.url, r.code, exitFailure, r.stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q: %s", c.url, w, r.stderr)
			}
		}
		topics, err := adm.ListTopics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(topics) != 0 {
			t.Errorf("%s: topics %v created before the schemas were registered", c.url, topics.Names())
		}
	}
}
