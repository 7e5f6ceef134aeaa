package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// SchemaRegistry is the Confluent-compatible Schema Registry that the
// avro-confluent pipelines fetch their writer schemas from.
type SchemaRegistry struct {
	// URL is the registry's base URL, e.g. http://127.0.0.1:8081 (a path
	// prefix and user:password@ for basic auth are allowed). Required when
	// a pipeline's format is avro-confluent.
	URL string `mapstructure:"url"`
	// Timeout bounds one registry request. A registry that does not answer
	// in time holds the batch, which is retried: records are never
	// dead-lettered because the registry is slow or down.
	Timeout time.Duration `mapstructure:"timeout"`
}

// UsesRegistry says whether any pipeline reads the Confluent wire format.
func (c *Config) UsesRegistry() bool {
	return slices.ContainsFunc(c.Pipelines, func(p Pipeline) bool { return p.Format == "avro-confluent" })
}

func (c *Config) validateRegistry() Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	r := c.SchemaRegistry
	raw := strings.TrimSpace(r.URL)
	switch {
	case raw == "":
		for i, p := range c.Pipelines {
			if p.Format == "avro-confluent" {
				add("schema_registry.url", "missing: pipelines[%d] (%s) has format avro-confluent, which needs the schema registry's URL", i, p.Name)
				break
			}
		}
	default:
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			// url.Parse's message repeats the URL, password included.
			add("schema_registry.url", "not a URL")
		case u.Scheme != "http" && u.Scheme != "https":
			add("schema_registry.url", "%q must start with http:// or https://", u.Redacted())
		case u.Host == "":
			add("schema_registry.url", "%q has no host", u.Redacted())
		case u.RawQuery != "" || u.Fragment != "":
			add("schema_registry.url", "%q must not have a query or fragment (it is a base URL)", u.Redacted())
		}
	}
	if r.Timeout <= 0 {
		add("schema_registry.timeout", "must be a positive duration (e.g. 5s), got %v", r.Timeout)
	}
	return errs
}
