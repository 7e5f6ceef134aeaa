package decode

import (
	"math/rand"
	"strconv"
	"strings"
	"testing"
)

// TestJSONDifferentialRandom complements FuzzJSONDifferential, whose
// byte-level mutations seldom get deep into a schema: it writes random
// documents that follow the order and kitchen-sink schemas loosely (fields
// shuffled, dropped, repeated and added; values of the right and of wrong
// types, in every number form, strings with escapes, surrogates and invalid
// UTF-8; now and then a damaged byte) and compares both decoders on each.
func TestJSONDifferentialRandom(t *testing.T) {
	order, err := NewFromSchema(FormatJSON, mustSchema(t, "order"))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ParseSchema([]byte(kitchenSink))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := NewFromSchema(FormatJSON, ks)
	if err != nil {
		t.Fatal(err)
	}
	n := 20000
	if testing.Short() {
		n = 2000
	}
	r := rand.New(rand.NewSource(1))
	for _, d := range []*jsonDecoder{order.(*jsonDecoder), sink.(*jsonDecoder)} {
		// encoding/json's nesting limit: 10000 levels pass, 10001 do not.
		for _, n := range []int{maxJSONDepth - 1, maxJSONDepth} {
			compareJSONDecoders(t, d, jsonWith("zz", strings.Repeat("[", n)+strings.Repeat("]", n)))
			compareJSONDecoders(t, d, jsonWith("zz", strings.Repeat(`{"a":`, n)+"1"+strings.Repeat("}", n)))
		}
		for i := 0; i < n; i++ {
			g := jsonGen{r: r}
			g.value(d.plan, 0)
			doc := g.b
			if r.Intn(20) == 0 && len(doc) > 0 { // damage a byte
				const damage = "{}[],:\"\\ x0-.e\xff"
				doc[r.Intn(len(doc))] = damage[r.Intn(len(damage))]
			}
			compareJSONDecoders(t, d, doc)
		}
	}
}

type jsonGen struct {
	r *rand.Rand
	b []byte
}

func (g *jsonGen) ws() {
	if g.r.Intn(4) == 0 {
		g.b = append(g.b, " \t\r\n"[g.r.Intn(4)])
	}
}

// value writes a value for p: mostly of its type, sometimes any value.
func (g *jsonGen) value(p *plan, depth int) {
	g.ws()
	defer g.ws()
	if depth > 0 && g.r.Intn(60) == 0 || depth > 4 {
		g.any(depth)
		return
	}
	if p.nullable && g.r.Intn(4) == 0 {
		g.b = append(g.b, "null"...)
		return
	}
	switch p.op {
	case opDecimal:
		num := g.number()
		if g.r.Intn(10) != 0 { // mostly one that fits
			num = g.fitting(p)
		}
		if g.r.Intn(2) == 0 {
			g.str(num)
		} else {
			g.b = append(g.b, num...)
		}
		return
	case opTimestampMillis, opTimestampMicros, opDate:
		k := g.r.Intn(3)
		if g.r.Intn(10) != 0 { // mostly the right kind of string
			k = 1
			if p.op == opDate {
				k = 2
			}
		}
		if g.r.Intn(2) == 0 {
			k = 0
		}
		switch k {
		case 0:
			if g.r.Intn(10) == 0 {
				g.b = append(g.b, g.number()...)
			} else if p.op == opDate {
				g.b = append(g.b, strconv.Itoa(g.r.Intn(1<<20)-1<<19)...)
			} else {
				g.b = append(g.b, strconv.FormatInt(g.r.Int63n(1<<50)-1<<49, 10)...)
			}
		case 1:
			frac := []string{"", ".1", ".123", ".123000", ".123456", ".1234567", ".000000001", "", ".5"}[g.r.Intn(9)]
			zone := []string{"Z", "+01:00", "-23:59", "Z", "Z", "Z", "Z", "Z", "z", ""}[g.r.Intn(10)]
			g.str("20" + strconv.Itoa(10+g.r.Intn(30)) + "-1" + strconv.Itoa(g.r.Intn(3)) + "-0" +
				strconv.Itoa(1+g.r.Intn(9)) + "T1" + strconv.Itoa(g.r.Intn(10)) + ":06:40" + frac + zone)
		default:
			g.str([]string{"1969-12-30", "2026-02-30", "2026-13-01", "x", "2026-11-18", "2000-02-29", "0001-01-01"}[g.r.Intn(7)])
		}
		return
	case opBytes:
		var s strings.Builder
		if g.r.Intn(10) != 0 { // mostly characters U+0000..U+00FF, Size of them for a fixed
			n := g.r.Intn(7)
			if p.t.Kind == KindFixed {
				n = p.t.Size
			}
			for ; n > 0; n-- {
				s.WriteString([]string{"a", "Z", "é", `\u00ff`, `\u0000`, `\n`, "\u00ff"}[g.r.Intn(7)])
			}
		} else {
			for i := g.r.Intn(7); i > 0; i-- {
				s.WriteString(g.char())
			}
		}
		g.str(s.String())
		return
	case opArray:
		g.b = append(g.b, '[')
		for i := g.r.Intn(4); i > 0; i-- {
			g.value(p.elem, depth+1)
			if i > 1 {
				g.b = append(g.b, ',')
			}
		}
		g.b = append(g.b, ']')
		return
	case opMap, opRecord:
		g.b = append(g.b, '{')
		type kv struct {
			k string
			p *plan
		}
		var kvs []kv
		if p.op == opMap {
			for i := g.r.Intn(4); i > 0; i-- {
				kvs = append(kvs, kv{[]string{"x", "y", "z", `\u0078`}[g.r.Intn(4)], p.elem})
			}
		} else {
			for _, f := range p.fields {
				if g.r.Intn(50) != 0 {
					kvs = append(kvs, kv{f.name, f.plan})
				}
				if g.r.Intn(20) == 0 {
					kvs = append(kvs, kv{f.name, f.plan})
				}
			}
			if g.r.Intn(5) == 0 {
				kvs = append(kvs, kv{"extra", nil})
			}
			if g.r.Intn(4) == 0 {
				g.r.Shuffle(len(kvs), func(i, j int) { kvs[i], kvs[j] = kvs[j], kvs[i] })
			}
		}
		for i, e := range kvs {
			if i > 0 {
				g.b = append(g.b, ',')
			}
			g.ws()
			g.b = append(g.b, '"')
			g.b = append(g.b, e.k...)
			g.b = append(g.b, '"')
			g.ws()
			g.b = append(g.b, ':')
			if e.p == nil {
				g.any(depth + 1)
			} else {
				g.value(e.p, depth+1)
			}
		}
		g.b = append(g.b, '}')
		return
	}
	switch p.t.Kind {
	case KindBoolean:
		g.b = append(g.b, []string{"true", "false"}[g.r.Intn(2)]...)
	case KindEnum:
		syms := append([]string{"NOPE", "web"}, p.t.Symbols...)
		if g.r.Intn(10) != 0 {
			syms = p.t.Symbols
		}
		g.str(syms[g.r.Intn(len(syms))])
	case KindInt, KindLong:
		if g.r.Intn(10) == 0 {
			g.b = append(g.b, g.number()...)
		} else {
			g.b = append(g.b, strconv.Itoa(g.r.Intn(1<<20)-1<<19)...)
		}
	case KindFloat, KindDouble:
		if g.r.Intn(4) == 0 {
			g.b = append(g.b, g.number()...)
		} else {
			g.b = append(g.b, strconv.FormatFloat(g.r.NormFloat64()*1e6, 'g', -1, 64)...)
		}
	default:
		var s strings.Builder
		for i := g.r.Intn(6); i > 0; i-- {
			s.WriteString(g.char())
		}
		g.str(s.String())
	}
}

