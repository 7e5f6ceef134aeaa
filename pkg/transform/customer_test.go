package transform

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/record"
	"github.com/sluice-etl/sluice/pkg/refdata"
)

func TestCustomerJoin(t *testing.T) {
	store := refdata.NewStore("USD")
	store.PutCustomer("c-1", refdata.Customer{Name: "Ada Lovelace", Country: "GB", Segment: "VIP"})
	store.PutCustomer("c-2", refdata.Customer{Name: "Old Name", Country: "FR", Segment: "CONSUMER"})
	store.PutCustomer("c-2", refdata.Customer{Name: "Grace Hopper", Country: "US", Segment: "BUSINESS"}) // an update
	store.PutCustomer("c-3", refdata.Customer{Name: "Gone", Country: "DE", Segment: "CONSUMER"})
	store.DeleteCustomer("c-3") // a tombstone
	tr := build(t, []string{"customer"}, Env{Schema: loadSchema(t, "order"), Store: store})[0]

	tests := []struct {
		name                    string
		id                      any
		wantName, wantCountry   any
		wantSegment, wantMarker any
	}{
		{"hit", "c-1", "Ada Lovelace", "GB", "VIP", true},
		{"hit, latest version", "c-2", "Grace Hopper", "US", "BUSINESS", true},
		{"miss", "c-404", nil, nil, nil, false},
		{"tombstoned is a miss", "c-3", nil, nil, nil, false},
		{"null id is a miss", nil, nil, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := record.Row{"order_id": "o", "customer_id": tt.id}
			b := batchOf(0, row)
			apply(t, b, tr)
			if b.Items[0].Failed != nil {
				t.Fatalf("failed: %+v", b.Items[0].Failed)
			}
			for col, want := range map[string]any{
				"customer_name": tt.wantName, "customer_country": tt.wantCountry,
				"customer_segment": tt.wantSegment, customerFound: tt.wantMarker,
			} {
				got, present := row[col]
				if !present || got != want {
					t.Errorf("%s = %#v (present %v), want %#v", col, got, present, want)
				}
			}
		})
	}
}

func TestCustomerSkipsFailedItems(t *testing.T) {
	store := refdata.NewStore("USD")
	store.PutCustomer("c-1", refdata.Customer{Name: "A", Country: "GB", Segment: "VIP"})
	tr := build(t, []string{"customer"}, Env{Schema: loadSchema(t, "order"), Store: store})[0]
	b := batchOf(0, record.Row{"customer_id": "c-1"}, record.Row{"customer_id": "c-1"})
	b.Items[0].Fail(record.StageTransform, "currency: no FX rate")
	apply(t, b, tr)
	if len(b.Items[0].Row) != 1 {
		t.Errorf("failed row was joined: %v", b.Items[0].Row)
	}
	if b.Items[1].Row["customer_name"] != "A" {
		t.Errorf("good row not joined: %v", b.Items[1].Row)
	}
}

func TestCustomerBuild(t *testing.T) {
	order, shipment := loadSchema(t, "order"), loadSchema(t, "shipment")
	store := refdata.NewStore("USD")
	tests := []struct {
		name string
		env  Env
		err  string
	}{
		{"orders", Env{Schema: order, Store: store}, ""},
		{"configured key", Env{Schema: order, Store: store, Fields: config.Fields{CustomerID: "order_id"}}, ""},
		{"no store", Env{Schema: order}, "reference data"},
		{"no schema", Env{Store: store}, "schema"},
		{"no customer_id", Env{Schema: shipment, Store: store}, "no field customer_id"},
		{"key not a string", Env{Schema: order, Store: store, Fields: config.Fields{CustomerID: "created_at"}}, "want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := Build([]string{"customer"}, tt.env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ts[0].Outputs(), []string{"customer_name", "customer_country", "customer_segment"}; !slices.Equal(got, want) {
				t.Errorf("Outputs() = %v, want %v", got, want)
			}
		})
	}
}
