package config

// Security settings: TLS for Kafka and ClickHouse, SASL for Kafka, the
// admin token, and the secrets they hold.
//
// A secret (a password, a token) comes from the file, from the environment
// (SLUICE_KAFKA_SASL_PASSWORD, ...) or from a file named beside it
// (password_file, token_file; relative to the config file's directory,
// read once by Load, one trailing newline dropped). Setting both is an
// error: which one wins would be a guess. A secret is held as a Secret,
// whose String, GoString, LogValue and MarshalText are redacted, so a config printed
// with %v or logged with slog does not show it; `sluice config print`
// redacts it too (Redacted), and no error message of this package quotes
// a secret's value.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Secret is a password or token. Its text forms are redacted; string(s)
// is the value.
type Secret string

// RedactedText is what a set secret prints as.
const RedactedText = "[redacted]"

// String is the redacted form: empty when unset, RedactedText otherwise.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return RedactedText
}

// GoString keeps %#v redacted too.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps encoders (JSON, slog's JSON handler on a struct that
// holds a Secret) from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// TLS is a client's TLS to a server: Kafka brokers or ClickHouse.
type TLS struct {
	// Enabled turns TLS on. The other keys are an error without it, so
	// that a CA file given to a plaintext connection is noticed.
	Enabled bool `mapstructure:"enabled"`
	// CAFile is a PEM file of the authorities that sign the servers'
	// certificates; empty means the system's trusted roots.
	CAFile string `mapstructure:"ca_file"`
	// CertFile and KeyFile are the client's certificate (PEM, with its
	// chain) and unencrypted private key (PEM), for servers that ask for
	// one (mutual TLS). Both or neither.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ServerName is the name the servers' certificates must hold; empty
	// means the host of each address dialled.
	ServerName string `mapstructure:"server_name"`
}

// SASL is Kafka's SASL authentication.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (any case);
	// empty means no SASL.
	Mechanism string `mapstructure:"mechanism"`
	Username  string `mapstructure:"username"`
	Password  Secret `mapstructure:"password"`
	// PasswordFile holds the password instead of Password.
	PasswordFile string `mapstructure:"password_file"`
}

// SASL mechanisms Sluice speaks.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASLMechanisms are the values kafka.sasl.mechanism may take.
var SASLMechanisms = []string{SASLPlain, SASLScramSHA256, SASLScramSHA512}

