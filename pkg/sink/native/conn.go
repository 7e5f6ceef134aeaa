// Package native is a minimal ClickHouse native-protocol client that does
// one thing: an INSERT of one block of columns. Sluice uses it for the
// columnar path's INSERT (pkg/sink), where clickhouse-go's batch API copies
// every string and converts every decimal through big.Int; reads, the
// settle step's queries and DDL stay on clickhouse-go.
//
// It speaks protocol revision 54429 (ClientRevision) and whatever lower
// revision the server has: the Debian ClickHouse 18.16.1 server here is
// 54412. ch-go v0.74's client cannot talk to that server (it writes the
// query's client info only from 54420 on, which 18.16 expects from 54032
// on), but its proto package has the encodings: packet codes, hello,
// blocks, columns, progress, compression. What this package writes by hand
// is what proto lacks for revisions below 54429: the Query packet with its
// client info and settings in the old binary format, and the exception
// chain (proto.Exception drops the nested flag it reads).
//
// The packet sequence of an INSERT (Conn.Insert):
//
//	client: Query(id, settings, "INSERT INTO t (a, b) VALUES"), Data(empty)
//	server: [TableColumns] Data(sample block: the columns, 0 rows)
//	client: Data(the block), Data(empty)
//	server: [Progress|ProfileInfo|TableColumns]... EndOfStream
//
// An Exception at any point ends the INSERT with a *clickhouse.Exception,
// the type clickhouse-go returns, so pkg/sink's error classes see the same
// codes and messages whichever client sent the rows.
package native

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
)

// ClientRevision is the protocol revision this client announces. The
// server answers with its own; both sides then use the lower one. 54429
// is the first with settings serialized as strings (what newer servers
// expect); nothing between 54412 and 54429 changes what an INSERT sends
// but the Progress packet's fields, which proto decodes by revision.
const ClientRevision = 54429

// settingsAsStrings is the revision from which settings travel as
// name, flags, value-as-string (DBMS_MIN_REVISION_WITH_SETTINGS_SERIALIZED_AS_STRINGS).
const settingsAsStrings = 54429

// clientInfoFrom is the revision from which a Query carries the client
// info (DBMS_MIN_REVISION_WITH_CLIENT_INFO).
const clientInfoFrom = 54032

// Options say where and as whom to connect.
type Options struct {
	Addr     string // host:port of the native TCP interface
	Database string
	User     string
	Password string
	// TLS, when set, wraps the connection (crypto/tls).
	TLS         *tls.Config
	DialTimeout time.Duration
	// Compress sends the data block LZ4-compressed (and asks the server to
	// compress what it sends back).
	Compress bool
}

// Conn is one connection to a server. Not safe for concurrent use: one
// INSERT at a time.
type Conn struct {
	nc       net.Conn
	r        *proto.Reader
	w        *proto.Writer
	buf      *proto.Buffer
	zw       *compress.Writer
	revision int // negotiated: min(ClientRevision, server's)
	server   proto.ServerHello
	opt      Options
	broken   error
}

// Dial connects and says hello. ctx bounds the dial and the handshake.
// An error never holds the password.
func Dial(ctx context.Context, opt Options) (*Conn, error) {
	d := net.Dialer{Timeout: opt.DialTimeout}
	var nc net.Conn
	var err error
	if opt.TLS != nil {
		td := tls.Dialer{NetDialer: &d, Config: opt.TLS}
		nc, err = td.DialContext(ctx, "tcp", opt.Addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", opt.Addr)
	}
	if err != nil {
		return nil, fmt.Errorf("native: dial %s: %w", opt.Addr, err)
	}
	c := &Conn{nc: nc, r: proto.NewReader(nc), buf: new(proto.Buffer), opt: opt}
	c.w = proto.NewWriter(nc, c.buf)
	if opt.Compress {
		c.zw = compress.NewWriter(compress.LevelZero, compress.LZ4)
	}
	stop := c.watch(ctx)
	err = c.hello()
	stopped := stop()
	switch cerr := cutOff(ctx, err); {
	case cerr == nil:
	case err != nil: // the deadline's i/o timeout, or the close's error
		err = fmt.Errorf("%w (%v)", cerr, err)
	case !stopped:
		err = cerr
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("native: hello %s: %w", opt.Addr, err)
	}
	return c, nil
}

// watch closes the connection when ctx ends (that is how a blocked read
// or write gives up) and sets its deadline to ctx's. The returned stop
// says false when ctx had ended and the connection is being closed. The
// deadline may cut a read off (an i/o timeout) before the close does:
// callers judge by ctx.Err(), not by stop alone. The close touches
// nothing but the net.Conn (safe from any goroutine): stop does not wait
// for it, so the caller records the connection broken itself.
func (c *Conn) watch(ctx context.Context) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.nc.SetDeadline(dl)
	} else {
		_ = c.nc.SetDeadline(time.Time{})
	}
	return context.AfterFunc(ctx, func() { c.nc.Close() })
}

