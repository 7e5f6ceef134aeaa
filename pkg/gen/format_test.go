package gen_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-etl/sluice/internal/gentest"
	"github.com/sluice-etl/sluice/internal/srtest"
	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
)

const schemaDir = "../../schemas/avro"

// encoderFor returns the EventEncoder of format and the registry Sluice's
// decoder must read writer schemas from (avro-confluent only).
func encoderFor(t *testing.T, g *gen.Generator, format gen.Format, topics gen.Topics) (gen.EventEncoder, decode.SchemaFetcher) {
	t.Helper()
	switch format {
	case gen.FormatAvro:
		return g.Codecs(), nil
	case gen.FormatJSON:
		return gen.JSONEncoder{}, nil
	case gen.FormatAvroConfluent:
		reg := srtest.New(t)
		rc, err := gen.NewRegistryClient(reg.URL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := g.Codecs().RegisterEventSchemas(context.Background(), rc, topics)
		if err != nil {
			t.Fatal(err)
		}
		return gen.NewConfluentEncoder(g.Codecs(), ids), reg
	}
	t.Fatalf("no encoder for %q", format)
	return nil, nil
}

// TestEveryFormatDecodesBack encodes orders, payments and shipments in each
// format and reads them with the decoders Sluice builds for that format:
// every event comes back equal, under the topic's key.
func TestEveryFormatDecodesBack(t *testing.T) {
	for _, format := range gen.Formats() {
		t.Run(string(format), func(t *testing.T) {
			g, err := gen.New(gen.Options{Seed: 3, SchemaDir: schemaDir, Customers: 50})
			if err != nil {
				t.Fatal(err)
			}
			enc, reg := encoderFor(t, g, format, gen.Topics{})
			decs, err := gentest.NewDecoders(format, schemaDir, reg)
			if err != nil {
				t.Fatal(err)
			}
			var coupons, failures, tracked, untracked int
			for _, o := range g.Orders(0, 300) {
				k, v, err := enc.EncodeOrder(o)
				if err != nil {
					t.Fatal(err)
				}
				back, err := decs.Order(v)
				if err != nil {
					t.Fatalf("order %s: %v", o.OrderID, err)
				}
				if string(k) != o.CustomerID || !gentest.SameOrder(back, o) {
					t.Fatalf("order key %q value %+v, want key %q value %+v", k, back, o.CustomerID, o)
				}
				if o.Coupon != nil {
					coupons++
				}
				for _, p := range g.Payments(o) {
					k, v, err := enc.EncodePayment(p)
					if err != nil {
						t.Fatal(err)
					}
					back, err := decs.Payment(v)
					if err != nil {
						t.Fatalf("payment %s: %v", p.PaymentID, err)
					}
					if string(k) != p.OrderID || !gentest.SamePayment(back, p) {
						t.Fatalf("payment key %q value %+v, want key %q value %+v", k, back, p.OrderID, p)
					}
					if p.FailureReason != nil {
						failures++
					}
				}
				for _, s := range g.Shipments(o) {
					k, v, err := enc.EncodeShipment(s)
					if err != nil {
						t.Fatal(err)
					}
					back, err := decs.Shipment(v)
					if err != nil {
						t.Fatalf("shipment %s: %v", s.ShipmentID, err)
					}
					if string(k) != s.OrderID || !gentest.SameShipment(back, s) {
						t.Fatalf("shipment key %q value %+v, want key %q value %+v", k, back, s.OrderID, s)
					}
					if s.TrackingNumber != nil {
						tracked++
					} else {
						untracked++
					}
				}
			}
			// The optional fields were exercised both ways.
			if coupons == 0 || coupons == 300 || failures == 0 || tracked == 0 || untracked == 0 {
				t.Errorf("sample lacks a case: %d coupons of 300, %d failure reasons, %d tracked and %d untracked shipments",
					coupons, failures, tracked, untracked)
			}
		})
	}
}

// TestFormatsDiffer guards against an encoder silently writing another
// format: plain Avro is the body of the Confluent frame, JSON is neither.
func TestFormatsDiffer(t *testing.T) {
	g, err := gen.New(gen.Options{Seed: 3, SchemaDir: schemaDir})
	if err != nil {
		t.Fatal(err)
	}
	o := g.Order(7)
	_, plain, err := g.Codecs().EncodeOrder(o)
	if err != nil {
		t.Fatal(err)
	}
	ids := gen.SchemaIDs{Order: 0x01020304, Payment: 9, Shipment: 10}
	_, framed, err := gen.NewConfluentEncoder(g.Codecs(), ids).EncodeOrder(o)
	if err != nil {
		t.Fatal(err)
	}
	if framed[0] != 0 || binary.BigEndian.Uint32(framed[1:5]) != 0x01020304 || string(framed[5:]) != string(plain) {
		t.Errorf("confluent value % x...; want 00 01 02 03 04 then the plain Avro body", framed[:min(len(framed), 12)])
	}
	_, js, err := gen.JSONEncoder{}.EncodeOrder(o)
	if err != nil {
		t.Fatal(err)
	}
	if js[0] != '{' || !strings.Contains(string(js), `"order_id":"`+o.OrderID+`"`) {
		t.Errorf("json value %s", js)
	}
}

func TestRegisterEventSchemas(t *testing.T) {
	g, err := gen.New(gen.Options{Seed: 1, SchemaDir: schemaDir})
	if err != nil {
		t.Fatal(err)
	}
	reg := srtest.New(t)
	reg.RequireBasicAuth("gen", "s3cret")
	topics := gen.Topics{Orders: "o", Payments: "p", Shipments: "s"}

	// Credentials in the URL are sent as basic auth; without them the
	// registry's 401 is the error, naming the subject.
	rc, err := gen.NewRegistryClient(reg.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Codecs().RegisterEventSchemas(context.Background(), rc, topics)
	var re *gen.RegistryError
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "o-value") {
		t.Fatalf("without credentials: %v, want a 401 RegistryError naming o-value", err)
	}
	authed := strings.Replace(reg.URL(), "http://", "http://gen:s3cret@", 1) + "/"
	rc, err = gen.NewRegistryClient(authed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rc.URL(), "s3cret") {
		t.Errorf("URL() shows the password: %s", rc.URL())
	}
	ids, err := g.Codecs().RegisterEventSchemas(context.Background(), rc, topics)
	if err != nil {
		t.Fatal(err)
	}
	if ids.Order <= 0 || ids.Payment <= 0 || ids.Shipment <= 0 || ids.Order == ids.Payment || ids.Payment == ids.Shipment {
		t.Fatalf("ids %+v: want three distinct positive ids", ids)
	}
	subjects := reg.Subjects()
	for subject, id := range map[string]int32{"o-value": ids.Order, "p-value": ids.Payment, "s-value": ids.Shipment} {
		if !slices.Equal(subjects[subject], []int32{id}) {
			t.Errorf("subject %s holds %v, want [%d]", subject, subjects[subject], id)
		}
	}
	// The registered text is the .avsc: what a consumer fetches by id
	// compiles to Sluice's reader of the same schema.
	text, err := reg.SchemaByID(context.Background(), ids.Payment)
	if err != nil || !strings.Contains(text, `"name": "Payment"`) {
		t.Errorf("schema %d: %v %.80s", ids.Payment, err, text)
	}

	// Registering again (a second sluice-gen run) gives the same ids.
	again, err := g.Codecs().RegisterEventSchemas(context.Background(), rc, topics)
	if err != nil || again != ids {
		t.Errorf("second registration: %+v, %v; want %+v", again, err, ids)
	}

	// A refusal carries the registry's code and message.
	reg.Refuse("p-value", http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema")
	_, err = g.Codecs().RegisterEventSchemas(context.Background(), rc, topics)
	if !errors.As(err, &re) || re.Code != 409 || !strings.Contains(err.Error(), "p-value") || !strings.Contains(err.Error(), "incompatible") {
		t.Errorf("refused: %v", err)
	}
}

func TestRegistryClientRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "localhost:8081", "ftp://host", "http://", "://x"} {
		if _, err := gen.NewRegistryClient(u, nil); err == nil {
			t.Errorf("NewRegistryClient(%q) accepted", u)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range gen.Formats() {
		if got, err := gen.ParseFormat(string(f)); err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %q, %v", f, got, err)
		}
	}
	if _, err := gen.ParseFormat("protobuf"); err == nil || !strings.Contains(err.Error(), "avro, avro-confluent, json") {
		t.Errorf("ParseFormat(protobuf): %v", err)
	}
}