// any writes a random JSON value.
func (g *jsonGen) any(depth int) {
	k := g.r.Intn(7)
	if depth > 6 {
		k %= 4
	}
	switch k {
	case 0:
		g.b = append(g.b, []string{"true", "false", "null"}[g.r.Intn(3)]...)
	case 1, 2:
		g.b = append(g.b, g.number()...)
	case 3:
		g.str(g.char() + g.char())
	case 4, 5:
		open, close := byte('['), byte(']')
		if k == 5 {
			open, close = '{', '}'
		}
		g.b = append(g.b, open)
		for i := g.r.Intn(3); i > 0; i-- {
			if k == 5 {
				g.str(g.char())
				g.b = append(g.b, ':')
			}
			g.any(depth + 1)
			if i > 1 {
				g.b = append(g.b, ',')
			}
		}
		g.b = append(g.b, close)
	default:
		g.str(g.number())
	}
}

func (g *jsonGen) str(content string) {
	g.b = append(g.b, '"')
	g.b = append(g.b, content...)
	g.b = append(g.b, '"')
}

// char is one character of string content, raw or escaped, now and then
// not valid JSON.
func (g *jsonGen) char() string {
	if g.r.Intn(8) != 0 {
		return []string{"a", "Z", "0", " ", "é", "\xff", `\u00e9`, `\t`}[g.r.Intn(8)]
	}
	if g.r.Intn(30) == 0 {
		return []string{`\u000`, "\x01", `\x`, `\'`}[g.r.Intn(4)]
	}
	return []string{"a", "Z", "0", " ", "é", "\u20ac", "\U0001F600", `\n`, `\"`, `\\`, `\/`, `\u0041`,
		`\u00e9`, `\u00ff`, `\u0100`, `\ud83d\ude00`, `\ud83d`, `\ude00`, `\ud83dx`, `\ud83d\u0041`,
		"\xff", "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf"}[g.r.Intn(24)]
}

// fitting is a number that mostly fits decimal p.
func (g *jsonGen) fitting(p *plan) string {
	var s strings.Builder
	if g.r.Intn(3) == 0 {
		s.WriteByte('-')
	}
	s.WriteByte(byte('0' + g.r.Intn(10)))
	for i := g.r.Intn(p.precision - int(p.scale) + 1); i > 1; i-- {
		s.WriteByte(byte('0' + g.r.Intn(10)))
	}
	if p.scale > 0 || g.r.Intn(10) == 0 {
		s.WriteByte('.')
		for i := 1 + g.r.Intn(int(p.scale)+1); i > 0; i-- {
			s.WriteByte(byte('0' + g.r.Intn(10)))
		}
	}
	if g.r.Intn(10) == 0 {
		s.WriteString("e-1")
	}
	return s.String()
}