// cutOff is ctx's error, if ctx ended, after an operation that failed
// with err. A failure at or past ctx's deadline came from it: the
// connection's deadline is ctx's, and the poller may report it a moment
// before ctx's own timer marks ctx done, so cutOff waits for that.
func cutOff(ctx context.Context, err error) error {
	if dl, ok := ctx.Deadline(); ok && err != nil && !time.Now().Before(dl) {
		<-ctx.Done()
	}
	return ctx.Err()
}

func (c *Conn) hello() error {
	c.buf.Reset()
	proto.ClientHello{
		Name:            "sluice",
		Major:           1,
		Minor:           0,
		ProtocolVersion: ClientRevision,
		Database:        c.opt.Database,
		User:            c.opt.User,
		Password:        c.opt.Password,
	}.Encode(c.buf)
	if err := c.flush(); err != nil {
		return err
	}
	code, err := c.r.UVarInt()
	if err != nil {
		return err
	}
	switch proto.ServerCode(code) {
	case proto.ServerCodeHello:
		if err := c.server.DecodeAware(c.r, ClientRevision); err != nil {
			return err
		}
	case proto.ServerCodeException:
		return readException(c.r)
	default:
		return fmt.Errorf("unexpected packet %d in reply to hello", code)
	}
	c.revision = min(ClientRevision, c.server.Revision)
	return nil
}

// Server is the server's hello: name, version, revision.
func (c *Conn) Server() proto.ServerHello { return c.server }

// Revision is the protocol revision both sides use.
func (c *Conn) Revision() int { return c.revision }

// Err says why the connection can no longer be used (nil while it can).
// After any Insert error it is set: the server's state is not known, so
// the caller must not reuse the connection.
func (c *Conn) Err() error { return c.broken }

// Close closes the connection.
func (c *Conn) Close() error {
	if c.broken == nil {
		c.broken = net.ErrClosed
	}
	return c.nc.Close()
}

func (c *Conn) flush() error {
	_, err := c.w.Flush()
	return err
}

// Setting is a query setting with an unsigned integer value (insert_quorum,
// insert_quorum_timeout, …): encoded as the type's binary form for servers
// before revision 54429, as a string after.
type Setting struct {
	Name  string
	Value uint64
}

// Insert is one INSERT of one block.
type Insert struct {
	// Query is "INSERT INTO db.t (a, b, …)"; " VALUES" is appended when
	// missing.
	Query    string
	QueryID  string
	Settings []Setting
	// Columns are the block, in the query's column order, each of Rows
	// rows. A column's Type is replaced by the server's (the sample
	// block's), so a type name need not be spelled as the server does.
	Columns []proto.InputColumn
	Rows    int
}

// ErrColumns says the block does not match the table's structure as the
// server described it (names, count, rows). No row was sent; the
// connection is closed like after any error (the server waits for data).
var ErrColumns = errors.New("native: block does not match the table")

