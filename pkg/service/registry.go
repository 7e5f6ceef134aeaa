package service

// The schema registry at start-up: its client built from the config, and
// what it answers about the config, as config errors naming the key to
// fix (exit 2, never waited for: waiting does not change a password).
//
//   - 401 or 403: the credentials. schema_registry.password (or its
//     _file) with basic auth, schema_registry.token (or its _file) with a
//     bearer token, schema_registry.username when none is configured.
//   - A TLS failure: the schema_registry.tls key, as for Kafka and
//     ClickHouse (explainTLS in security.go).
//   - An https:// URL at a plain HTTP port, a 400 (an http:// URL at a TLS
//     port, answered by Go's and Jetty's servers alike) or a 404 (no
//     registry API at that path): schema_registry.url.
//
// 5xx, 408 and 429 are waited for (Transient), as is a registry that does
// not answer at all.

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/registry"
)

// newRegistry builds the registry client of r: its timeout, basic auth or
// bearer token, and the TLS of an https:// URL (its files are read now).
// log may be nil (sr's own log lines are then dropped). The error is
// config.Errors naming the TLS file that no longer loads.
func newRegistry(r config.SchemaRegistry, log *slog.Logger) (*registry.Client, error) {
	tc, err := r.TLSConfig()
	if err != nil {
		return nil, err
	}
	opts := []registry.Option{registry.WithTimeout(r.Timeout)}
	if tc != nil {
		opts = append(opts, registry.WithTLS(tc))
	}
	switch {
	case r.Token != "":
		opts = append(opts, registry.WithBearerToken(string(r.Token)))
	case r.Username != "":
		opts = append(opts, registry.WithBasicAuth(r.Username, string(r.Password)))
	}
	if log != nil {
		opts = append(opts, registry.WithLogger(log.With("stage", "registry")))
	}
	return registry.New(r.URL, opts...), nil
}

// registryError turns what reach returned for the registry into the error
// start-up returns (see the file comment).
func registryError(r config.SchemaRegistry, err error) error {
	if passThrough(err) {
		return err
	}
	addr := redactedURL(r.URL)
	t := r.TLS
	t.Enabled = true // an https:// URL is what makes TLS errors possible
	if e := explainTLS("schema registry", addr, "schema_registry.tls", t, err); e != nil {
		return config.Errors{e}
	}
	switch code := registry.StatusCode(err); {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return config.Errors{credentialsError(r, addr, err)}
	case code == http.StatusBadRequest && !strings.HasPrefix(r.URL, "https://"):
		return config.Errors{{Key: "schema_registry.url", Problem: fmt.Sprintf(
			"the schema registry at %s refused the request (is it a TLS port? then use https://): %v", addr, err)}}
	case code == http.StatusNotFound:
		return config.Errors{{Key: "schema_registry.url", Problem: fmt.Sprintf(
			"no schema registry API at %s (a wrong path or port?): %v", addr, err)}}
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return config.Errors{{Key: "schema_registry.url", Problem: fmt.Sprintf(
			"the schema registry at %s speaks plain HTTP on that port: use http://, or its TLS port", addr)}}
	}
	return config.Errors{{Key: "schema_registry.url", Problem: err.Error()}}
}

// credentialsError names the key of the credentials the registry refused
// (or asked for). Neither the password nor the token is quoted.
func credentialsError(r config.SchemaRegistry, addr string, err error) *config.Error {
	switch {
	case r.Token != "":
		key := "schema_registry.token"
		if r.TokenFile != "" {
			key = "schema_registry.token_file"
		}
		return &config.Error{Key: key, Problem: fmt.Sprintf(
			"the schema registry at %s refused the bearer token (a wrong or expired token?): %v", addr, err)}
	case r.Username != "" || userInURL(r.URL):
		key := "schema_registry.password"
		switch {
		case r.PasswordFile != "":
			key = "schema_registry.password_file"
		case r.Username == "":
			key = "schema_registry.url"
		}
		return &config.Error{Key: key, Problem: fmt.Sprintf(
			"the schema registry at %s refused user %q (a wrong password or an unknown user? check schema_registry.username and .password): %v",
			addr, basicUser(r), err)}
	}
	return &config.Error{Key: "schema_registry.username", Problem: fmt.Sprintf(
		"the schema registry at %s wants credentials: set schema_registry.username and .password, or .token: %v", addr, err)}
}

func basicUser(r config.SchemaRegistry) string {
	if r.Username != "" {
		return r.Username
	}
	if u, err := url.Parse(r.URL); err == nil && u.User != nil {
		return u.User.Username()
	}
	return ""
}

func userInURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.User != nil
}

// redactedURL is the URL without its password, for messages.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(the schema_registry.url)"
	}
	return u.Redacted()
}
