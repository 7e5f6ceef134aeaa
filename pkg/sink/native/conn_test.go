package native

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
)

// fakeServer speaks the server side of an INSERT at a given revision and
// records what the client sent. reply decides the answer to the data.
type fakeServer struct {
	revision int
	// got, filled by the server goroutine.
	hello    proto.ClientHello
	queryID  string
	info     proto.ClientInfo
	settings map[string]string
	body     string
	cols     []string // name:type
	strs     []string
	nums     []uint32
	rows     int
	packets  []string // the client's packets, in order
	// exception, when set, is sent instead of EndOfStream (after the data).
	exception []proto.Exception
}

func (f *fakeServer) serve(t *testing.T, nc net.Conn) error {
	defer nc.Close()
	r := proto.NewReader(nc)
	var b proto.Buffer
	send := func() error { _, err := nc.Write(b.Buf); b.Reset(); return err }
	code, err := r.UVarInt()
	if err != nil || proto.ClientCode(code) != proto.ClientCodeHello {
		return fmt.Errorf("want hello, got %d, %v", code, err)
	}
	f.packets = append(f.packets, "hello")
	if err := f.hello.Decode(r); err != nil {
		return err
	}
	sh := proto.ServerHello{Name: "fake", Major: 18, Minor: 16, Revision: f.revision, Timezone: "UTC", DisplayName: "fake", Patch: 1}
	sh.EncodeAware(&b, f.hello.ProtocolVersion)
	if err := send(); err != nil {
		return err
	}
	rev := min(f.revision, f.hello.ProtocolVersion)
	if code, err = r.UVarInt(); err != nil || proto.ClientCode(code) != proto.ClientCodeQuery {
		return fmt.Errorf("want query, got %d, %v", code, err)
	}
	f.packets = append(f.packets, "query")
	if f.queryID, err = r.Str(); err != nil {
		return err
	}
	if err := f.info.DecodeAware(r, rev); err != nil {
		return fmt.Errorf("client info: %w", err)
	}
	f.settings = map[string]string{}
	for {
		name, err := r.Str()
		if err != nil {
			return err
		}
		if name == "" {
			break
		}
		if rev >= 54429 {
			if _, err := r.UVarInt(); err != nil { // flags
				return err
			}
			v, err := r.Str()
			if err != nil {
				return err
			}
			f.settings[name] = v
		} else {
			v, err := r.UVarInt()
			if err != nil {
				return err
			}
			f.settings[name] = fmt.Sprintf("binary %d", v)
		}
	}
	if stage, err := r.UVarInt(); err != nil || proto.Stage(stage) != proto.StageComplete {
		return fmt.Errorf("stage %d, %v", stage, err)
	}
	if _, err := r.UVarInt(); err != nil { // compression
		return err
	}
	if f.body, err = r.Str(); err != nil {
		return err
	}
	readBlock := func(what string) (cols, rows int, err error) {
		code, err := r.UVarInt()
		if err != nil || proto.ClientCode(code) != proto.ClientCodeData {
			return 0, 0, fmt.Errorf("want data, got %d, %v", code, err)
		}
		f.packets = append(f.packets, what)
		if _, err := r.Str(); err != nil { // table name
			return 0, 0, err
		}
		var info proto.BlockInfo
		if err := info.Decode(r); err != nil {
			return 0, 0, err
		}
		if cols, err = r.Int(); err != nil {
			return 0, 0, err
		}
		rows, err = r.Int()
		return cols, rows, err
	}
	if c, n, err := readBlock("external tables end"); err != nil || c != 0 || n != 0 {
		return fmt.Errorf("external tables block %d cols %d rows: %v", c, n, err)
	}
	proto.TableColumns{First: "", Second: "columns format version: 1\n2 columns:\n"}.EncodeAware(&b, rev)
	proto.ServerCodeData.Encode(&b)
	b.PutString("")
	proto.Block{Info: proto.BlockInfo{BucketNum: -1}, Columns: 2}.EncodeAware(&b, rev)
	b.PutString("s")
	b.PutString("String")
	b.PutString("n")
	b.PutString("Enum8('a' = 1, 'b' = 2)")
	if err := send(); err != nil {
		return err
	}
	ncols, rows, err := readBlock("data")
	if err != nil {
		return err
	}
	f.rows = rows
	for i := 0; i < ncols; i++ {
		name, _ := r.Str()
		typ, _ := r.Str()
		f.cols = append(f.cols, name+":"+typ)
		for j := 0; j < rows; j++ {
			if i == 0 {
				s, err := r.Str()
				if err != nil {
					return err
				}
				f.strs = append(f.strs, s)
			} else {
				v, err := r.UInt8()
				if err != nil {
					return err
				}
				f.nums = append(f.nums, uint32(v))
			}
		}
	}
	if c, n, err := readBlock("end of data"); err != nil || c != 0 || n != 0 {
		return fmt.Errorf("end block %d cols %d rows: %v", c, n, err)
	}
	proto.ServerCodeProgress.Encode(&b)
	proto.Progress{Rows: uint64(rows), WroteRows: uint64(rows)}.EncodeAware(&b, rev)
	if len(f.exception) > 0 {
		proto.ServerCodeException.Encode(&b)
		for i, e := range f.exception {
			b.PutInt32(int32(e.Code))
			b.PutString(e.Name)
			b.PutString(e.Message)
			b.PutString(e.Stack)
			b.PutBool(i < len(f.exception)-1)
		}
	} else {
		proto.ServerCodeEndOfStream.Encode(&b)
	}
	return send()
}