// Insert runs one INSERT: the query, the block, the end of data, and waits
// for the server's end of stream. ctx bounds all of it; when it ends the
// connection is closed (the server sees the INSERT cut off). On error the
// outcome is unknown unless the error is a *clickhouse.Exception from
// before the data was sent, and the connection is unusable (Err).
func (c *Conn) Insert(ctx context.Context, in Insert) error {
	st, err := c.Begin(ctx, in)
	if err != nil {
		return err
	}
	if err := st.Block(in.Columns, in.Rows); err != nil {
		return err
	}
	return st.End()
}

// Stream is one INSERT that takes several blocks (Begin, Block, End): the
// server squashes them into blocks of min_insert_block_size_rows or
// _bytes (query settings) before it writes a part, so an INSERT held open
// across batches makes parts of that size. ctx (Begin's) bounds it all.
type Stream struct {
	c      *Conn
	ctx    context.Context
	id     string
	stop   func() bool
	sample []SampleColumn
	done   bool
}

// Begin sends the query of in (its columns are not sent) and reads the
// table's structure; blocks follow by Block, the end by End. On error the
// connection is unusable, as after Insert.
func (c *Conn) Begin(ctx context.Context, in Insert) (_ *Stream, err error) {
	if c.broken != nil {
		return nil, fmt.Errorf("native: connection unusable: %w", c.broken)
	}
	st := &Stream{c: c, ctx: ctx, id: in.QueryID, stop: c.watch(ctx)}
	defer func() {
		if err != nil {
			err = st.fail(err)
		}
	}()
	q := in.Query
	if !strings.HasSuffix(strings.TrimSpace(strings.ToUpper(q)), "VALUES") {
		q += " VALUES"
	}
	c.buf.Reset()
	c.encodeQuery(in.QueryID, q, in.Settings)
	// No external tables: an empty block ends them.
	if err := c.writeBlock(nil, 0); err != nil {
		return nil, err
	}
	if err := c.flush(); err != nil {
		return nil, fmt.Errorf("native: send query: %w", err)
	}
	if st.sample, err = c.readSample(); err != nil {
		return nil, err
	}
	return st, nil
}

// fail ends the stream on err: the connection is closed and unusable, and
// err says whether ctx cut it off.
func (st *Stream) fail(err error) error {
	if st.done {
		return err
	}
	st.done = true
	st.stop()
	if cerr := cutOff(st.ctx, err); cerr != nil {
		err = fmt.Errorf("native: insert %s: %w (%v)", st.id, cerr, err)
	}
	if st.c.broken == nil {
		st.c.broken = err
	}
	st.c.nc.Close()
	return err
}

// Block sends one block of rows rows, in the table's column order (a
// column's Type is replaced by the server's). An error ends the stream.
func (st *Stream) Block(columns []proto.InputColumn, rows int) error {
	if st.done {
		return fmt.Errorf("native: insert %s: the stream has ended", st.id)
	}
	if len(st.sample) != len(columns) {
		return st.fail(fmt.Errorf("%w: the server expects %d columns, the block has %d", ErrColumns, len(st.sample), len(columns)))
	}
	cols := make([]proto.InputColumn, len(columns))
	for i, col := range columns {
		if col.Name != st.sample[i].Name {
			return st.fail(fmt.Errorf("%w: column %d is %s, the server expects %s", ErrColumns, i, col.Name, st.sample[i].Name))
		}
		if n := col.Data.Rows(); n != rows {
			return st.fail(fmt.Errorf("%w: column %s has %d rows, the block %d", ErrColumns, col.Name, n, rows))
		}
		cols[i] = proto.InputColumn{Name: col.Name, Data: typed{col.Data, st.sample[i].Type}}
	}
	st.c.buf.Reset()
	if err := st.c.writeBlock(cols, rows); err != nil {
		return st.fail(err)
	}
	if err := st.c.flush(); err != nil {
		return st.fail(fmt.Errorf("native: send block: %w", err))
	}
	return nil
}