// Any says whether any key of t is set.
func (t TLS) Any() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// ClientConfig builds the crypto/tls client config of t (nil when TLS is
// off), reading its files now. key is t's config key ("kafka.tls"); an
// error is Errors naming the file's key.
func (t TLS) ClientConfig(key string) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	c := &tls.Config{
		// TLS 1.2 is the oldest both Kafka 4 and ClickHouse 18.16 speak
		// well; older versions have known attacks.
		MinVersion: tls.VersionTLS12,
		ServerName: t.ServerName,
	}
	if t.CAFile != "" {
		pemBytes, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, Errors{{Key: key + ".ca_file", Problem: fmt.Sprintf("cannot read %s: %v", t.CAFile, errRoot(err))}}
		}
		pool := x509.NewCertPool()
		if n, err := addPEMCerts(pool, pemBytes); err != nil {
			return nil, Errors{{Key: key + ".ca_file", Problem: fmt.Sprintf("%s: %v", t.CAFile, err)}}
		} else if n == 0 {
			return nil, Errors{{Key: key + ".ca_file", Problem: fmt.Sprintf("%s holds no PEM certificate", t.CAFile)}}
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		certPEM, err := os.ReadFile(t.CertFile)
		if err != nil {
			return nil, Errors{{Key: key + ".cert_file", Problem: fmt.Sprintf("cannot read %s: %v", t.CertFile, errRoot(err))}}
		}
		keyPEM, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, Errors{{Key: key + ".key_file", Problem: fmt.Sprintf("cannot read %s: %v", t.KeyFile, errRoot(err))}}
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// crypto/tls names what is wrong, never the key's bytes.
			k := key + ".key_file"
			if strings.Contains(err.Error(), "certificate input") {
				k = key + ".cert_file"
			}
			return nil, Errors{{Key: k, Problem: fmt.Sprintf("cannot load the client certificate %s with key %s: %v", t.CertFile, t.KeyFile, err)}}
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// addPEMCerts adds every CERTIFICATE block of pemBytes to pool and counts
// them; a block that does not parse is an error (AppendCertsFromPEM would
// skip it silently).
func addPEMCerts(pool *x509.CertPool, pemBytes []byte) (int, error) {
	n := 0
	for {
		var b *pem.Block
		b, pemBytes = pem.Decode(pemBytes)
		if b == nil {
			return n, nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return n, fmt.Errorf("certificate %d does not parse: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
}

// resolveSecurity makes the security files' paths absolute against the
// config file's directory and reads the secrets' files into the secrets.
func (c *Config) resolveSecurity() Errors {
	for _, p := range []*string{
		&c.Kafka.TLS.CAFile, &c.Kafka.TLS.CertFile, &c.Kafka.TLS.KeyFile, &c.Kafka.SASL.PasswordFile,
		&c.ClickHouse.TLS.CAFile, &c.ClickHouse.TLS.CertFile, &c.ClickHouse.TLS.KeyFile, &c.ClickHouse.PasswordFile,
		&c.Admin.TokenFile,
	} {
		*p = strings.TrimSpace(*p)
		if *p != "" && !filepath.IsAbs(*p) {
			if abs, err := filepath.Abs(filepath.Join(c.Dir, *p)); err == nil {
				*p = abs
			}
		}
	}
	c.Kafka.SASL.Mechanism = strings.ToUpper(strings.TrimSpace(c.Kafka.SASL.Mechanism))
	var errs Errors
	for _, s := range []struct {
		key    string
		secret *Secret
		file   string
	}{
		{"kafka.sasl.password", &c.Kafka.SASL.Password, c.Kafka.SASL.PasswordFile},
		{"clickhouse.password", &c.ClickHouse.Password, c.ClickHouse.PasswordFile},
		{"admin.token", &c.Admin.Token, c.Admin.TokenFile},
	} {
		if err := readSecret(s.key, s.secret, s.file); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// readSecret fills secret from file when file is set. The file holds the
// secret alone; one trailing newline (echo, editors) is not part of it.
func readSecret(key string, secret *Secret, file string) *Error {
	if file == "" {
		return nil
	}
	if *secret != "" {
		return &Error{Key: key + "_file", Problem: fmt.Sprintf("set either %s or %s_file, not both", key, key)}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return &Error{Key: key + "_file", Problem: fmt.Sprintf("cannot read %s: %v", file, errRoot(err))}
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return &Error{Key: key + "_file", Problem: fmt.Sprintf("%s is empty", file)}
	}
	*secret = Secret(v)
	return nil
}

// validateSecurity checks the TLS, SASL and admin token keys.
func (c *Config) validateSecurity() Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	errs = append(errs, c.Kafka.TLS.validate("kafka.tls")...)
	errs = append(errs, c.ClickHouse.TLS.validate("clickhouse.tls")...)

	s := c.Kafka.SASL
	switch {
	case s.Mechanism == "":
		if s.Username != "" || s.Password != "" {
			add("kafka.sasl.mechanism", "missing: kafka.sasl.username or password is set; name the mechanism (%s)", strings.Join(SASLMechanisms, ", "))
		}
	case !slices.Contains(SASLMechanisms, s.Mechanism):
		add("kafka.sasl.mechanism", "%q is not one of %s", s.Mechanism, strings.Join(SASLMechanisms, ", "))
	default:
		if s.Username == "" {
			add("kafka.sasl.username", "missing: kafka.sasl.mechanism %s needs a user", s.Mechanism)
		}
		if s.Password == "" && s.PasswordFile == "" {
			add("kafka.sasl.password", "missing: kafka.sasl.mechanism %s needs a password (or kafka.sasl.password_file)", s.Mechanism)
		}
	}

	// A token short enough to guess is no protection; 16 characters is
	// what `openssl rand -hex 8` gives.
	if t := c.Admin.Token; t != "" && len(t) < 16 {
		key := "admin.token"
		if c.Admin.TokenFile != "" {
			key = "admin.token_file"
		}
		add(key, "must be at least 16 characters, got %d", len(t))
	}
	return errs
}

func (t TLS) validate(key string) Errors {
	var errs Errors
	if !t.Enabled {
		if t.Any() {
			set := ""
			for _, f := range []struct{ name, v string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"server_name", t.ServerName}} {
				if f.v != "" {
					set = f.name
					break
				}
			}
			errs = append(errs, &Error{Key: key + ".enabled", Problem: fmt.Sprintf("is false but %s.%s is set; set %s.enabled: true (or remove %s)", key, set, key, set)})
		}
		return errs
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		missing := key + ".key_file"
		if t.CertFile == "" {
			missing = key + ".cert_file"
		}
		errs = append(errs, &Error{Key: missing, Problem: fmt.Sprintf("missing: a client certificate needs both %s.cert_file and %s.key_file", key, key)})
		return errs
	}
	if _, err := t.ClientConfig(key); err != nil {
		var es Errors
		if errors.As(err, &es) {
			errs = append(errs, es...)
		} else {
			errs = append(errs, &Error{Key: key, Problem: err.Error()})
		}
	}
	return errs
}