func runFake(t *testing.T, f *fakeServer) (addr string, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			ch <- err
			return
		}
		ch <- f.serve(t, nc)
	}()
	return ln.Addr().String(), ch
}

func testInsert() Insert {
	return Insert{
		Query:    "INSERT INTO db.t (s, n)",
		QueryID:  "sluice:db.t:orders:3:100-abc",
		Settings: []Setting{{Name: "insert_quorum", Value: 2}},
		Rows:     3,
		Columns: []proto.InputColumn{
			{Name: "s", Data: Strings{"x", "", "héllo"}},
			{Name: "n", Data: proto.ColEnum8{1, 2, 1}},
		},
	}
}

func TestInsertPacketSequence(t *testing.T) {
	for _, rev := range []int{54412, 54429, 54460} {
		t.Run(fmt.Sprint(rev), func(t *testing.T) {
			f := &fakeServer{revision: rev}
			addr, done := runFake(t, f)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := Dial(ctx, Options{Addr: addr, Database: "db", User: "u", Password: "p"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if want := min(rev, ClientRevision); c.Revision() != want {
				t.Errorf("revision %d, want %d", c.Revision(), want)
			}
			if err := c.Insert(ctx, testInsert()); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("fake server: %v", err)
			}
			if c.Err() != nil {
				t.Errorf("connection unusable after a good insert: %v", c.Err())
			}
			if f.hello.Database != "db" || f.hello.User != "u" || f.hello.Password != "p" || f.hello.ProtocolVersion != ClientRevision {
				t.Errorf("hello %+v", f.hello)
			}
			if got := strings.Join(f.packets, ","); got != "hello,query,external tables end,data,end of data" {
				t.Errorf("packets %s", got)
			}
			if f.queryID != "sluice:db.t:orders:3:100-abc" || f.info.InitialQueryID != f.queryID || f.info.Query != proto.ClientQueryInitial {
				t.Errorf("query id %q, client info %+v", f.queryID, f.info)
			}
			wantSetting := "2"
			if rev < 54429 {
				wantSetting = "binary 2"
			}
			if f.settings["insert_quorum"] != wantSetting || len(f.settings) != 1 {
				t.Errorf("settings %v, want insert_quorum %s", f.settings, wantSetting)
			}
			if f.body != "INSERT INTO db.t (s, n) VALUES" {
				t.Errorf("query %q", f.body)
			}
			if got := strings.Join(f.cols, ","); got != "s:String,n:Enum8('a' = 1, 'b' = 2)" {
				t.Errorf("columns %s (types must be the sample block's)", got)
			}
			if f.rows != 3 || strings.Join(f.strs, "|") != "x||héllo" || fmt.Sprint(f.nums) != "[1 2 1]" {
				t.Errorf("rows %d, strings %q, enums %v", f.rows, f.strs, f.nums)
			}
		})
	}
}

func TestInsertException(t *testing.T) {
	f := &fakeServer{revision: 54412, exception: []proto.Exception{
		{Code: 252, Name: "DB::Exception", Message: "DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts.", Stack: "trace"},
		{Code: 1000, Name: "Poco::Exception", Message: "inner"},
	}}
	addr, done := runFake(t, f)
	ctx := context.Background()
	c, err := Dial(ctx, Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Insert(ctx, testInsert())
	<-done
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		t.Fatalf("error %v (%T), want a *clickhouse.Exception", err, err)
	}
	if ex.Code != 252 || ex.Message != "Too many parts (300). Merges are processing significantly slower than inserts." || ex.StackTrace != "trace" {
		t.Errorf("exception %+v", ex)
	}
	if len(ex.Nested) != 1 || ex.Nested[0].Code != 1000 {
		t.Errorf("nested %+v", ex.Nested)
	}
	if c.Err() == nil {
		t.Error("connection still usable after an exception")
	}
	if err := c.Insert(ctx, testInsert()); err == nil {
		t.Error("insert on a connection after an exception succeeded")
	}
}

// A server that stops answering: the INSERT ends when its context does,
// with the context's error, and the connection is closed.
func TestInsertContextClosesConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := proto.NewReader(nc)
		var h proto.ClientHello
		r.UVarInt()
		h.Decode(r)
		var b proto.Buffer
		sh := proto.ServerHello{Name: "fake", Revision: 54412}
		sh.EncodeAware(&b, 54412)
		nc.Write(b.Buf)
		buf := make([]byte, 4096)
		for { // read the query and never answer
			if _, err := nc.Read(buf); err != nil {
				return
			}
		}
	}()
	c, err := Dial(context.Background(), Options{Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.Insert(ctx, testInsert())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("insert returned after %s", d)
	}
	if c.Err() == nil {
		t.Error("connection usable after a cut-off insert")
	}
}
