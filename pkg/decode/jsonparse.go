package decode

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// maxJSONDepth is encoding/json's nesting limit, kept so that the same
// documents are accepted as before.
const maxJSONDepth = 10000

// jsonParser reads one JSON document in a single pass, guided by a plan.
//
// Errors come in two kinds. A syntax error is kept in bad and stops the
// parse at once: every method returns it, and nothing else is looked at.
// A type error (a value that is valid JSON but does not fit the schema) is
// returned after the whole offending value has been consumed, so the parse
// goes on: the document must still be checked to the end, since invalid
// JSON anywhere is reported in preference to a type error, and a later
// duplicate key may replace the bad value. Callers tell the two apart by
// bad != nil.
type jsonParser struct {
	buf   []byte
	pos   int
	depth int
	bad   *Error
	// tmp holds the last string that needed unescaping; str returns a view
	// of it, valid until the next call of str.
	tmp []byte
}

func (s *jsonParser) syntax(msg string) *Error {
	if s.bad == nil {
		s.bad = fail("invalid JSON: " + msg)
	}
	return s.bad
}

// unexpected is the syntax error for the byte at pos (or the end).
func (s *jsonParser) unexpected() *Error {
	if s.pos >= len(s.buf) {
		return s.syntax("unexpected end of JSON input")
	}
	return s.syntax("invalid character " + strconv.QuoteRune(rune(s.buf[s.pos])) +
		" at offset " + strconv.Itoa(s.pos))
}

func (s *jsonParser) ws() {
	for s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// open consumes the '{' or '[' at pos.
func (s *jsonParser) open() *Error {
	s.depth++
	if s.depth > maxJSONDepth {
		return s.syntax("exceeded max depth at offset " + strconv.Itoa(s.pos))
	}
	s.pos++
	return nil
}

// empty skips whitespace after an opening bracket and consumes close if it
// is next, reporting whether the container is empty.
func (s *jsonParser) empty(close byte) bool {
	s.ws()
	if s.pos < len(s.buf) && s.buf[s.pos] == close {
		s.pos++
		s.depth--
		return true
	}
	return false
}

// next consumes the ',' or close after a member: more says which it was.
func (s *jsonParser) next(close byte) (more bool, err *Error) {
	s.ws()
	if s.pos < len(s.buf) {
		switch s.buf[s.pos] {
		case ',':
			s.pos++
			return true, nil
		case close:
			s.pos++
			s.depth--
			return false, nil
		}
	}
	return false, s.unexpected()
}

// key reads an object key and the ':' after it; see str for the result.
func (s *jsonParser) key() ([]byte, *Error) {
	s.ws()
	if s.pos >= len(s.buf) || s.buf[s.pos] != '"' {
		return nil, s.unexpected()
	}
	k, err := s.str()
	if err != nil {
		return nil, err
	}
	s.ws()
	if s.pos >= len(s.buf) || s.buf[s.pos] != ':' {
		return nil, s.unexpected()
	}
	s.pos++
	return k, nil
}

// literal consumes lit (true, false, null) at pos.
func (s *jsonParser) literal(lit string) *Error {
	for i := 0; i < len(lit); i++ {
		if s.pos >= len(s.buf) || s.buf[s.pos] != lit[i] {
			return s.unexpected()
		}
		s.pos++
	}
	return nil
}

// number consumes a JSON number at pos and returns its text.
func (s *jsonParser) number() ([]byte, *Error) {
	b, i := s.buf, s.pos
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		s.pos = i
		return nil, s.unexpected()
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			s.pos = i
			return nil, s.unexpected()
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			s.pos = i
			return nil, s.unexpected()
		}
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	s.pos = i
	return b[start:i], nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// str consumes the JSON string at pos (the opening quote) and returns its
// content unescaped, exactly as encoding/json unquotes it: invalid UTF-8
// bytes and unpaired surrogate escapes become U+FFFD. The result is a
// view of the input or of tmp; it is only valid until the next str.
func (s *jsonParser) str() ([]byte, *Error) {
	b := s.buf
	start := s.pos + 1
	// Eight bytes at a time to the first that is not plain ASCII text (a
	// quote, a backslash, a control character or a non-ASCII byte); the
	// byte loop below takes it from there.
	i := start
	for i+8 <= len(b) {
		if m := special8(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			break
		}
		i += 8
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			s.pos = i + 1
			return b[start:i], nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			return s.strSlow(start, i)
		}
	}
	s.pos = len(b)
	return nil, s.unexpected()
}

