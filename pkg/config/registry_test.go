package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-etl/sluice/pkg/config"
)

func TestSchemaRegistryDefaults(t *testing.T) {
	cfg, err := config.Load(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	if want := (config.SchemaRegistry{URL: "", Timeout: 5 * time.Second}); cfg.SchemaRegistry != want {
		t.Errorf("schema_registry = %+v, want %+v", cfg.SchemaRegistry, want)
	}
	if cfg.UsesRegistry() {
		t.Error("UsesRegistry() = true for the demo config (plain avro)")
	}
}

// writeConfig writes a config beside the repository's schemas.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	schema, err := filepath.Abs("../../schemas/avro/order.avsc")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sluice.yml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "$SCHEMA", schema)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const confluentPipeline = `
pipelines:
  - name: orders
    topic: orders
    format: avro-confluent
    schema: $SCHEMA
`

func TestSchemaRegistryConfigured(t *testing.T) {
	path := writeConfig(t, `
schema_registry:
  url: https://user:secret@registry.example.com:8081/prefix/
  timeout: 2s
`+confluentPipeline)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := config.SchemaRegistry{URL: "https://user:secret@registry.example.com:8081/prefix/", Timeout: 2 * time.Second}
	if cfg.SchemaRegistry != want {
		t.Errorf("schema_registry = %+v, want %+v", cfg.SchemaRegistry, want)
	}
	if !cfg.UsesRegistry() {
		t.Error("UsesRegistry() = false with an avro-confluent pipeline")
	}
}

func TestSchemaRegistryFromEnv(t *testing.T) {
	t.Setenv("SLUICE_SCHEMA_REGISTRY_URL", "http://sr:8081")
	t.Setenv("SLUICE_SCHEMA_REGISTRY_TIMEOUT", "750ms")
	cfg, err := config.Load(writeConfig(t, confluentPipeline))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.SchemaRegistry.URL != "http://sr:8081" || cfg.SchemaRegistry.Timeout != 750*time.Millisecond {
		t.Errorf("schema_registry = %+v", cfg.SchemaRegistry)
	}
}

func TestSchemaRegistryBadURLs(t *testing.T) {
	for _, tt := range []struct{ url, fragment string }{
		{"ftp://sr:8081", "must start with http:// or https://"},
		{"http://", "has no host"},
		{"http://sr:8081/?x=1", "must not have a query"},
		{"http://user:hunter2@sr:8081/?x=1", "must not have a query"},
		{"http://sr:8081/%zz", "not a URL"},
	} {
		t.Setenv("SLUICE_SCHEMA_REGISTRY_URL", tt.url)
		_, err := config.Load(writeConfig(t, confluentPipeline))
		var errs config.Errors
		if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "schema_registry.url" || !strings.Contains(errs[0].Problem, tt.fragment) {
			t.Errorf("url %q: err = %v, want one error on schema_registry.url containing %q", tt.url, err, tt.fragment)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("url %q: the error shows the password: %v", tt.url, err)
		}
	}
}
