package refdata

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/decode"
	"github.com/sluice-etl/sluice/pkg/gen"
)

func TestParseRateKey(t *testing.T) {
	tests := []struct {
		key    string
		ok     bool
		cur    string
		millis int64
	}{
		{"EUR@1767225600000", true, "EUR", 1767225600000},
		{"EUR@0", true, "EUR", 0},
		{"EUR@-1000", true, "EUR", -1000},
		{"X@Y@5", true, "X@Y", 5}, // the last @ separates
		{"EUR@", false, "", 0},
		{"@5", false, "", 0},
		{"EUR", false, "", 0},
		{"", false, "", 0},
		{"EUR@5x", false, "", 0},
		{"EUR@+5", false, "", 0},
		{"EUR@05", false, "", 0},
		{"EUR@-0", false, "", 0},
		{"EUR@99999999999999999999", false, "", 0},
	}
	for _, tt := range tests {
		cur, ms, ok := parseRateKey([]byte(tt.key))
		if ok != tt.ok || cur != tt.cur || ms != tt.millis {
			t.Errorf("parseRateKey(%q) = %q, %d, %v; want %q, %d, %v", tt.key, cur, ms, ok, tt.cur, tt.millis, tt.ok)
		}
	}
}

func newApplier(t testing.TB, store *Store) *applier {
	t.Helper()
	load := func(path string) decode.Decoder {
		s, err := decode.LoadSchema(path)
		if err != nil {
			t.Fatal(err)
		}
		d, err := decode.NewFromSchema(decode.FormatAvro, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return &applier{
		store:          store,
		customersTopic: customersTopic,
		fxRatesTopic:   fxRatesTopic,
		customers:      load(schemaDir + "/customer.avsc"),
		fxRates:        load(schemaDir + "/fx_rate.avsc"),
	}
}

func TestApplyIgnoresOtherTopics(t *testing.T) {
	store := NewStore("USD")
	a := newApplier(t, store)
	if b := a.apply(&kgo.Record{Topic: "orders", Key: []byte("C-1"), Value: []byte("x")}); b != nil {
		t.Fatalf("record of another topic reported bad: %v", b)
	}
	if c, r := store.Counts(); c != 0 || r != 0 {
		t.Fatalf("store changed: %d %d", c, r)
	}
}

// FuzzApply feeds arbitrary keys and values to both reference topics: the
// applier must never panic, and whatever it accepts must be in the Store
// under the key it came with.
func FuzzApply(f *testing.F) {
	codecs, err := gen.LoadCodecs(schemaDir)
	if err != nil {
		f.Fatal(err)
	}
	k, v, err := codecs.EncodeCustomer(customer("C-00000001", "Ada Lovelace", "GB", gen.SegmentVIP))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(false, k, v)
	k, v, err = codecs.EncodeFxRate(rate("EUR", "1.08123456", 1767225600000))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(true, k, v)
	f.Add(true, []byte("EUR@5"), []byte(nil))
	f.Add(false, []byte("C-1"), []byte{0x02})
	f.Fuzz(func(t *testing.T, fx bool, key, value []byte) {
		// No base currency: RateAt must answer from the history alone.
		store := NewStore("")
		a := newApplier(t, store)
		topic := customersTopic
		if fx {
			topic = fxRatesTopic
		}
		b := a.apply(&kgo.Record{Topic: topic, Key: key, Value: value})
		if b != nil {
			if !errors.Is(b, errBadRecord) || b.kind == "" {
				t.Fatalf("bad record error %v lacks its kind or sentinel", b)
			}
			if c, r := store.Counts(); c != 0 || r != 0 {
				t.Fatalf("bad record changed the store: %d customers, %d rates", c, r)
			}
			return
		}
		if value == nil {
			return // a delete on an empty store
		}
		if fx {
			cur, millis, _ := parseRateKey(key)
			if r, ok := store.RateAt(cur, ms(millis)); !ok || r.EffectiveFrom != millis || r.Rate.Sign() <= 0 {
				t.Fatalf("accepted rate %q not in the store: %+v %v", key, r, ok)
			}
			return
		}
		if _, ok := store.Customer(string(key)); !ok {
			t.Fatalf("accepted customer %q not in the store", key)
		}
	})
}
