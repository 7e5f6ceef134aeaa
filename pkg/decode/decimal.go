package decode

import (
	"math/big"
	"strconv"

	"github.com/shopspring/decimal"
)

// Every decimal in a Row is built here, in one canonical form: exponent
// -scale, coefficient the exact unscaled integer, made by decimal.New when
// it fits an int64 and decimal.NewFromBigInt otherwise. Avro and JSON thus
// give reflect.DeepEqual values for the same amount, and no path rounds: a
// value that does not fit decimal(precision, scale) is an error.

// decimalFromAvro converts an Avro decimal's big-endian two's-complement
// unscaled integer. The bytes are the exact value by construction, so the
// only check is the precision; a writer may encode any number of bytes.
func (p *plan) decimalFromAvro(b []byte) (decimal.Decimal, *Error) {
	if len(b) <= 8 {
		var v int64
		if len(b) > 0 {
			v = int64(int8(b[0])) // sign-extends
			for _, c := range b[1:] {
				v = v<<8 | int64(c)
			}
		}
		return p.decimalFrom64(v)
	}
	n := new(big.Int).SetBytes(b)
	if b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	return p.decimalFromBig(n)
}

func (p *plan) decimalFrom64(v int64) (decimal.Decimal, *Error) {
	if p.limit64 != 0 && (v >= p.limit64 || v <= -p.limit64) {
		return decimal.Decimal{}, p.precisionError(big.NewInt(v))
	}
	return decimal.New(v, -p.scale), nil
}

func (p *plan) decimalFromBig(n *big.Int) (decimal.Decimal, *Error) {
	if n.IsInt64() {
		return p.decimalFrom64(n.Int64())
	}
	// Beyond int64: wider than any precision <= 18.
	if p.limitBig == nil || n.CmpAbs(p.limitBig) >= 0 {
		return decimal.Decimal{}, p.precisionError(n)
	}
	return decimal.NewFromBigInt(n, -p.scale), nil
}

func (p *plan) precisionError(unscaled *big.Int) *Error {
	return fail("value " + decimal.NewFromBigInt(unscaled, -p.scale).String() + " has more than " +
		strconv.Itoa(p.precision) + " digits, does not fit " + p.t.baseString())
}

// decimalFromText parses a decimal given in JSON, as a string or a number,
// exactly, and places it at the plan's scale.
func (p *plan) decimalFromText(s string) (decimal.Decimal, *Error) {
	if !isDecimalSyntax(s) {
		return decimal.Decimal{}, fail(strconv.Quote(s) + " is not a decimal number")
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, fail(strconv.Quote(s) + " is not a decimal number: " + err.Error())
	}
	u, misfit := unscaledAt(d, p.scale, p.precision)
	switch misfit {
	case fitFraction:
		return decimal.Decimal{}, fail(strconv.Quote(s) + " has more than " + strconv.Itoa(int(p.scale)) +
			" fractional digits, does not fit " + p.t.baseString())
	case fitDigits:
		return decimal.Decimal{}, fail(strconv.Quote(s) + " has more than " + strconv.Itoa(p.precision) +
			" digits, does not fit " + p.t.baseString())
	}
	return p.decimalFromBig(u)
}

// misfit says why a number does not fit an exact integer or decimal type.
type misfit uint8

const (
	fitOK       misfit = iota
	fitFraction        // non-zero digits beyond the scale
	fitDigits          // more digits than the precision
)

// unscaledAt returns d × 10^scale as an integer of at most maxDigits digits,
// or why it cannot: digits beyond the scale that are not zeros, or too many
// digits. Bounds are checked before any power of ten is built, so an input
// like "1e9999" costs nothing.
func unscaledAt(d decimal.Decimal, scale int32, maxDigits int) (*big.Int, misfit) {
	c := d.Coefficient()
	if c.Sign() == 0 {
		return c, fitOK
	}
	digits := decimalDigits(c)
	shift := int64(d.Exponent()) + int64(scale)
	switch {
	case shift > 0:
		if int64(digits)+shift > int64(maxDigits) {
			return nil, fitDigits
		}
		c.Mul(c, new(big.Int).Exp(big.NewInt(10), big.NewInt(shift), nil))
	case shift < 0:
		// c has digits digits, so it is a multiple of 10^-shift only if
		// -shift < digits (c is not zero).
		if -shift >= int64(digits) {
			return nil, fitFraction
		}
		var r big.Int
		c.QuoRem(c, new(big.Int).Exp(big.NewInt(10), big.NewInt(-shift), nil), &r)
		if r.Sign() != 0 {
			return nil, fitFraction
		}
		if decimalDigits(c) > maxDigits {
			return nil, fitDigits
		}
	default:
		if digits > maxDigits {
			return nil, fitDigits
		}
	}
	return c, fitOK
}

// decimalDigits counts the decimal digits of |n|, n != 0.
func decimalDigits(n *big.Int) int {
	if n.IsInt64() {
		v := n.Int64()
		if v < 0 {
			if v == -v { // MinInt64
				return 19
			}
			v = -v
		}
		d := 1
		for d < len(pow10) && v >= pow10[d] {
			d++
		}
		return d
	}
	s := n.Text(10)
	if s[0] == '-' {
		return len(s) - 1
	}
	return len(s)
}

// isDecimalSyntax accepts -?digits(.digits)?([eE][+-]?digits)?, the JSON
// number grammar without its leading-zero rule. decimal.NewFromString alone
// is more lenient ("+1", ".5", "1.").
func isDecimalSyntax(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > start
	}
	if !digits() {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}
