package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/sluice-etl/sluice/pkg/config"
	"github.com/sluice-etl/sluice/pkg/record"
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
		for i := range p.Bufs.cols {
			col, err := t.nativeColumn(p.Bufs, i)
			if err != nil {
				return err
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

// nativeColumn is column i of bufs as the native writer sends it; a value
// it refuses is errAppend (BadData), as on the driver's path.
func (t *Table) nativeColumn(bufs *Buffers, i int) (proto.ColInput, error) {
	col, err := nativeColumn(bufs.column(i), t.types[i], t.cols[i].Type)
	if err != nil {
		return nil, fmt.Errorf("sink: %s column %s: %w: %w", t.name, t.cols[i].Name, errAppend, err)
	}
	return col, nil
}

// nativeSettings are the cluster's INSERT settings for the native writer.
func (c *Cluster) nativeSettings() []native.Setting {
	if c.quorum > 0 {
		return []native.Setting{{Name: "insert_quorum", Value: uint64(c.quorum)}}
	}
	return nil
}

// Stream is one INSERT of a partition held open across its batches
// (Table.OpenStream): each batch is a block, and the server squashes the
// blocks into parts of up to the stream's rows or bytes. Its query_id has
// the single-partition form, so Running finds it like any INSERT of the
// partition. Not safe for concurrent use.
type Stream struct {
	t      *Table
	conn   *native.Conn
	addr   string
	st     *native.Stream
	cancel context.CancelFunc
	what   string
	id     string
	rows   int
}

// CanStream says whether the table can hold an INSERT open across batches:
// through the native writer, on a single server (a cluster's writer
// replica may change between batches), without materialized views (a
// view that fails would lose a stream's rows instead of a batch's).
func (t *Table) CanStream() bool { return t.native != nil && t.cluster == nil && !t.views }

// OpenStream begins an INSERT of topic's partition whose first batch
// starts at first. The server writes a part once it holds rows rows or
// bytes bytes of it (min_insert_block_size_rows and _bytes), or at End.
// life bounds the whole stream, on top of the table's INSERT timeout. On
// error nothing was sent.
func (t *Table) OpenStream(ctx context.Context, topic string, partition int32, first int64, rows, bytes int, life time.Duration) (*Stream, error) {
	if !t.CanStream() {
		return nil, fmt.Errorf("sink: %s: INSERT streams need the native writer on a single server", t.name)
	}
	id := t.queryPrefix(topic, partition) + strconv.FormatInt(first, 10) + "-" + strconv.FormatUint(rand.Uint64(), 36)
	s := &Stream{t: t, id: id, what: fmt.Sprintf("%s[%d] from %d (stream)", topic, partition, first)}
	sctx, cancel := context.WithTimeout(ctx, t.timeout+life)
	s.cancel = cancel
	conn, a, err := t.native.conn(sctx, "")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("sink: %s %s: insert %s: %w", t.name, s.what, id, err)
	}
	s.conn, s.addr = conn, a
	settings := []native.Setting{{Name: "min_insert_block_size_rows", Value: uint64(max(rows, 1))},
		{Name: "min_insert_block_size_bytes", Value: uint64(max(bytes, 1))}}
	st, err := conn.Begin(sctx, native.Insert{Query: t.insert, QueryID: id, Settings: settings})
	if err != nil {
		t.native.release(a, conn)
		cancel()
		return nil, fmt.Errorf("sink: %s %s: insert %s: %w", t.name, s.what, id, err)
	}
	s.st = st
	return s, nil
}

// Append sends the prepared rows of b (bufs, after Prepare) as one block.
// After an error the stream is over: any subset of the rows it carried may
// be stored, and the INSERT may still run on the server.
func (s *Stream) Append(bufs *Buffers, b *record.Batch) error {
	if bufs.rows == 0 {
		return nil
	}
	cols := make([]proto.InputColumn, len(s.t.cols))
	for i := range bufs.cols {
		col, err := s.t.nativeColumn(bufs, i)
		if err != nil {
			s.Abort()
			return err
		}
		cols[i] = proto.InputColumn{Name: s.t.cols[i].Name, Data: col}
	}
	if err := s.st.Block(cols, bufs.rows); err != nil {
		s.finish()
		return fmt.Errorf("sink: %s %s: insert %s: block %d..%d: %w", s.t.name, s.what, s.id, b.First, b.Last, err)
	}
	s.rows += bufs.rows
	return nil
}

// Rows counts the rows sent so far.
func (s *Stream) Rows() int { return s.rows }

// End ends the INSERT and waits for the server's answer: nil when every
// row sent is stored. On error the outcome is unknown, as for Send.
func (s *Stream) End() error {
	err := s.st.End()
	s.finish()
	if err != nil {
		return fmt.Errorf("sink: %s %s: insert %s: %w", s.t.name, s.what, s.id, err)
	}
	return nil
}

// Abort cuts the INSERT off (the connection is closed): what the server
// wrote of it so far stays.
func (s *Stream) Abort() {
	if s.st != nil {
		s.st.Abort()
	}
	s.finish()
}

func (s *Stream) finish() {
	if s.conn != nil {
		s.t.native.release(s.addr, s.conn)
		s.conn = nil
	}
	s.cancel()
}
