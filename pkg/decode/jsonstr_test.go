package decode

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strings"
	"testing"
)

// TestSpecial8: for every byte value at every position of a word of plain
// text, the lowest flag special8 raises is that byte's exactly when str
// must look at it, and a word of plain text raises none.
func TestSpecial8(t *testing.T) {
	plain := []byte("abcdefgh")
	if m := special8(binary.LittleEndian.Uint64(plain)); m != 0 {
		t.Fatalf("plain text flagged: %#x", m)
	}
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			w := []byte("a b~ZA09")
			w[pos] = byte(c)
			m := special8(binary.LittleEndian.Uint64(w))
			want := c == '"' || c == '\\' || c < 0x20 || c >= 0x80
			got := m != 0 && bits.TrailingZeros64(m)>>3 == pos
			if got != want {
				t.Fatalf("byte %#x at %d: flagged lowest %v (mask %#x), want %v", c, pos, got, m, want)
			}
			// Two special bytes: the lower one is found.
			if want && pos < 7 {
				w[pos+1] = '"'
				if m := special8(binary.LittleEndian.Uint64(w)); bits.TrailingZeros64(m)>>3 != pos {
					t.Fatalf("byte %#x at %d before a quote: lowest flag at %d", c, pos, bits.TrailingZeros64(m)>>3)
				}
			}
		}
	}
}

// TestStrAtEveryOffset: a string with an escape, a control character, a
// non-ASCII character or its closing quote at every offset across the
// eight-byte steps unquotes as encoding/json unquotes it, and a control
// character or a missing closing quote is an error there too.
func TestStrAtEveryOffset(t *testing.T) {
	for n := 0; n < 26; n++ {
		for _, mid := range []string{``, `\"`, `\\`, `\n`, `\u00e9`, "é", "日本", `\ud83d\ude00`, "\xff"} {
			for _, tail := range []string{"", "xyz0123456789"} {
				body := strings.Repeat("k", n) + mid + tail
				in := []byte(`"` + body + `",`)
				var want string
				if err := json.Unmarshal(in[:len(in)-1], &want); err != nil {
					t.Fatalf("%q: %v", in, err)
				}
				s := jsonParser{buf: in}
				got, err := s.str()
				if err != nil {
					t.Fatalf("%q: %v", in, err)
				}
				if string(got) != want || s.pos != len(in)-1 {
					t.Fatalf("%q: got %q at %d, want %q at %d", in, got, s.pos, want, len(in)-1)
				}
			}
		}
		for _, bad := range []string{"\x01", "\x1f", "\t"} {
			in := []byte(`"` + strings.Repeat("k", n) + bad + `"`)
			s := jsonParser{buf: in}
			if _, err := s.str(); err == nil {
				t.Fatalf("%q: no error for a control character", in)
			}
		}
		in := []byte(`"` + strings.Repeat("k", n))
		s := jsonParser{buf: in}
		if _, err := s.str(); err == nil {
			t.Fatalf("%q: no error for an unterminated string", in)
		}
	}
}
