package config

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// SchemaRegistry is the Confluent-compatible Schema Registry that the
// avro-confluent pipelines fetch their writer schemas from.
type SchemaRegistry struct {
	// URL is the registry's base URL, e.g. http://127.0.0.1:8081 (a path
	// prefix is allowed). Required when a pipeline's format is
	// avro-confluent. https:// turns TLS on (see TLS); user:password@ in
	// the URL is basic auth, as Username and Password are.
	URL string `mapstructure:"url"`
	// Timeout bounds one registry request. A registry that does not answer
	// in time holds the batch, which is retried: records are never
	// dead-lettered because the registry is slow or down.
	Timeout time.Duration `mapstructure:"timeout"`
	// Username and Password are HTTP basic auth (Confluent's
	// basic.auth.user.info; Confluent Cloud's API key and secret).
	Username string `mapstructure:"username"`
	Password Secret `mapstructure:"password"`
	// PasswordFile holds the password instead of Password.
	PasswordFile string `mapstructure:"password_file"`
	// Token is a bearer token ("Authorization: Bearer <token>"), instead
	// of basic auth.
	Token Secret `mapstructure:"token"`
	// TokenFile holds the token instead of Token.
	TokenFile string `mapstructure:"token_file"`
	// TLS is the CA, client certificate and server name of an https://
	// URL. The URL's scheme decides whether TLS is used: tls.enabled may
	// be left out, and TLS keys with an http:// URL are an error.
	TLS TLS `mapstructure:"tls"`
}

// TLSConfig builds the crypto/tls config of an https:// registry, reading
// its files now; nil for http://. An error is Errors naming the file's
// key. Called at start-up, after Load validated the same files.
func (r SchemaRegistry) TLSConfig() (*tls.Config, error) {
	if !r.https() {
		return nil, nil
	}
	t := r.TLS
	t.Enabled = true
	return t.ClientConfig("schema_registry.tls")
}

func (r SchemaRegistry) https() bool {
	u, err := url.Parse(strings.TrimSpace(r.URL))
	return err == nil && u.Scheme == "https"
}

// resolveRegistry makes the registry's file paths absolute against the
// config file's directory and reads its secret files, once, in Load.
func (c *Config) resolveRegistry() Errors {
	r := &c.SchemaRegistry
	for _, p := range []*string{&r.TLS.CAFile, &r.TLS.CertFile, &r.TLS.KeyFile, &r.PasswordFile, &r.TokenFile} {
		*p = strings.TrimSpace(*p)
		if *p != "" && !filepath.IsAbs(*p) {
			if abs, err := filepath.Abs(filepath.Join(c.Dir, *p)); err == nil {
				*p = abs
			}
		}
	}
	var errs Errors
	if err := readSecret("schema_registry.password", &r.Password, r.PasswordFile); err != nil {
		errs = append(errs, err)
	}
	if err := readSecret("schema_registry.token", &r.Token, r.TokenFile); err != nil {
		errs = append(errs, err)
	}
	return errs
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
	var u *url.URL
	switch {
	case raw == "":
		for i, p := range c.Pipelines {
			if p.Format == "avro-confluent" {
				add("schema_registry.url", "missing: pipelines[%d] (%s) has format avro-confluent, which needs the schema registry's URL", i, p.Name)
				break
			}
		}
	default:
		var err error
		u, err = url.Parse(raw)
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
		if err != nil {
			u = nil
		}
	}
	if r.Timeout <= 0 {
		add("schema_registry.timeout", "must be a positive duration (e.g. 5s), got %v", r.Timeout)
	}

	// Credentials: basic auth (in the URL or apart) or a token, one kind.
	// A *_file that could not be read has its own error (resolveRegistry).
	password := r.Password != "" || r.PasswordFile != ""
	token := r.Token != "" || r.TokenFile != ""
	basic := r.Username != "" || password
	switch {
	case basic && token:
		add("schema_registry.token", "set either basic auth (schema_registry.username, .password) or a bearer token, not both")
	case r.Username != "" && !password:
		add("schema_registry.password", "missing: schema_registry.username is set; basic auth needs a password (or schema_registry.password_file)")
	case r.Username == "" && password:
		add("schema_registry.username", "missing: schema_registry.password is set; basic auth needs a user")
	}
	if u != nil && u.User != nil && (basic || token) {
		other := "schema_registry.token"
		if basic {
			other = "schema_registry.username"
		}
		add("schema_registry.url", "%q holds credentials and %s is set too: keep one", u.Redacted(), other)
	}

	// TLS: the URL's scheme decides; its files must load.
	switch {
	case u != nil && u.Scheme == "https":
		t := r.TLS
		t.Enabled = true
		errs = append(errs, t.validate("schema_registry.tls")...)
	case r.TLS.Any():
		add("schema_registry.tls", "is set but schema_registry.url is not https:// (%q): use https://, or remove schema_registry.tls", redactedURL(u, raw))
	}
	return errs
}

// redactedURL is u without its password, for a message; raw when u did
// not parse and holds no credentials.
func redactedURL(u *url.URL, raw string) string {
	switch {
	case u != nil:
		return u.Redacted()
	case strings.Contains(raw, "@"):
		return RedactedText
	}
	return raw
}
