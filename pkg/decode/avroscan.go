package decode

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// The scanner walks an Avro binary body against the plan before goavro
// decodes it. goavro trusts the input in ways a consumer of untrusted topics
// cannot afford:
//
//   - an array or map block count is used as an allocation size before any
//     item is read: 13 bytes claiming 2^28 line items make goavro allocate
//     4 GiB (measured), and its limit, MaxBlockCount, is a process-wide
//     variable set to MaxInt32;
//   - over-long varints wrap silently instead of failing;
//   - strings are not checked to be UTF-8.
//
// The scan allocates nothing on success, costs a small fraction of the
// decode, and is where truncation and trailing bytes are detected, so those
// errors name the field they happened in.

// scanSink is what a scan collects on its way, for the fields the columnar
// path does not give goavro (avrocols.go: avroLayout.part): the values of
// one int type, a side list's subfield, and whether a decimal lies beyond
// its precision (the row path's normalisation would fail the record). A
// nil sink collects nothing.
type scanSink struct {
	ints *plan // collect the values of this type (an int)
	vals []int64
	wide bool // a decimal beyond its precision was seen
}

// maxZeroSizeItems bounds arrays and maps whose items may encode in zero
// bytes (nulls, empty records), where the byte count gives no bound.
const maxZeroSizeItems = 1 << 16

// scan checks that buf[pos:] starts with one valid value of p's type and
// returns the position after it; s, when not nil, collects as it says.
func (p *plan) scan(buf []byte, pos int, s *scanSink) (int, *Error) {
	if p.nullable {
		idx, next, err := readLong(buf, pos)
		if err != nil {
			return pos, err
		}
		pos = next
		switch idx {
		case p.nullIndex:
			return pos, nil
		case 1 - p.nullIndex:
		default:
			return pos, fail("union branch index " + strconv.FormatInt(idx, 10) + " out of range [0,2)")
		}
	}
	switch p.t.Kind {
	case KindNull:
		return pos, nil
	case KindBoolean:
		if pos >= len(buf) {
			return pos, truncated()
		}
		if buf[pos] > 1 {
			return pos, fail("invalid boolean byte " + strconv.Itoa(int(buf[pos])))
		}
		return pos + 1, nil
	case KindInt:
		v, next, err := readLong(buf, pos)
		if err != nil {
			return pos, err
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return pos, fail("int " + strconv.FormatInt(v, 10) + " out of range")
		}
		if s != nil && s.ints == p {
			s.vals = append(s.vals, v)
		}
		return next, nil
	case KindLong:
		_, next, err := readLong(buf, pos)
		return next, err
	case KindFloat, KindDouble, KindFixed:
		n := p.t.Size
		switch p.t.Kind {
		case KindFloat:
			n = 4
		case KindDouble:
			n = 8
		}
		if len(buf)-pos < n {
			return pos, truncated()
		}
		if s != nil && p.op == opDecimal && !p.decimalOK(buf[pos:pos+n]) {
			s.wide = true
		}
		return pos + n, nil
	case KindBytes:
		b, next, err := readBytes(buf, pos)
		if err == nil && s != nil && p.op == opDecimal && !p.decimalOK(b) {
			s.wide = true
		}
		return next, err
	case KindString:
		s, next, err := readBytes(buf, pos)
		if err != nil {
			return pos, err
		}
		if !utf8.Valid(s) {
			return pos, fail("string is not valid UTF-8")
		}
		return next, nil
	case KindEnum:
		idx, next, err := readLong(buf, pos)
		if err != nil {
			return pos, err
		}
		if idx < 0 || idx >= int64(len(p.t.Symbols)) {
			return pos, fail("enum index " + strconv.FormatInt(idx, 10) + " is not a symbol of " +
				shortName(p.t.Name) + " (" + strconv.Itoa(len(p.t.Symbols)) + " symbols)")
		}
		return next, nil
	case KindArray, KindMap:
		return p.scanBlocks(buf, pos, s)
	case KindRecord:
		for i := range p.fields {
			f := &p.fields[i]
			next, err := f.plan.scan(buf, pos, s)
			if err != nil {
				return pos, err.in(f.name)
			}
			pos = next
		}
		return pos, nil
	}
	return pos, fail("unsupported type " + p.t.String())
}

// scanBlocks walks the blocks of an array or map: each block is a count,
// then (if the count is negative) a byte size, then count items; a zero
// count ends the list.
func (p *plan) scanBlocks(buf []byte, pos int, s *scanSink) (int, *Error) {
	isMap := p.t.Kind == KindMap
	itemMin := p.elem.minSize
	if isMap {
		itemMin++ // the key's length
	}
	total := int64(0)
	for {
		count, next, err := readLong(buf, pos)
		if err != nil {
			return pos, err
		}
		pos = next
		if count == 0 {
			return pos, nil
		}
		if count < 0 {
			if count == math.MinInt64 {
				return pos, fail("invalid block count")
			}
			count = -count
			// The block's byte size is only a hint for skipping; the items
			// are checked one by one anyway.
			if _, pos, err = readLong(buf, pos); err != nil {
				return pos, err
			}
		}
		if itemMin > 0 {
			if count > int64((len(buf)-pos)/itemMin) {
				return pos, &Error{
					Reason: "block of " + strconv.FormatInt(count, 10) + " items cannot fit in the " +
						strconv.Itoa(len(buf)-pos) + " remaining bytes (" + ErrTruncated.Error() + ")",
					Err: ErrTruncated,
				}
			}
		} else if total+count > maxZeroSizeItems {
			return pos, fail("more than " + strconv.Itoa(maxZeroSizeItems) + " zero-size items")
		}
		for i := int64(0); i < count; i++ {
			var err *Error
			if isMap {
				var key []byte
				if key, pos, err = readBytes(buf, pos); err == nil && !utf8.Valid(key) {
					err = fail("map key is not valid UTF-8")
				}
				if err != nil {
					return pos, err.at(strconv.FormatInt(total+i, 10))
				}
				if pos, err = p.elem.scan(buf, pos, s); err != nil {
					return pos, err.at(string(key))
				}
				continue
			}
			if pos, err = p.elem.scan(buf, pos, s); err != nil {
				return pos, err.at(strconv.FormatInt(total+i, 10))
			}
		}
		total += count
	}
}

// readLong reads a zig-zag varint of at most 10 bytes, rejecting encodings
// that overflow 64 bits (goavro would wrap them).
func readLong(buf []byte, pos int) (int64, int, *Error) {
	var v uint64
	for shift := uint(0); shift < 70; shift += 7 {
		if pos >= len(buf) {
			return 0, pos, truncated()
		}
		b := buf[pos]
		pos++
		if shift == 63 && b > 1 {
			return 0, pos, fail("varint overflows 64 bits")
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return int64(v>>1) ^ -int64(v&1), pos, nil
		}
	}
	return 0, pos, fail("varint overflows 64 bits")
}

// readBytes reads a length-prefixed byte string; the result aliases buf.
func readBytes(buf []byte, pos int) ([]byte, int, *Error) {
	n, next, err := readLong(buf, pos)
	if err != nil {
		return nil, pos, err
	}
	if n < 0 {
		return nil, pos, fail("negative length " + strconv.FormatInt(n, 10))
	}
	if n > int64(len(buf)-next) {
		return nil, pos, truncated()
	}
	return buf[next : next+int(n)], next + int(n), nil
}
