// Package kafkaconn builds what every Kafka client of Sluice connects
// with: the seed brokers, TLS and SASL of the kafka: section. The group
// consumer and the dead-letter producer, the dead-letter writer's own
// readers, the reference-data readers, start-up's probe and admin
// requests, and `sluice dlq` and `sluice audit` all take their options
// from here, so a listener that needs TLS or SASL is reached the same way
// by each of them (kgo.NewClient is called with Opts everywhere).
//
// What a broker answers when TLS or SASL do not match is turned into a
// config error naming the key by pkg/service (security.go).
package kafkaconn

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-etl/sluice/pkg/config"
)

// Opts is the seed brokers plus Security: the options a client needs to
// reach k's cluster. Callers append their own (group, client id, logger).
func Opts(k config.Kafka) ([]kgo.Opt, error) {
	sec, err := Security(k)
	if err != nil {
		return nil, err
	}
	return append([]kgo.Opt{kgo.SeedBrokers(k.Brokers...)}, sec...), nil
}

// Security is k's TLS and SASL options, without the seed brokers, for
// clients that are given the brokers apart (dlq.New, refdata.NewLoader).
// Empty for a plaintext cluster without SASL. An error is config.Errors
// naming the key (a TLS file that cannot be read any more, say; Load
// checked them already).
func Security(k config.Kafka) ([]kgo.Opt, error) {
	var opts []kgo.Opt
	tc, err := k.TLS.ClientConfig("kafka.tls")
	if err != nil {
		return nil, err
	}
	if tc != nil {
		// franz-go clones it per broker and sets ServerName to the
		// broker's host when it is empty.
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if k.SASL.Mechanism != "" {
		m, err := Mechanism(k.SASL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// Mechanism is the franz-go SASL mechanism of s.
func Mechanism(s config.SASL) (sasl.Mechanism, error) {
	user, pass := s.Username, string(s.Password)
	switch s.Mechanism {
	case config.SASLPlain:
		return plain.Plain(func(context.Context) (plain.Auth, error) {
			return plain.Auth{User: user, Pass: pass}, nil
		}), nil
	case config.SASLScramSHA256:
		return scram.Sha256(func(context.Context) (scram.Auth, error) {
			return scram.Auth{User: user, Pass: pass}, nil
		}), nil
	case config.SASLScramSHA512:
		return scram.Sha512(func(context.Context) (scram.Auth, error) {
			return scram.Auth{User: user, Pass: pass}, nil
		}), nil
	}
	return nil, config.Errors{{Key: "kafka.sasl.mechanism", Problem: fmt.Sprintf("%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)}}
}

// NewClient is kgo.NewClient with Opts first and opts after.
func NewClient(k config.Kafka, opts ...kgo.Opt) (*kgo.Client, error) {
	base, err := Opts(k)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}
