package main

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/mcp-dev/mcp/rmtp"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want float64 // -1: unpaced
	}{
		{"200M", 200e6},
		{"200m", 200e6},
		{"1.5G", 1.5e9},
		{"1.5g", 1.5e9},
		{"800K", 800e3},
		{"800kbps", 800e3},
		{"800Kbit", 800e3},
		{"10Mbits", 10e6},
		{"100MBPS", 100e6},
		{"1000", 1000},
		{"1000bps", 1000},
		{"1e9", 1e9},
		{" 50M ", 50e6},
		{"0", -1},
		{"0M", -1},
		{"unlimited", -1},
		{"Unlimited", -1},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseRate(tt.in)
			if err != nil {
				t.Fatalf("parseRate(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("parseRate(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	for _, in := range []string{"", "M", "fast", "-1", "-5M", "200MB", "200 M", "1T", "inf", "NaN", "0x10", "1e400", "0.5", "bps", "200Mbps/s"} {
		t.Run("bad/"+in, func(t *testing.T) {
			got, err := parseRate(in)
			if err == nil {
				t.Fatalf("parseRate(%q) = %v, want an error", in, got)
			}
			if code := exitCode(err); code != exitUsage {
				t.Errorf("exitCode(%v) = %d, want %d", err, code, exitUsage)
			}
		})
	}
}

// TestParseSendRate: send's --rate takes auto and auto:R besides a rate.
func TestParseSendRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		rate float64
		auto bool
	}{
		{"auto", rmtp.AutoRateCeiling, true},
		{" AUTO ", rmtp.AutoRateCeiling, true},
		{"auto:1G", 1e9, true},
		{"auto:300Mbps", 300e6, true},
		{"200M", 200e6, false},
		{"unlimited", -1, false},
	} {
		rate, auto, err := parseSendRate(tt.in)
		if err != nil || rate != tt.rate || auto != tt.auto {
			t.Errorf("parseSendRate(%q) = %v, %v, %v; want %v, %v", tt.in, rate, auto, err, tt.rate, tt.auto)
		}
	}
	for _, in := range []string{"auto:", "auto:0", "auto:unlimited", "auto:fast", "automatic", "auto1G"} {
		if rate, auto, err := parseSendRate(in); err == nil || exitCode(err) != exitUsage {
			t.Errorf("parseSendRate(%q) = %v, %v, %v; want a usage error", in, rate, auto, err)
		}
	}
}

func TestFormatRateRoundTrips(t *testing.T) {
	for _, bps := range []float64{200e6, 1.5e9, 800e3, 999, -1} {
		s := formatRate(bps)
		got, err := parseRate(s)
		if err != nil || got != bps {
			t.Errorf("parseRate(formatRate(%v) = %q) = %v, %v; want %v", bps, s, got, err, bps)
		}
	}
	if got, want := formatRate(200e6), "200M"; got != want {
		t.Errorf("formatRate(200e6) = %q, want %q", got, want)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
	}{
		{"0", 0},
		{"4096", 4096},
		{"4096B", 4096},
		{"1K", 1 << 10},
		{"1k", 1 << 10},
		{"2M", 2 << 20},
		{"64m", 64 << 20},
		{"64MiB", 64 << 20},
		{"64MB", 64 << 20},
		{"1.5G", 3 << 29},
		{"1g", 1 << 30},
		{"2T", 2 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if err != nil {
				t.Fatalf("parseSize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("parseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
	for _, in := range []string{"", "M", "big", "-1M", "1X", "iB", "1iB", "1e6", "1 M", "99999999T"} {
		t.Run("bad/"+in, func(t *testing.T) {
			got, err := parseSize(in)
			if err == nil {
				t.Fatalf("parseSize(%q) = %d, want an error", in, got)
			}
			if code := exitCode(err); code != exitUsage {
				t.Errorf("exitCode(%v) = %d, want %d", err, code, exitUsage)
			}
		})
	}
}

func TestParseGroup(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" wants an error
	}{
		{"239.255.77.1:7700", "239.255.77.1:7700"},
		{"224.0.0.251:5353", "224.0.0.251:5353"},
		{"239.1.2.3", "239.1.2.3:7700"}, // the default port
		{"[::ffff:239.1.2.3]:9000", "239.1.2.3:9000"},
		{"1.2.3.4:5", ""},                          // not multicast
		{"[ff15::1234]:7700", "[ff15::1234]:7700"}, // IPv6
		{"ff15::1234", "[ff15::1234]:7700"},
		{"[2001:db8::1]:7700", ""}, // not multicast
		{"239.1.2.3:0", ""},
		{"239.1.2.3:65535", ""}, // no room for the feedback port
		{"239.1.2.3:70000", ""},
		{"example.com:7700", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseGroup(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("parseGroup(%q) = %v, want an error", tt.in, got)
				}
				var ue *usageError
				if !errors.As(err, &ue) {
					t.Errorf("parseGroup(%q) error %v is not a usage error", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseGroup(%q): %v", tt.in, err)
			}
			if got != netip.MustParseAddrPort(tt.want) {
				t.Errorf("parseGroup(%q) = %v, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestNetFlagsTTL(t *testing.T) {
	tests := []struct {
		ttl, want int
	}{
		{0, -1}, // host-only is NetConfig's -1
		{1, 1},
		{255, 255},
	}
	for _, tt := range tests {
		f := netFlags{iface: "lo", group: "239.255.78.1:7000", ttl: tt.ttl}
		n, err := f.config()
		if err != nil {
			t.Fatalf("--ttl %d: %v", tt.ttl, err)
		}
		if n.TTL != tt.want {
			t.Errorf("--ttl %d: NetConfig.TTL = %d, want %d", tt.ttl, n.TTL, tt.want)
		}
	}
	for _, ttl := range []int{-1, 256} {
		f := netFlags{iface: "lo", group: "239.255.78.1:7000", ttl: ttl}
		if _, err := f.config(); exitCode(err) != exitUsage {
			t.Errorf("--ttl %d: got %v, want a usage error", ttl, err)
		}
	}
}
