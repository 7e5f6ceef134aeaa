package service

// What Kafka and ClickHouse answer when TLS or SASL do not match the
// config, as config errors naming the key to fix (exit 2 at start-up,
// never retried: waiting does not change a certificate or a password).
//
//   - The server's certificate is not signed by an authority Sluice
//     trusts: <service>.tls.ca_file.
//   - It does not hold the name dialled: <service>.tls.server_name.
//   - It is expired or not yet valid: <service>.tls.ca_file, with the dates.
//   - The server refused Sluice's client certificate, or asked for one it
//     did not get (a TLS alert): <service>.tls.cert_file.
//   - The server does not speak TLS on that port: <service>.tls.enabled.
//   - Kafka refused the SASL credentials: kafka.sasl.password (a wrong
//     password, an unknown user and a SCRAM user without credentials of
//     that mechanism look the same to a client; the message says so).
//   - Kafka does not offer the mechanism on that listener, or the listener
//     has no SASL at all: kafka.sasl.mechanism.
//   - A Kafka listener that answers a plaintext request with a TLS alert,
//     or closes the connection at once (franz-go's ErrFirstReadEOF): TLS
//     or SASL missing on the client, or TLS where the listener has none,
//     by franz-go's reading; kafka.tls.enabled or kafka.sasl.mechanism.
//
// One mismatch looks like an outage: a plaintext client at ClickHouse's
// TLS port has its connection reset in the handshake, which start-up
// would wait for. openClickHouse tells the two apart by asking the port
// for a TLS handshake: if it answers one, the port is a TLS port and the
// config is wrong (clickhouse.tls.enabled).
//
// No message quotes a secret: the server's texts name the user at most.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/sink"
)

// explainTLS names the key of a TLS problem of the connection to service
// at addr (t is its TLS config, key its config key, "kafka.tls"), or nil
// when err is not one.
func explainTLS(service, addr, key string, t config.TLS, err error) *config.Error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError
	var op *net.OpError
	roots := "the system's trusted authorities (" + key + ".ca_file is not set)"
	if t.CAFile != "" {
		roots = "the authorities of " + key + ".ca_file " + t.CAFile
	}
	switch {
	case errors.As(err, &unknown):
		return &config.Error{Key: key + ".ca_file", Problem: fmt.Sprintf(
			"%s at %s: its certificate is not signed by %s: %v", service, addr, roots, err)}
	case errors.As(err, &host):
		return &config.Error{Key: key + ".server_name", Problem: fmt.Sprintf(
			"%s at %s: its certificate is not valid for the name checked (set %s.server_name to a name it holds): %v", service, addr, key, err)}
	case errors.As(err, &invalid):
		return &config.Error{Key: key + ".ca_file", Problem: fmt.Sprintf(
			"%s at %s: its certificate was refused: %v", service, addr, err)}
	case errors.As(err, &record):
		return &config.Error{Key: key + ".enabled", Problem: fmt.Sprintf(
			"%s at %s does not speak TLS on that port (is it the TLS port?): %v", service, addr, err)}
	case errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "tls:"):
		// The server sent an alert: in practice a client certificate it
		// wanted and did not get, or does not trust.
		have := "no client certificate is configured (" + key + ".cert_file, .key_file)"
		if t.CertFile != "" {
			have = "the client certificate " + t.CertFile + " was refused"
		}
		return &config.Error{Key: key + ".cert_file", Problem: fmt.Sprintf(
			"%s at %s ended the TLS handshake: %v; %s", service, addr, op.Err, have)}
	}
	return nil
}

