package config

import (
	"bytes"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// IsSecretKey says whether a config key (kafka.sasl.password,
// pipelines[0].x) holds a secret by its name: password, token or secret,
// or a name ending in _password, _token or _secret. The *_file keys that
// point at secrets are paths, not secrets.
func IsSecretKey(key string) bool {
	name := key[strings.LastIndex(key, ".")+1:]
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i]
	}
	name = strings.ToLower(name)
	for _, s := range []string{"password", "token", "secret"} {
		if name == s || strings.HasSuffix(name, "_"+s) {
			return true
		}
	}
	return false
}

// Redacted is the config as YAML, every key in the order of the Config
// struct, with every secret replaced by RedactedText: a Secret, a key
// IsSecretKey names, and the password of a URL (user:password@host). It
// is what `sluice config print` shows: the effective config after the
// SLUICE_* overrides, the *_file secrets read, the defaults filled in and
// the relative paths resolved.
func (c *Config) Redacted() ([]byte, error) {
	n, err := redactedNode(reflect.ValueOf(*c), "")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("config: print: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: print: %w", err)
	}
	return buf.Bytes(), nil
}

var durationType = reflect.TypeOf(time.Duration(0))

func redactedNode(v reflect.Value, key string) (*yaml.Node, error) {
	scalar := func(x any) (*yaml.Node, error) {
		n := &yaml.Node{}
		if err := n.Encode(x); err != nil {
			return nil, fmt.Errorf("config: print %s: %w", key, err)
		}
		return n, nil
	}
	switch {
	case v.Type() == secretType || (v.Kind() == reflect.String && IsSecretKey(key)):
		if v.String() == "" {
			return scalar("")
		}
		return scalar(RedactedText)
	case v.Type() == durationType:
		return scalar(time.Duration(v.Int()).String())
	case v.Type() == byteSizeType:
		return scalar(ByteSize(v.Int()).String())
	}
	switch v.Kind() {
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("mapstructure")
			if tag == "" || tag == "-" || !t.Field(i).IsExported() {
				continue
			}
			path := tag
			if key != "" {
				path = key + "." + tag
			}
			child, err := redactedNode(v.Field(i), path)
			if err != nil {
				return nil, err
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: tag}, child)
		}
		return m, nil
	case reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode}
		if v.Type().Elem().Kind() != reflect.Struct {
			s.Style = yaml.FlowStyle // brokers: [a:9092, b:9092]
		}
		for i := 0; i < v.Len(); i++ {
			child, err := redactedNode(v.Index(i), fmt.Sprintf("%s[%d]", key, i))
			if err != nil {
				return nil, err
			}
			s.Content = append(s.Content, child)
		}
		return s, nil
	case reflect.String:
		return scalar(redactURL(v.String()))
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return scalar(v.Interface())
	}
	return nil, fmt.Errorf("config: print %s: no YAML form for %s", key, v.Type())
}

// redactURL hides the password of a URL's user:password@ part; any other
// string comes back as it is.
func redactURL(s string) string {
	if !strings.Contains(s, "://") || !strings.Contains(s, "@") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		// Unparseable but shaped like a URL with credentials: show none.
		return RedactedText
	}
	return u.Redacted() // user:xxxxx@host
}
