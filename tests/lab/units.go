package lab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// EnvOr returns the environment variable name, or def if it is empty.
func EnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// suffixed parses a positive number with an optional K, M or G suffix
// worth k, m or g.
func suffixed(t string, k, m, g float64) (float64, bool) {
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = k
		case 'M':
			mult = m
		case 'G':
			mult = g
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 {
		return 0, false
	}
	return v * mult, true
}

// ParseRate reads bits per second with an optional K, M or G suffix
// (powers of 1000; "bit" or "bps" after it is allowed).
func ParseRate(s string) (float64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "BIT"), "BPS")
	v, ok := suffixed(t, 1e3, 1e6, 1e9)
	if !ok {
		return 0, fmt.Errorf("bad rate %q: want e.g. 300M or 1G", s)
	}
	return v, nil
}

// ParseSize reads a byte count with an optional K, M or G suffix (powers
// of 1024; "B" or "iB" after it is allowed).
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	v, ok := suffixed(t, 1<<10, 1<<20, 1<<30)
	if !ok {
		return 0, fmt.Errorf("bad size %q: want e.g. 32M, 256M, 1G", s)
	}
	return int64(v), nil
}

// HumanSize formats a byte count as GiB (whole), MiB or bytes.
func HumanSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