// explainKafka names the key of a TLS or SASL problem met reaching k's
// brokers, or nil when err is not one.
func explainKafka(k config.Kafka, err error) *config.Error {
	addr := strings.Join(k.Brokers, ",")
	if e := explainTLS("Kafka", addr, "kafka.tls", k.TLS, err); e != nil {
		return e
	}
	var first *kgo.ErrFirstReadEOF
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return &config.Error{Key: "kafka.sasl.password", Problem: fmt.Sprintf(
			"Kafka at %s refused user %q with %s (a wrong password, an unknown user, or a user without %s credentials; check kafka.sasl.username, .password and .mechanism): %v",
			addr, k.SASL.Username, k.SASL.Mechanism, k.SASL.Mechanism, err)}
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return &config.Error{Key: "kafka.sasl.mechanism", Problem: fmt.Sprintf(
			"Kafka at %s does not offer %s on that listener: %v", addr, k.SASL.Mechanism, err)}
	case errors.Is(err, kerr.IllegalSaslState):
		return &config.Error{Key: "kafka.sasl.mechanism", Problem: fmt.Sprintf(
			"Kafka at %s does not take SASL on that listener (remove kafka.sasl or use its SASL port): %v", addr, err)}
	case !k.TLS.Enabled && strings.Contains(err.Error(), "plaintext connection speaking to a tls endpoint"):
		// franz-go read a TLS alert where a response size belongs.
		return &config.Error{Key: "kafka.tls.enabled", Problem: fmt.Sprintf(
			"Kafka at %s answered with TLS, as a TLS listener does to a plaintext client: set kafka.tls.enabled: true, or use a plaintext port", addr)}
	case errors.As(err, &first):
		// franz-go's guess, by the request the broker hung up on.
		msg := first.Error()
		switch {
		case strings.Contains(msg, "is TLS missing?") && !k.TLS.Enabled:
			return &config.Error{Key: "kafka.tls.enabled", Problem: fmt.Sprintf(
				"Kafka at %s closed the connection at once, as a TLS listener does to a plaintext client: set kafka.tls.enabled: true, or use a plaintext port", addr)}
		case strings.Contains(msg, "TLS when the broker is not") && k.TLS.Enabled:
			return &config.Error{Key: "kafka.tls.enabled", Problem: fmt.Sprintf(
				"Kafka at %s closed the connection at once, as a plaintext listener does to a TLS client: set kafka.tls.enabled: false, or use the TLS port", addr)}
		case strings.Contains(msg, "is SASL missing?") && k.SASL.Mechanism == "":
			return &config.Error{Key: "kafka.sasl.mechanism", Problem: fmt.Sprintf(
				"Kafka at %s closed the connection at once, as a SASL listener does to a client without SASL: set kafka.sasl (mechanism, username, password)", addr)}
		}
	}
	return nil
}

// warnInsecure logs, once at start-up, the settings that work but expose
// a secret or an endpoint.
func warnInsecure(cfg *config.Config, log *slog.Logger) {
	if cfg.Kafka.SASL.Mechanism == config.SASLPlain && !cfg.Kafka.TLS.Enabled {
		log.Warn("kafka.sasl.mechanism PLAIN without kafka.tls sends the password in clear text", "stage", "startup")
	}
	if cfg.Admin.Listen != "" && cfg.Admin.Token == "" && !loopback(cfg.Admin.Listen) {
		log.Warn("the admin HTTP listens beyond loopback without admin.token: anyone who reaches it reads the metrics and the dashboard",
			"stage", "startup", "listen", cfg.Admin.Listen)
	}
}

// loopback says whether a host:port listens on loopback only.
func loopback(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openClickHouse is sink.Open, with a transient failure of a plaintext
// connection checked against a TLS port (see the file comment).
func openClickHouse(ctx context.Context, c config.ClickHouse) (driver.Conn, error) {
	if c.Cluster.Enabled() {
		return openCluster(ctx, c)
	}
	conn, err := sink.Open(ctx, c)
	if err == nil || c.TLS.Enabled || !Transient(err) || ctx.Err() != nil {
		return conn, err
	}
	for _, addr := range c.Addr {
		if speaksTLS(ctx, addr) {
			return nil, config.Errors{{Key: "clickhouse.tls.enabled", Problem: fmt.Sprintf(
				"ClickHouse at %s is a TLS port and clickhouse.tls is not enabled: set clickhouse.tls.enabled: true, or use the plaintext port (%v)", addr, err)}}
		}
	}
	return nil, err
}

// speaksTLS says whether addr completes a TLS handshake. Nothing is sent
// after it and the certificate is not looked at: the question is only
// which protocol the port speaks.
func speaksTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a probe of the protocol, no data exchanged
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}
