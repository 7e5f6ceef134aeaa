package pipeline

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want errClass
	}{
		{"network", errors.New("read tcp: connection reset by peer"), classRetry},
		{"timeout", fmt.Errorf("insert: %w", errors.New("context deadline exceeded")), classRetry},
		{"type mismatch", fmt.Errorf("sink: %w", &clickhouse.Exception{Code: 53, Message: "Type mismatch"}), classBadRecord},
		{"too many partitions", &clickhouse.Exception{Code: 252, Message: "Too many partitions for single INSERT block (more than 100)"}, classSplit},
		{"too many parts", &clickhouse.Exception{Code: 252, Message: "Too many parts (300). Merges are processing significantly slower than inserts"}, classParts},
		{"memory", fmt.Errorf("sink: %w", &clickhouse.Exception{Code: 241, Message: "Memory limit (for query) exceeded"}), classMemory},
		{"expelled", fmt.Errorf("%w: %w", errFenced, kerr.UnknownMemberID), classFenced},
		{"identity changed", fmt.Errorf("%w: %w", errFenced, errIdentityChanged), classFenced},
		{"a commit refused for another reason", kerr.CoordinatorNotAvailable, classRetry},
	}
	for _, c := range cases {
		if got := classify(c.err); got != c.want {
			t.Errorf("%s: %v is %s, want %s", c.name, c.err, got, c.want)
		}
	}
}
