package service

import (
	"errors"
	"testing"
)

// TestReadinessNamesEachPart: /readyz's reason lists what is not ready,
// the engine's and the reference follower's, and Ready agrees.
func TestReadinessNamesEachPart(t *testing.T) {
	s := &Service{}
	if err := s.readiness(); err == nil || err.Error() != "not consuming, or a partition is failing or stalled" {
		t.Fatalf("without an engine: %v", err)
	}
	follower := errors.New("reference data: fx-rates not read up to its high watermark for 31s (4 records behind at the last listing)")
	s.refHealth = func() error { return follower }
	want := "not consuming, or a partition is failing or stalled; " + follower.Error()
	if err := s.readiness(); err == nil || err.Error() != want {
		t.Fatalf("readiness = %v, want %q", err, want)
	}
	if s.Ready() {
		t.Fatal("Ready while not ready")
	}
}
