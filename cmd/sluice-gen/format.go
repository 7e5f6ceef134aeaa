package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/sluice-etl/sluice/pkg/gen"
)

func formatNames() string {
	names := make([]string, 0, 3)
	for _, f := range gen.Formats() {
		names = append(names, string(f))
	}
	return strings.Join(names, ", ")
}

// validateFormat checks --format and --registry together: avro-confluent
// needs a registry URL that parses; the other formats take none, so a
// --registry given with them is a mistake (the environment's URL is just
// not used).
func (c config) validateFormat() error {
	format, err := gen.ParseFormat(c.format)
	if err != nil {
		return usagef("--format: %q is not one of %s", c.format, formatNames())
	}
	if format != gen.FormatAvroConfluent {
		if c.registryFlag {
			return usagef("--registry is only used with --format %s (the format is %s)", gen.FormatAvroConfluent, format)
		}
		return nil
	}
	if c.registry == "" {
		return usagef("--registry: format %s needs the schema registry's URL (or set %s)", format, registryEnv)
	}
	if _, err := gen.NewRegistryClient(c.registry, nil); err != nil {
		source := "--registry"
		if !c.registryFlag {
			source = registryEnv
		}
		return usagef("%s: %v", source, strings.TrimPrefix(err.Error(), "gen: "))
	}
	return nil
}

// eventEncoder returns the encoder of cfg.format. For avro-confluent it
// first registers the event schemas (each request bounded by
// cfg.timeout), so that every framed record names an id the registry
// holds; a registry that cannot be reached or refuses is an error (exit 1).
func eventEncoder(ctx context.Context, cfg config, g *gen.Generator, stderr io.Writer) (gen.EventEncoder, error) {
	format, err := gen.ParseFormat(cfg.format)
	if err != nil {
		return nil, usagef("--format: %v", err) // validateFormat ran first: not reached
	}
	switch format {
	case gen.FormatJSON:
		return gen.JSONEncoder{}, nil
	case gen.FormatAvro:
		return g.Codecs(), nil
	}
	// gen.FormatAvroConfluent
	rc, err := gen.NewRegistryClient(cfg.registry, &http.Client{Timeout: cfg.timeout})
	if err != nil {
		return nil, usagef("--registry: %v", err)
	}
	ids, err := g.Codecs().RegisterEventSchemas(ctx, rc, cfg.topics)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted: %w", ctx.Err())
		}
		return nil, fmt.Errorf("cannot register the event schemas with the schema registry at %s (check --registry or %s): %w",
			rc.URL(), registryEnv, err)
	}
	if !cfg.quiet {
		fmt.Fprintf(stderr, "sluice-gen: registered schemas: %s id %d, %s id %d, %s id %d\n",
			gen.ValueSubject(cfg.topics.Orders), ids.Order, gen.ValueSubject(cfg.topics.Payments), ids.Payment,
			gen.ValueSubject(cfg.topics.Shipments), ids.Shipment)
	}
	return gen.NewConfluentEncoder(g.Codecs(), ids), nil
}