// number is a JSON number in one of its forms, sometimes not quite one.
func (g *jsonGen) number() string {
	digits := func(n int) string {
		var s strings.Builder
		for i := 0; i < n; i++ {
			s.WriteByte(byte('0' + g.r.Intn(10)))
		}
		return s.String()
	}
	var s string
	if g.r.Intn(3) == 0 {
		s = "-"
	}
	switch g.r.Intn(6) {
	case 0:
		s += "0"
	case 1:
		s += strconv.Itoa(1 + g.r.Intn(1000))
	case 2:
		s += "1" + digits(g.r.Intn(40))
	default:
		s += strconv.Itoa(1 + g.r.Intn(9))
		s += digits(g.r.Intn(20))
	}
	if g.r.Intn(2) == 0 {
		s += "." + digits(1+g.r.Intn(8))
		if g.r.Intn(3) == 0 {
			s += strings.Repeat("0", g.r.Intn(4))
		}
	}
	if g.r.Intn(6) == 0 {
		s += []string{"e", "E", "e+", "e-"}[g.r.Intn(4)] + strconv.Itoa(g.r.Intn(40))
	}
	if g.r.Intn(40) == 0 {
		s = []string{"01", "1.", "-", ".5", "+1", "1e", "1e999", "-0", "0.000", "NaN"}[g.r.Intn(10)]
	}
	return s
}

// The behaviours of encoding/json that the single-pass parser keeps.
func TestJSONParserCompat(t *testing.T) {
	d := mustDecoder(t, FormatJSON, "order")
	for _, tt := range []struct {
		name, key, raw string
		want           any
	}{
		{"escapes", "order_id", `"\"\\\/\b\f\n\r\t\u0041\u00e9"`, "\"\\/\b\f\n\r\tAé"},
		{"surrogate pair", "order_id", `"\ud83d\ude00"`, "\U0001F600"},
		{"lone high surrogate", "order_id", `"\ud83dx"`, "\uFFFDx"},
		{"lone low surrogate", "order_id", `"\ude00"`, "\uFFFD"},
		{"high surrogate then not low", "order_id", `"\ud83d\u0041"`, "\uFFFDA"},
		{"invalid UTF-8", "order_id", "\"a\xffb\xe2\x82\"", "a\uFFFDb\uFFFD\uFFFD"},
		{"encoded surrogate", "order_id", "\"\xed\xa0\x80\"", "\uFFFD\uFFFD\uFFFD"},
		{"escaped key", "customer_id", `"c-7"`, "c-7"},
		{"decimal string with escape", "total", `"1\u0032.5"`, dec("12.50")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := jsonWith(tt.key, tt.raw)
			if tt.name == "escaped key" {
				doc = []byte(strings.Replace(string(doc), `"customer_id"`, `"customer\u005fid"`, 1))
			}
			row, err := d.Decode(doc)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameValue(row[tt.key], tt.want); err != nil {
				t.Fatal(err)
			}
		})
	}

	// A repeated key: the last value counts, even when an earlier one is
	// of the wrong type or the later one is.
	row, err := d.Decode(jsonWith("order_id", `42, "order_id": "x"`))
	if err != nil || row["order_id"] != "x" {
		t.Fatalf("bad value then good: %v, %v", row, err)
	}
	_, err = d.Decode(jsonWith("order_id", `"x", "order_id": 42`))
	checkErr(t, err, "order_id", "want string, got JSON number")

	// Of several bad fields, the first in schema order is reported.
	doc := strings.Replace(string(jsonWith("order_id", `1`)), `{`, `{"currency": 2, `, 1)
	_, err = d.Decode([]byte(doc))
	checkErr(t, err, "order_id", "want string")

	// Invalid JSON anywhere wins over a type error before it.
	_, err = d.Decode(append(jsonWith("order_id", `1`)[:20], ` "x": [1,]}`...))
	checkErr(t, err, "", "decode: invalid JSON")
	_, err = d.Decode(jsonWith("gift", `{"a": [1, {"b": tru}]}`))
	checkErr(t, err, "", "decode: invalid JSON")
	_, err = d.Decode(jsonWith("gift", "\"\x01\""))
	checkErr(t, err, "", "decode: invalid JSON")

	// Whitespace may follow the object; nesting stops at 10000 levels.
	if _, err := d.Decode(append(jsonWith("coupon", ""), " \t\r\n"...)); err != nil {
		t.Fatal(err)
	}
	deep := func(n int) []byte {
		return jsonWith("gift", strings.Repeat("[", n)+strings.Repeat("]", n))
	}
	if _, err := d.Decode(deep(maxJSONDepth - 1)); err != nil {
		t.Fatal(err)
	}
	_, err = d.Decode(deep(maxJSONDepth))
	checkErr(t, err, "", "decode: invalid JSON", "exceeded max depth")
}