// End sends the end of data and waits for the server's answer: nil when
// the INSERT succeeded. On error the outcome is unknown unless the error
// is a *clickhouse.Exception, and the connection is unusable.
func (st *Stream) End() error {
	if st.done {
		return fmt.Errorf("native: insert %s: the stream has ended", st.id)
	}
	st.c.buf.Reset()
	if err := st.c.writeBlock(nil, 0); err != nil { // end of data
		return st.fail(err)
	}
	if err := st.c.flush(); err != nil {
		return st.fail(fmt.Errorf("native: send block: %w", err))
	}
	if err := st.c.readEnd(); err != nil {
		return st.fail(err)
	}
	st.done = true
	if !st.stop() {
		// ctx ended as the answer came: the connection is being closed.
		if st.c.broken == nil {
			st.c.broken = net.ErrClosed
		}
	}
	return nil
}

// Abort cuts the stream off: the connection is closed, so the server
// cancels the INSERT (what it wrote so far stays written).
func (st *Stream) Abort() {
	if !st.done {
		_ = st.fail(errors.New("aborted"))
	}
}

// encodeQuery writes the Query packet for the negotiated revision: query
// id, client info (from 54032), settings (binary before 54429, strings
// with flags from it), stage Complete, compression flag, the query. The
// inter-server secret (54441) and parameters (54459) are above
// ClientRevision and never written.
func (c *Conn) encodeQuery(id, query string, settings []Setting) {
	b := c.buf
	proto.ClientCodeQuery.Encode(b)
	b.PutString(id)
	if c.revision >= clientInfoFrom {
		local := c.nc.LocalAddr().String()
		proto.ClientInfo{
			ProtocolVersion: ClientRevision,
			Major:           1,
			Minor:           0,
			Interface:       proto.InterfaceTCP,
			Query:           proto.ClientQueryInitial,
			InitialUser:     "",
			InitialQueryID:  id,
			InitialAddress:  local,
			OSUser:          "",
			ClientHostname:  "",
			ClientName:      "sluice",
		}.EncodeAware(b, c.revision)
	}
	for _, s := range settings {
		if c.revision >= settingsAsStrings {
			proto.Setting{Key: s.Name, Value: strconv.FormatUint(s.Value, 10)}.Encode(b)
		} else {
			b.PutString(s.Name)
			b.PutUVarInt(s.Value)
		}
	}
	b.PutString("") // end of settings
	proto.StageComplete.Encode(b)
	if c.zw != nil {
		proto.CompressionEnabled.Encode(b)
	} else {
		proto.CompressionDisabled.Encode(b)
	}
	b.PutString(query)
}

// writeBlock appends a Data packet (to the table "") with the columns.
// Compressed, the block is encoded whole and sent as one LZ4 frame.
func (c *Conn) writeBlock(cols []proto.InputColumn, rows int) error {
	proto.ClientCodeData.Encode(c.buf)
	proto.ClientData{}.EncodeAware(c.buf, c.revision)
	blk := proto.Block{Info: proto.BlockInfo{BucketNum: -1}, Columns: len(cols), Rows: rows}
	if c.zw == nil {
		if err := blk.WriteBlock(c.w, c.revision, cols); err != nil {
			return fmt.Errorf("native: encode block: %w", err)
		}
		return nil
	}
	var raw proto.Buffer
	if err := blk.EncodeBlock(&raw, c.revision, cols); err != nil {
		return fmt.Errorf("native: encode block: %w", err)
	}
	if err := c.zw.Compress(raw.Buf); err != nil {
		return fmt.Errorf("native: compress block: %w", err)
	}
	c.buf.PutRaw(c.zw.Data)
	return nil
}

// SampleColumn is a column of the server's sample block.
type SampleColumn struct {
	Name string
	Type proto.ColumnType
}

func (c *Conn) readSample() ([]SampleColumn, error) {
	for {
		code, err := c.r.UVarInt()
		if err != nil {
			return nil, fmt.Errorf("native: read table structure: %w", err)
		}
		switch proto.ServerCode(code) {
		case proto.ServerCodeData:
			return c.readSampleBlock()
		case proto.ServerCodeException:
			return nil, readException(c.r)
		default:
			if err := c.skip(proto.ServerCode(code)); err != nil {
				return nil, err
			}
		}
	}
}

