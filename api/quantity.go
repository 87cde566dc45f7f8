package api

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// ParseCPU parses a Kubernetes CPU quantity ("500m", "0.5", "2", "1e-3")
// into millicores, rounding a fraction of a millicore up as Kubernetes does.
func ParseCPU(q string) (milli int64, err error) {
	r, _, err := parseQuantity(q)
	if err != nil {
		return 0, fmt.Errorf("invalid CPU quantity %q: %v; want a number of cores like 2, 0.5 or 500m", q, err)
	}
	v, ok := ceilInt64(new(big.Rat).Mul(r, big.NewRat(1000, 1)))
	if !ok {
		return 0, fmt.Errorf("invalid CPU quantity %q: too large", q)
	}
	return v, nil
}

// ParseMemory parses a Kubernetes memory quantity ("128Mi", "1Gi", "100M",
// "1e6", "1024", "1k") into bytes, rounding a fraction of a byte up. Ki, Mi,
// Gi, Ti, Pi and Ei are powers of 1024; k, M, G, T, P and E powers of 1000.
// The suffix "m" (milli) is refused: "128m" would be 0.128 bytes.
func ParseMemory(q string) (bytes int64, err error) {
	r, suffix, err := parseQuantity(q)
	if err != nil {
		return 0, fmt.Errorf("invalid memory quantity %q: %v; want a number of bytes with an optional suffix Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000), like 128Mi", q, err)
	}
	switch suffix {
	case "m", "u", "n":
		hint := ""
		if suffix == "m" {
			hint = fmt.Sprintf(`; did you mean "%sMi"?`, strings.TrimSuffix(q, "m"))
		}
		return 0, fmt.Errorf("invalid memory quantity %q: %q means 1/%s of a byte%s", q, suffix,
			map[string]string{"m": "1000", "u": "1000000", "n": "1000000000"}[suffix], hint)
	}
	v, ok := ceilInt64(r)
	if !ok {
		return 0, fmt.Errorf("invalid memory quantity %q: too large", q)
	}
	return v, nil
}

// parseQuantity parses the Kubernetes quantity grammar: a non-negative
// decimal number followed by an optional binary-SI suffix (Ki ... Ei), a
// decimal-SI suffix (n u m k M G T P E) or a decimal exponent (e3, E-2). It
// returns the exact value and the suffix as written.
func parseQuantity(q string) (*big.Rat, string, error) {
	if q == "" {
		return nil, "", errors.New("empty")
	}
	if len(q) > 64 {
		return nil, "", errors.New("too long")
	}
	s := q
	if s[0] == '+' {
		s = s[1:]
	} else if s[0] == '-' {
		return nil, "", errors.New("must not be negative")
	}
	// The number: digits, optionally a '.' and more digits.
	i, digits := 0, 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return nil, "", errors.New("not a number")
	}
	num, suffix := s[:i], s[i:]
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, "", errors.New("not a number")
	}
	var mult *big.Rat
	switch suffix {
	case "":
		return r, suffix, nil
	case "Ki", "Mi", "Gi", "Ti", "Pi", "Ei":
		shift := uint(10 * (1 + strings.Index("KMGTPE", suffix[:1])))
		mult = new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), shift))
	case "n", "u", "m", "k", "M", "G", "T", "P", "E":
		exp := map[string]int{"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}[suffix]
		mult = pow10(exp)
	default:
		if suffix[0] != 'e' && suffix[0] != 'E' {
			return nil, "", fmt.Errorf("unknown suffix %q", suffix)
		}
		exp, err := strconv.Atoi(suffix[1:])
		if err != nil {
			return nil, "", fmt.Errorf("unknown suffix %q", suffix)
		}
		if exp > 100 || exp < -100 {
			return nil, "", errors.New("exponent out of range")
		}
		mult = pow10(exp)
	}
	return r.Mul(r, mult), suffix, nil
}

func pow10(exp int) *big.Rat {
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
	if exp < 0 {
		return new(big.Rat).SetFrac(big.NewInt(1), p)
	}
	return new(big.Rat).SetInt(p)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// ceilInt64 rounds the non-negative r up to an integer, reporting whether it
// fits an int64.
func ceilInt64(r *big.Rat) (int64, bool) {
	n, rem := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if rem.Sign() != 0 {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return 0, false
	}
	return n.Int64(), true
}