// special8 flags (bit 7 of the byte) each byte of x, eight bytes of a
// string in memory order, that str must look at: '"', '\\', < 0x20 or >=
// 0x80. Only the lowest flag is exact (a borrow can set flags above it),
// which is the one str uses.
func special8(x uint64) uint64 {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q := x ^ ('"' * ones)
	bs := x ^ ('\\' * ones)
	return ((q-ones)&^q | (bs-ones)&^bs | (x-0x20*ones)&^x | x) & highs
}

// strSlow is str from i on, where an escape, a control character or a
// non-ASCII byte was seen.
func (s *jsonParser) strSlow(start, i int) ([]byte, *Error) {
	b := s.buf
	t := append(s.tmp[:0], b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.pos = i + 1
			s.tmp = t
			return t, nil
		case c == '\\':
			if i+1 >= len(b) {
				s.pos = len(b)
				return nil, s.unexpected()
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				t = append(t, e)
			case 'b':
				t = append(t, '\b')
			case 'f':
				t = append(t, '\f')
			case 'n':
				t = append(t, '\n')
			case 'r':
				t = append(t, '\r')
			case 't':
				t = append(t, '\t')
			case 'u':
				r, bad := hex4(b, i+2)
				if bad >= 0 {
					s.pos = bad
					return nil, s.unexpected()
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// A valid pair is one character; anything else
					// leaves this half as U+FFFD and the rest as it is.
					if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						if r2, bad2 := hex4(b, i+2); bad2 < 0 {
							if d := utf16.DecodeRune(r, r2); d != unicode.ReplacementChar {
								t = utf8.AppendRune(t, d)
								i += 6
								continue
							}
						}
					}
					r = unicode.ReplacementChar
				}
				t = utf8.AppendRune(t, r)
				continue
			default:
				s.pos = i + 1
				return nil, s.unexpected()
			}
			i += 2
		case c < 0x20:
			s.pos = i
			return nil, s.unexpected()
		case c < utf8.RuneSelf:
			t = append(t, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				t = utf8.AppendRune(t, r)
			} else {
				t = append(t, b[i:i+size]...)
			}
			i += size
		}
	}
	s.pos = len(b)
	s.tmp = t
	return nil, s.unexpected()
}

// hex4 reads the 4 hex digits at b[i:]; bad is the offset of the first
// byte that is not one (or len(b)), or -1 if all are.
func hex4(b []byte, i int) (r rune, bad int) {
	for j := i; j < i+4; j++ {
		if j >= len(b) {
			return 0, len(b)
		}
		c := b[j]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, j
		}
		r = r<<4 | rune(c)
	}
	return r, -1
}

// skipStr consumes a JSON string without unescaping it.
func (s *jsonParser) skipStr() *Error {
	b := s.buf
	for i := s.pos + 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s.pos = i + 1
			return nil
		case c == '\\':
			if i+1 >= len(b) {
				s.pos = len(b)
				return s.unexpected()
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if _, bad := hex4(b, i+2); bad >= 0 {
					s.pos = bad
					return s.unexpected()
				}
				i += 5
			default:
				s.pos = i + 1
				return s.unexpected()
			}
		case c < 0x20:
			s.pos = i
			return s.unexpected()
		}
	}
	s.pos = len(b)
	return s.unexpected()
}

// skip consumes one JSON value of any type, checking its syntax. It keeps
// its own stack of open containers rather than recursing, so that deeply
// nested unknown values cost no stack growth.
func (s *jsonParser) skip() *Error {
	var stackArray [32]byte
	stack := stackArray[:0] // the open containers: '{' or '['
	for {
		// A value starts here.
		s.ws()
		if s.pos >= len(s.buf) {
			return s.unexpected()
		}
		var err *Error
		switch c := s.buf[s.pos]; c {
		case '{', '[':
			if err := s.open(); err != nil {
				return err
			}
			if s.empty(c + 2) { // '{'+2 == '}', '['+2 == ']'
				break
			}
			stack = append(stack, c)
			if c == '{' {
				if err := s.skipKey(); err != nil {
					return err
				}
			}
			continue
		case '"':
			err = s.skipStr()
		case 't':
			err = s.literal("true")
		case 'f':
			err = s.literal("false")
		case 'n':
			err = s.literal("null")
		default:
			_, err = s.number()
		}
		if err != nil {
			return err
		}
		// A value ended: close the containers it ends.
		for {
			if len(stack) == 0 {
				return nil
			}
			open := stack[len(stack)-1]
			more, err := s.next(open + 2)
			if err != nil {
				return err
			}
			if more {
				if open == '{' {
					if err := s.skipKey(); err != nil {
						return err
					}
				}
				break
			}
			stack = stack[:len(stack)-1]
		}
	}
}

