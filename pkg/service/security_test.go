package service

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-etl/sluice/pkg/config"
)

// TestKafkaErrorNamesTheSecurityKey: what the client meets when TLS or
// SASL do not match comes back as a config error on the key to fix; any
// other answer stays kafka.brokers'.
func TestKafkaErrorNamesTheSecurityKey(t *testing.T) {
	k := config.Kafka{
		Brokers: []string{"k1:9094"},
		TLS:     config.TLS{Enabled: true, CAFile: "/etc/ca.pem"},
		SASL:    config.SASL{Mechanism: config.SASLScramSHA512, Username: "loader", Password: "hunter2-hunter2"},
	}
	plain := config.Kafka{Brokers: []string{"k1:9094"}}
	dial := func(e error) error { return fmt.Errorf("unable to dial: %w", e) }
	for _, tt := range []struct {
		name     string
		k        config.Kafka
		err      error
		key      string
		fragment string
	}{
		{"unknown CA", k, dial(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}),
			"kafka.tls.ca_file", "not signed by the authorities of kafka.tls.ca_file /etc/ca.pem"},
		{"unknown CA, system roots", config.Kafka{Brokers: k.Brokers, TLS: config.TLS{Enabled: true}}, dial(x509.UnknownAuthorityError{}),
			"kafka.tls.ca_file", "the system's trusted authorities (kafka.tls.ca_file is not set)"},
		{"wrong name", k, dial(&tls.CertificateVerificationError{Err: x509.HostnameError{Host: "k1"}}),
			"kafka.tls.server_name", "set kafka.tls.server_name"},
		{"expired", k, dial(x509.CertificateInvalidError{Reason: x509.Expired}),
			"kafka.tls.ca_file", "its certificate was refused"},
		{"client certificate refused", k, &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")},
			"kafka.tls.cert_file", "no client certificate is configured"},
		{"not TLS", k, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"},
			"kafka.tls.enabled", "does not speak TLS"},
		{"TLS alert to a plaintext client", plain, errors.New("invalid large response size 352518912 > limit 104857600; the first three bytes received appear to be a tls alert record for TLS v1.2; is this a plaintext connection speaking to a tls endpoint?"),
			"kafka.tls.enabled", "set kafka.tls.enabled: true"},
		{"SASL refused", k, fmt.Errorf("%w: Authentication failed", kerr.SaslAuthenticationFailed),
			"kafka.sasl.password", `refused user "loader" with SCRAM-SHA-512`},
		{"mechanism not offered", k, kerr.UnsupportedSaslMechanism,
			"kafka.sasl.mechanism", "does not offer SCRAM-SHA-512 on that listener"},
		{"listener without SASL", k, kerr.IllegalSaslState,
			"kafka.sasl.mechanism", "does not take SASL on that listener"},
		{"something else", k, errors.New("invalid large response size 1213486160 > limit"),
			"kafka.brokers", "k1:9094: invalid large response size"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var errs config.Errors
			if !errors.As(kafkaError(tt.k, tt.err), &errs) || len(errs) != 1 || errs[0].Key != tt.key || !strings.Contains(errs[0].Problem, tt.fragment) {
				t.Fatalf("kafkaError(%v) = %v, want %s: …%s…", tt.err, errs, tt.key, tt.fragment)
			}
			if strings.Contains(errs[0].Problem, "hunter2") {
				t.Errorf("the message shows the password: %s", errs[0].Problem)
			}
		})
	}
}

// TestClickHouseErrorNamesTheTLSKey: clickHouseError maps the TLS cases to
// clickhouse.tls keys before the server's exception codes.
func TestClickHouseErrorNamesTheTLSKey(t *testing.T) {
	c := config.ClickHouse{Addr: []string{"ch:9440"}, Username: "loader", TLS: config.TLS{Enabled: true, CAFile: "/ca.pem"}}
	wrap := func(e error) error { return fmt.Errorf("sink: ping clickhouse ch:9440: %w", e) }
	for _, tt := range []struct {
		err      error
		key      string
		fragment string
	}{
		{wrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), "clickhouse.tls.ca_file", "ClickHouse at ch:9440: its certificate is not signed by the authorities of clickhouse.tls.ca_file /ca.pem"},
		{wrap(x509.HostnameError{Host: "ch"}), "clickhouse.tls.server_name", "set clickhouse.tls.server_name"},
		{wrap(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), "clickhouse.tls.enabled", "does not speak TLS on that port"},
	} {
		var errs config.Errors
		if !errors.As(clickHouseError(c, tt.err), &errs) || len(errs) != 1 || errs[0].Key != tt.key || !strings.Contains(errs[0].Problem, tt.fragment) {
			t.Errorf("clickHouseError(%v) = %v, want %s: …%s…", tt.err, errs, tt.key, tt.fragment)
		}
	}
}

// TestSpeaksTLS tells a TLS port from a plaintext one.
func TestSpeaksTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	if !speaksTLS(t.Context(), srv.Listener.Addr().String()) {
		t.Error("a TLS server does not speak TLS")
	}
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	if speaksTLS(t.Context(), plain.Listener.Addr().String()) {
		t.Error("a plaintext server speaks TLS")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if speaksTLS(t.Context(), addr) {
		t.Error("a closed port speaks TLS")
	}
}

// TestWarnInsecure: PLAIN without TLS and an admin HTTP beyond loopback
// without a token are warned about; loopback and TLS are not.
func TestWarnInsecure(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  config.Config
		want []string
	}{
		{"PLAIN in clear", config.Config{Kafka: config.Kafka{SASL: config.SASL{Mechanism: "PLAIN"}}}, []string{"PLAIN without kafka.tls"}},
		{"PLAIN over TLS", config.Config{Kafka: config.Kafka{SASL: config.SASL{Mechanism: "PLAIN"}, TLS: config.TLS{Enabled: true}}}, nil},
		{"admin everywhere", config.Config{Admin: config.Admin{Listen: "0.0.0.0:8080"}}, []string{"without admin.token"}},
		{"admin on a LAN address with a token", config.Config{Admin: config.Admin{Listen: "10.0.0.5:8080", Token: "0123456789abcdef"}}, nil},
		{"admin on loopback", config.Config{Admin: config.Admin{Listen: "127.0.0.1:8080"}}, nil},
		{"admin on localhost", config.Config{Admin: config.Admin{Listen: "localhost:8080"}}, nil},
		{"admin on ::1", config.Config{Admin: config.Admin{Listen: "[::1]:8080"}}, nil},
		{"admin on all interfaces", config.Config{Admin: config.Admin{Listen: ":8080"}}, []string{"without admin.token"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			warnInsecure(&tt.cfg, slog.New(slog.NewTextHandler(&buf, nil)))
			if got := strings.Count(buf.String(), "level=WARN"); got != len(tt.want) {
				t.Errorf("%d warnings, want %d:\n%s", got, len(tt.want), buf.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("no warning with %q:\n%s", w, buf.String())
				}
			}
		})
	}
}