func (c *Conn) readSampleBlock() ([]SampleColumn, error) {
	var cd proto.ClientData // the server's Data packet has the same table-name field
	if err := cd.DecodeAware(c.r, c.revision); err != nil {
		return nil, fmt.Errorf("native: read table structure: %w", err)
	}
	if c.zw != nil {
		c.r.EnableCompression()
		defer c.r.DisableCompression()
	}
	var info proto.BlockInfo
	if c.revision >= int(proto.FeatureBlockInfo) {
		if err := info.Decode(c.r); err != nil {
			return nil, fmt.Errorf("native: read table structure: %w", err)
		}
	}
	ncols, err := c.r.Int()
	if err != nil {
		return nil, fmt.Errorf("native: read table structure: %w", err)
	}
	nrows, err := c.r.Int()
	if err != nil {
		return nil, fmt.Errorf("native: read table structure: %w", err)
	}
	if nrows != 0 || ncols < 0 || ncols > 100_000 {
		return nil, fmt.Errorf("native: table structure with %d columns and %d rows", ncols, nrows)
	}
	out := make([]SampleColumn, ncols)
	for i := range out {
		if out[i].Name, err = c.r.Str(); err != nil {
			return nil, fmt.Errorf("native: read table structure: %w", err)
		}
		t, err := c.r.Str()
		if err != nil {
			return nil, fmt.Errorf("native: read table structure: %w", err)
		}
		out[i].Type = proto.ColumnType(t)
	}
	return out, nil
}

// readEnd reads what the server sends after the data up to EndOfStream.
func (c *Conn) readEnd() error {
	for {
		code, err := c.r.UVarInt()
		if err != nil {
			return fmt.Errorf("native: read insert result: %w", err)
		}
		switch proto.ServerCode(code) {
		case proto.ServerCodeEndOfStream:
			return nil
		case proto.ServerCodeException:
			return readException(c.r)
		default:
			if err := c.skip(proto.ServerCode(code)); err != nil {
				return err
			}
		}
	}
}

// skip reads the packets an INSERT may get besides its answer.
func (c *Conn) skip(code proto.ServerCode) error {
	var err error
	switch code {
	case proto.ServerCodeProgress:
		var p proto.Progress
		err = p.DecodeAware(c.r, c.revision)
	case proto.ServerCodeProfile:
		var p proto.Profile
		err = p.DecodeAware(c.r, c.revision)
	case proto.ServerCodeTableColumns:
		var t proto.TableColumns
		err = t.DecodeAware(c.r, c.revision)
	default:
		return fmt.Errorf("native: unexpected packet %s during an INSERT", code)
	}
	if err != nil {
		return fmt.Errorf("native: read %s: %w", code, err)
	}
	return nil
}

// readException reads the server's exception chain (each entry says
// whether another follows) as clickhouse-go presents it: the first
// exception with the others nested, the message without the "Name: "
// prefix.
func readException(r *proto.Reader) error {
	var chain []clickhouse.Exception
	for {
		var e clickhouse.Exception
		code, err := r.Int32()
		if err != nil {
			return fmt.Errorf("native: read exception: %w", err)
		}
		e.Code = code
		if e.Name, err = r.Str(); err != nil {
			return fmt.Errorf("native: read exception: %w", err)
		}
		if e.Message, err = r.Str(); err != nil {
			return fmt.Errorf("native: read exception: %w", err)
		}
		e.Message = strings.TrimSpace(strings.TrimPrefix(e.Message, e.Name+":"))
		if e.StackTrace, err = r.Str(); err != nil {
			return fmt.Errorf("native: read exception: %w", err)
		}
		nested, err := r.Bool()
		if err != nil {
			return fmt.Errorf("native: read exception: %w", err)
		}
		chain = append(chain, e)
		if !nested || len(chain) > 64 {
			break
		}
	}
	ex := chain[0]
	if len(chain) > 1 {
		ex.Nested = chain[1:]
	}
	return &ex
}
