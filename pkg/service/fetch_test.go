package service

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-etl/sluice/pkg/config"
)

// Every inflight_bytes the config accepts gives fetch limits the Kafka
// client starts with: a quarter of 512MiB was above its 100 MiB read limit.
func TestFetchLimitsStartTheClientAtAnyBudget(t *testing.T) {
	for _, in := range []config.ByteSize{16 << 20, 64 << 20, 512 << 20, 4 << 30} {
		cfg := &config.Config{InflightBytes: in}
		cfg.Kafka.FetchMaxWait = 500 * time.Millisecond
		cl, err := kgo.NewClient(append(fetchOpts(cfg), kgo.SeedBrokers("127.0.0.1:1"))...)
		if err != nil {
			t.Fatalf("inflight_bytes %d: %v", in, err)
		}
		cl.Close()
	}
}