// skipKey consumes an object key and the ':' after it.
func (s *jsonParser) skipKey() *Error {
	s.ws()
	if s.pos >= len(s.buf) || s.buf[s.pos] != '"' {
		return s.unexpected()
	}
	if err := s.skipStr(); err != nil {
		return err
	}
	s.ws()
	if s.pos >= len(s.buf) || s.buf[s.pos] != ':' {
		return s.unexpected()
	}
	s.pos++
	return nil
}

// kindAt names the JSON type of the value that starts with c, which skip
// has accepted.
func kindAt(c byte) string {
	switch c {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// wrong skips the value at pos, which starts with c and is not of the type
// p wants, and returns the type error (or the syntax error in it).
func (s *jsonParser) wrong(p *plan, c byte, as string) *Error {
	if err := s.skip(); err != nil {
		return err
	}
	return p.wrongType(kindAt(c), as)
}

func isNumberStart(c byte) bool { return c == '-' || c >= '0' && c <= '9' }

// decimalText reads a decimal's text at pos, whose first byte is c: a
// JSON string's content or a number's; ok is false when it is neither.
func (s *jsonParser) decimalText(c byte) (text []byte, ok bool, err *Error) {
	switch {
	case c == '"':
		text, err = s.str()
	case isNumberStart(c):
		text, err = s.number()
	default:
		return nil, false, nil
	}
	return text, true, err
}

// value parses one JSON value into p's Row type.
func (s *jsonParser) value(p *plan) (any, *Error) {
	s.ws()
	if s.pos >= len(s.buf) {
		return nil, s.unexpected()
	}
	c := s.buf[s.pos]
	if c == 'n' {
		if err := s.literal("null"); err != nil {
			return nil, err
		}
		if p.nullable || p.t.Kind == KindNull {
			return nil, nil
		}
		return nil, fail("null is not allowed, want " + p.t.String())
	}
	switch p.op {
	case opDecimal:
		text, ok, err := s.decimalText(c)
		if !ok {
			return nil, s.wrong(p, c, "as a string or number")
		}
		if err != nil {
			return nil, err
		}
		d, derr := p.decimalFromBytes(text)
		if derr != nil {
			return nil, derr
		}
		return d, nil
	case opTimestampMillis, opTimestampMicros, opDate:
		switch {
		case c == '"':
			text, err := s.str()
			if err != nil {
				return nil, err
			}
			return p.timeFromString(string(text))
		case isNumberStart(c):
			text, err := s.number()
			if err != nil {
				return nil, err
			}
			n, ierr := integerFromBytes(text, p.timeBits())
			if ierr != nil {
				return nil, ierr
			}
			return p.timeFromCount(n), nil
		}
		if err := s.skip(); err != nil {
			return nil, err
		}
		return nil, p.timeWrongType(kindAt(c))
	case opBytes:
		if c != '"' {
			return nil, s.wrong(p, c, "as a string")
		}
		text, err := s.str()
		if err != nil {
			return nil, err
		}
		out, berr := latin1FromJSON(text)
		if berr != nil {
			return nil, berr
		}
		if p.t.Kind == KindFixed && len(out) != p.t.Size {
			return nil, p.fixedSizeError(len(out))
		}
		return out, nil
	case opArray:
		if c != '[' {
			return nil, s.wrong(p, c, "")
		}
		a, err := s.array(p.elem)
		if err != nil {
			return nil, err
		}
		return a, nil
	case opMap:
		if c != '{' {
			return nil, s.wrong(p, c, "as an object")
		}
		m, err := s.jsonMap(p.elem)
		if err != nil {
			return nil, err
		}
		return m, nil
	case opRecord:
		if c != '{' {
			return nil, s.wrong(p, c, "as an object")
		}
		m, err := s.record(p)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	// opKeep: primitives, enums and uuids.
	switch p.t.Kind {
	case KindBoolean:
		switch c {
		case 't':
			if err := s.literal("true"); err != nil {
				return nil, err
			}
			return true, nil
		case 'f':
			if err := s.literal("false"); err != nil {
				return nil, err
			}
			return false, nil
		}
	case KindString:
		if c == '"' {
			text, err := s.str()
			if err != nil {
				return nil, err
			}
			return string(text), nil
		}
	case KindEnum:
		if c != '"' {
			return nil, s.wrong(p, c, "as a string")
		}
		text, err := s.str()
		if err != nil {
			return nil, err
		}
		for _, sym := range p.t.Symbols {
			if string(text) == sym {
				return sym, nil
			}
		}
		return nil, p.notSymbol(string(text))
	case KindInt, KindLong:
		if !isNumberStart(c) {
			return nil, s.wrong(p, c, "as a number")
		}
		text, err := s.number()
		if err != nil {
			return nil, err
		}
		if p.t.Kind == KindInt {
			if v, ok := smallInt(text); ok && v >= math.MinInt32 && v <= math.MaxInt32 {
				return int32(v), nil
			}
		} else if v, ok := smallInt(text); ok {
			return v, nil
		}
		return p.intFromText(string(text))
	case KindFloat, KindDouble:
		if !isNumberStart(c) {
			return nil, s.wrong(p, c, "as a number")
		}
		text, err := s.number()
		if err != nil {
			return nil, err
		}
		return p.floatFromText(string(text))
	}
	return nil, s.wrong(p, c, "")
}

// record parses a JSON object (at pos) into a record's map: every field
// set, absent nullable ones to nil, unknown keys skipped. For a repeated
// key the last value counts; of several bad fields, the first in schema
// order is reported, as the two-pass decoder did.
func (s *jsonParser) record(p *plan) (map[string]any, *Error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	n := len(p.fields)
	m := make(map[string]any, n)
	var seen uint64     // fields 0..63 present
	var seenMore []bool // all fields present, for records of more than 64
	if n > 64 {
		seenMore = make([]bool, n)
	}
	var errs []*Error // errs[i]: the last value of field i did not fit
	if !s.empty('}') {
		hint := 0 // fields usually come in schema order
		for {
			k, err := s.key()
			if err != nil {
				return nil, err
			}
			i := -1
			if hint < n && string(k) == p.fields[hint].name {
				i = hint
			} else if j, ok := p.fieldIndex[string(k)]; ok {
				i = j
			}
			if i < 0 {
				if err := s.skip(); err != nil {
					return nil, err
				}
			} else {
				hint = i + 1
				f := &p.fields[i]
				v, verr := s.value(f.plan)
				switch {
				case verr == nil:
					m[f.name] = v
					if errs != nil {
						errs[i] = nil
					}
				case s.bad != nil:
					return nil, s.bad
				default:
					if errs == nil {
						errs = make([]*Error, n)
					}
					errs[i] = verr
				}
				if seenMore != nil {
					seenMore[i] = true
				} else {
					seen |= 1 << uint(i)
				}
			}
			more, err := s.next('}')
			if err != nil {
				return nil, err
			}
			if !more {
				break
			}
		}
	}
	for i := range p.fields {
		f := &p.fields[i]
		present := seen&(1<<uint(i)) != 0
		if seenMore != nil {
			present = seenMore[i]
		}
		if !present {
			if f.plan.nullable {
				m[f.name] = nil
				continue
			}
			return nil, fail("missing required field").in(f.name)
		}
		if errs != nil && errs[i] != nil {
			return nil, errs[i].in(f.name)
		}
	}
	return m, nil
}

// array parses a JSON array (at pos) of items of type p. The first item
// that does not fit is reported; the rest are only checked for syntax.
func (s *jsonParser) array(p *plan) ([]any, *Error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	if s.empty(']') {
		return []any{}, nil
	}
	out := make([]any, 0, 4)
	for {
		v, err := s.value(p)
		if err != nil {
			if s.bad != nil {
				return nil, s.bad
			}
			err = err.at(strconv.Itoa(len(out)))
			for {
				more, serr := s.next(']')
				if serr != nil {
					return nil, serr
				}
				if !more {
					return nil, err
				}
				if serr := s.skip(); serr != nil {
					return nil, serr
				}
			}
		}
		out = append(out, v)
		more, err := s.next(']')
		if err != nil {
			return nil, err
		}
		if !more {
			return out, nil
		}
	}
}

// jsonMap parses a JSON object (at pos) into a map of values of type p;
// the last value of a repeated key counts.
func (s *jsonParser) jsonMap(p *plan) (map[string]any, *Error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	m := make(map[string]any)
	if s.empty('}') {
		return m, nil
	}
	var errs map[string]*Error // keys whose last value did not fit
	var order []string         // those keys in document order
	for {
		kb, err := s.key()
		if err != nil {
			return nil, err
		}
		k := string(kb)
		v, verr := s.value(p)
		switch {
		case verr == nil:
			m[k] = v
			if errs != nil {
				delete(errs, k)
			}
		case s.bad != nil:
			return nil, s.bad
		default:
			if errs == nil {
				errs = make(map[string]*Error)
			}
			if _, dup := errs[k]; !dup {
				order = append(order, k)
			}
			errs[k] = verr
		}
		more, err := s.next('}')
		if err != nil {
			return nil, err
		}
		if !more {
			break
		}
	}
	for _, k := range order {
		if e := errs[k]; e != nil {
			return nil, e.at(k)
		}
	}
	return m, nil
}

// smallInt parses -?digits of at most 18 digits, which cannot overflow;
// anything else is left to integerFromJSON.
func smallInt(b []byte) (int64, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	if i == len(b) || len(b)-i > 18 {
		return 0, false
	}
	var v int64
	for ; i < len(b); i++ {
		if !isDigit(b[i]) {
			return 0, false
		}
		v = v*10 + int64(b[i]-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// integerFromBytes is integerFromJSON without a string for the usual case.
func integerFromBytes(b []byte, bits int) (int64, *Error) {
	if v, ok := smallInt(b); ok && (bits == 64 || v >= math.MinInt32 && v <= math.MaxInt32) {
		return v, nil
	}
	return integerFromJSON(string(b), bits)
}

// decimalFromBytes is decimalFromText for a JSON number or string content.
// Plain -digits.digits text whose value fits at the scale in 18 digits is
// converted directly; the rest, and every error, takes decimalFromText.
// Both give decimal.New(unscaled, -scale) for such values.
func (p *plan) decimalFromBytes(b []byte) (decimal.Decimal, *Error) {
	if v, ok := p.smallUnscaled(b); ok {
		return decimal.New(v, -p.scale), nil
	}
	return p.decimalFromText(string(b))
}

func (p *plan) smallUnscaled(b []byte) (int64, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		i, neg = 1, true
	}
	var v int64
	digits := 0 // digits in v, leading zeros included: at most 18
	start := i
	for ; i < len(b) && isDigit(b[i]); i++ {
		if digits++; digits > 18 {
			return 0, false
		}
		v = v*10 + int64(b[i]-'0')
	}
	if i == start {
		return 0, false
	}
	scale := int(p.scale)
	frac := 0
	if i < len(b) && b[i] == '.' {
		i++
		fracStart := i
		for ; i < len(b) && isDigit(b[i]); i++ {
			if frac < scale {
				if digits++; digits > 18 {
					return 0, false
				}
				v = v*10 + int64(b[i]-'0')
				frac++
			} else if b[i] != '0' {
				return 0, false // too many fractional digits: the error
			}
		}
		if i == fracStart {
			return 0, false
		}
	}
	if i != len(b) {
		return 0, false // an exponent, or not a number
	}
	for ; frac < scale; frac++ {
		if digits++; digits > 18 {
			return 0, false
		}
		v *= 10
	}
	if p.limit64 != 0 && v >= p.limit64 {
		return 0, false // beyond the precision: the error
	}
	if neg {
		v = -v
	}
	return v, true
}

// latin1FromJSON maps each character to one byte, as Avro's JSON encoding
// does for bytes and fixed (bytesFromJSON for a []byte).
func latin1FromJSON(s []byte) ([]byte, *Error) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRune(s[i:])
		if r > 0xff {
			return nil, fail("bytes must be written as characters U+0000..U+00FF")
		}
		b = append(b, byte(r))
		i += size
	}
	return b, nil
}
