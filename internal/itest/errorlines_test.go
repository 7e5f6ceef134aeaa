package itest

import (
	"slices"
	"testing"
)

func TestUnlabelledErrors(t *testing.T) {
	log := `time=2026-12-07T01:00:00Z level=INFO msg="partitions assigned" stage=engine
time=2026-12-07T01:00:01Z level=ERROR msg="insert failed" stage=sink pipeline=orders err="EOF" error_type=network
time=2026-12-07T01:00:02Z level=ERROR msg="no stage" err="EOF" error_type=network
time=2026-12-07T01:00:03Z level=ERROR msg="no type" stage=kafka err="x"
time=2026-12-07T01:00:04Z level=ERROR msg="grouped" stage=kafka g.error_type=other
time=2026-12-07T01:00:05Z level=WARN msg="a warning needs neither" err="x"
time=2026-12-07T01:00:06Z level=ERROR msg="the word stage=x in the message" error_type=other`
	got, n := UnlabelledErrors(log)
	if n != 5 {
		t.Errorf("%d ERROR records counted, want 5", n)
	}
	want := []string{
		`time=2026-12-07T01:00:02Z level=ERROR msg="no stage" err="EOF" error_type=network`,
		`time=2026-12-07T01:00:03Z level=ERROR msg="no type" stage=kafka err="x"`,
	}
	// The last line has stage= only inside its quoted message; a text
	// match cannot tell, so it passes: the check errs on the lenient side.
	if !slices.Equal(got, want) {
		t.Fatalf("UnlabelledErrors =\n%q\nwant\n%q", got, want)
	}
}
