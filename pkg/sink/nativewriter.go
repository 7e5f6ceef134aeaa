package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/sink/native"
)

// NativeWriter sends the INSERTs of tables that use it through Sluice's
// own native-protocol client (pkg/sink/native) instead of clickhouse-go
// (clickhouse.insert_protocol: native): the column buffers hand their
// typed slices to ch-go's proto columns without a copy or a conversion
// per row. It keeps idle connections per server address. Safe for
// concurrent use.
type NativeWriter struct {
	opt   native.Options
	addrs []string

	mu   sync.Mutex
	idle map[string][]*native.Conn
}

// maxIdleNative bounds the idle connections kept per address: one per
// loading partition is what a busy process uses at once.
const maxIdleNative = 16

// NewNativeWriter makes the writer for c (address list, credentials,
// TLS, dial timeout). It does not connect.
func NewNativeWriter(c config.ClickHouse) (*NativeWriter, error) {
	tc, err := c.TLS.ClientConfig("clickhouse.tls")
	if err != nil {
		return nil, err
	}
	return &NativeWriter{
		opt: native.Options{
			Database: c.Database, User: c.Username, Password: string(c.Password),
			TLS: tc, DialTimeout: c.DialTimeout,
		},
		addrs: c.Addr,
		idle:  map[string][]*native.Conn{},
	}, nil
}

// Close closes the idle connections.
func (w *NativeWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for a, cs := range w.idle {
		for _, c := range cs {
			c.Close()
		}
		delete(w.idle, a)
	}
}

// conn returns an idle connection to addr or dials one; addr "" means the
// configured addresses, the first that answers.
func (w *NativeWriter) conn(ctx context.Context, addr string) (*native.Conn, string, error) {
	addrs := w.addrs
	if addr != "" {
		addrs = []string{addr}
	}
	w.mu.Lock()
	for _, a := range addrs {
		if cs := w.idle[a]; len(cs) > 0 {
			c := cs[len(cs)-1]
			w.idle[a] = cs[:len(cs)-1]
			w.mu.Unlock()
			return c, a, nil
		}
	}
	w.mu.Unlock()
	var errs []error
	for _, a := range addrs {
		o := w.opt
		o.Addr = a
		c, err := native.Dial(ctx, o)
		if err == nil {
			return c, a, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// release keeps a connection that ended its INSERT well for the next one;
// any other is closed.
func (w *NativeWriter) release(addr string, c *native.Conn) {
	if c.Err() != nil {
		c.Close()
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.idle[addr]) >= maxIdleNative {
		c.Close()
		return
	}
	w.idle[addr] = append(w.idle[addr], c)
}

// UseNative makes the table send its INSERTs through w. Call it after
// NewTable (and Bind) and before NewBuffers: the buffers hold the wire
// representation. It fails when a column's type has no native buffer.
func (t *Table) UseNative(w *NativeWriter) error {
	for i, ct := range t.types {
		if _, err := newNativeColbuf(ct); err != nil {
			return fmt.Errorf("sink: %s.%s column %s: %w", t.db, t.name, t.cols[i].Name, err)
		}
	}
	t.native = w
	return nil
}

// Native says whether the table's INSERTs go through the native writer.
func (t *Table) Native() bool { return t.native != nil }

// sendNative is sendOn for the native writer: one block with the parts'
// columns one after the other, under the same query_id, with the same
// error wrapping as the driver's path (a value the writer refuses is
// errAppend, BadData).
func (t *Table) sendNative(ictx context.Context, addr string, parts []Part, id, what string, settings []native.Setting) error {
	in := native.Insert{Query: t.insert, QueryID: id, Settings: settings, Columns: make([]proto.InputColumn, len(t.cols))}
	var per [][]proto.ColInput
	if len(parts) > 1 {
		per = make([][]proto.ColInput, len(t.cols))
	}
	for _, p := range parts {
		if p.Bufs.rows == 0 {
			continue
		}
		in.Rows += p.Bufs.rows
		for i, c := range p.Bufs.cols {
			var vals any
			if len(p.Bufs.send) > 0 {
				vals = p.Bufs.send[i]
			} else {
				vals = c.slice()
			}
			col, err := nativeColumn(vals, t.types[i], t.cols[i].Type)
			if err != nil {
				return fmt.Errorf("sink: %s column %s: %w: %w", t.name, t.cols[i].Name, errAppend, err)
			}
			if per != nil {
				per[i] = append(per[i], col)
			} else {
				in.Columns[i] = proto.InputColumn{Name: t.cols[i].Name, Data: col}
			}
		}
	}
	for i := range per {
		in.Columns[i] = proto.InputColumn{Name: t.cols[i].Name, Data: native.Concat(per[i])}
	}
	conn, a, err := t.native.conn(ictx, addr)
	if err != nil {
		return fmt.Errorf("sink: %s %s: insert %s: %w", t.name, what, id, err)
	}
	err = conn.Insert(ictx, in)
	t.native.release(a, conn)
	if err != nil {
		if addr == "" && len(t.native.addrs) > 1 {
			what += " on " + a
		}
		return fmt.Errorf("sink: %s %s: insert %s: %w", t.name, what, id, err)
	}
	return nil
}

// nativeSettings are the cluster's INSERT settings for the native writer.
func (c *Cluster) nativeSettings() []native.Setting {
	if c.quorum > 0 {
		return []native.Setting{{Name: "insert_quorum", Value: uint64(c.quorum)}}
	}
	return nil
}
