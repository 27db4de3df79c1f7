package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcp-dev/mcp/rmtp"
)

// netFlags are the flags every network command takes: where the session
// runs.
type netFlags struct {
	iface     string
	group     string
	ttl       int
	key       string
	clockSkew time.Duration
	offload   bool
}

func (f *netFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.iface, "interface", "",
		"multicast interface: a name (eth0) or one of its IPv4 addresses; required")
	fs.StringVar(&f.group, "group", rmtp.DefaultGroup.String(),
		"multicast group IP:PORT for data, IPv4 or IPv6 ([ff15::1234]:7700); NAKs and reports use PORT+1")
	fs.IntVar(&f.ttl, "ttl", rmtp.DefaultTTL,
		"multicast TTL: how many routers packets cross; 0 keeps them on this host")
	fs.StringVar(&f.key, "key", "",
		"pre-shared key file (make one with mcp keygen): seal every packet and accept only packets sealed with it; every host of the group needs the same key")
	fs.BoolVar(&f.offload, "offload", true,
		"UDP segmentation offload (GSO) on sends and coalesced receives (GRO) on the data socket, several times less CPU per datagram (README, \"UDP offload\"); falls back by itself if the kernel refuses; --offload=false sends and reads datagram by datagram")
	fs.DurationVar(&f.clockSkew, "clock-skew", rmtp.DefaultClockSkew,
		"with --key: drop packets sent more than this far from this host's clock (replay protection; hosts' clocks must agree this well)")
}

// config validates the flags and returns the library's view of them.
// Every problem is a usage error.
func (f *netFlags) config() (rmtp.NetConfig, error) {
	var n rmtp.NetConfig
	if f.iface == "" {
		// The library's message lists the interfaces that exist.
		_, _, err := rmtp.ResolveInterface("")
		return n, &usageError{err}
	}
	g, err := parseGroup(f.group)
	if err != nil {
		return n, err
	}
	if f.ttl < 0 || f.ttl > 255 {
		return n, usageErrorf("--ttl %d out of range [0, 255]", f.ttl)
	}
	if f.clockSkew < 0 {
		return n, usageErrorf("--clock-skew %v must not be negative (0: the default, %v)", f.clockSkew, rmtp.DefaultClockSkew)
	}
	if f.key != "" {
		k, err := rmtp.LoadKey(f.key)
		if err != nil {
			return n, fmt.Errorf("--key: %w", err)
		}
		n.Key = k
		n.ClockSkew = f.clockSkew
	}
	n.Interface = f.iface
	n.Offload = f.offload
	n.Group = g
	n.TTL = f.ttl
	if f.ttl == 0 {
		n.TTL = -1 // NetConfig: zero means the default, -1 means 0
	}
	return n, nil
}

// parseGroup parses a multicast group "IP:PORT". A bare IP gets the
// default port. The port must leave room for the feedback port, PORT+1.
func parseGroup(s string) (netip.AddrPort, error) {
	var ap netip.AddrPort
	if a, err := netip.ParseAddr(s); err == nil {
		ap = netip.AddrPortFrom(a, rmtp.DefaultGroup.Port())
	} else {
		ap, err = netip.ParseAddrPort(s)
		if err != nil {
			return ap, usageErrorf("bad --group %q: want IP:PORT, for example %v", s, rmtp.DefaultGroup)
		}
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsMulticast() {
		return ap, usageErrorf("--group %v is not a multicast address: use 224.0.0.0/4 (239.0.0.0/8 for private use), for example %v, or IPv6 ff00::/8 in brackets, for example [ff15::1234]:7700", ap, rmtp.DefaultGroup)
	}
	if ap.Port() == 0 || ap.Port() == 65535 {
		return ap, usageErrorf("--group port %d out of range [1, 65534]: PORT+1 carries feedback", ap.Port())
	}
	return ap, nil
}

// parseRate parses a rate in bits per second: a decimal number with an
// optional K, M or G (powers of 1000) and an optional "bps", "bit" or
// "bits", in any case: "200M", "1.5g", "800kbps", "1e9". "0" and
// "unlimited" mean unpaced and return -1, as SenderConfig wants.
func parseRate(s string) (float64, error) {
	bad := func() (float64, error) {
		return 0, usageErrorf("bad rate %q: want bits per second such as 200M, 1.5G, 800Kbps, or 0 or unlimited for no pacing", s)
	}
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "unlimited" {
		return -1, nil
	}
	for _, unit := range []string{"bps", "bits", "bit"} {
		if strings.HasSuffix(t, unit) {
			t = strings.TrimSuffix(t, unit)
			break
		}
	}
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1e3
		case 'm':
			mult = 1e6
		case 'g':
			mult = 1e9
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	// ParseFloat also takes "inf", "nan" and hex floats; allow only
	// plain decimals.
	if t == "" || strings.ContainsFunc(t, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r == '.' || r == 'e' || r == '+' || r == '-')
	}) {
		return bad()
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return bad()
	}
	v *= mult
	if math.IsInf(v, 0) {
		return bad()
	}
	if v == 0 {
		return -1, nil
	}
	if v < 1 {
		return 0, usageErrorf("rate %q is below 1 bit per second", s)
	}
	return v, nil
}

// parseSendRate parses send's --rate: a rate (parseRate), "auto" (find
// the rate, up to rmtp.AutoRateCeiling) or "auto:R" (find it, never over
// R). It reports whether the rate is found.
func parseSendRate(s string) (float64, bool, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "auto" {
		return rmtp.AutoRateCeiling, true, nil
	}
	if c, ok := strings.CutPrefix(t, "auto:"); ok {
		r, err := parseRate(c)
		if err != nil {
			return 0, false, err
		}
		if r < 0 {
			return 0, false, usageErrorf("--rate %s: auto needs a ceiling such as auto:1G, or plain auto", s)
		}
		return r, true, nil
	}
	r, err := parseRate(s)
	return r, false, err
}

// formatRate is the inverse of parseRate for flag defaults: 200e6 is
// "200M", -1 is "unlimited".
func formatRate(bps float64) string {
	if bps < 0 {
		return "unlimited"
	}
	for _, u := range []struct {
		v float64
		s string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "K"}} {
		if bps >= u.v {
			return strconv.FormatFloat(bps/u.v, 'f', -1, 64) + u.s
		}
	}
	return strconv.FormatFloat(bps, 'f', -1, 64)
}

// parseSize parses a size in bytes: a decimal number with an optional K,
// M, G or T (powers of 1024), optionally followed by "iB" or "B", in any
// case: "64M", "1.5GiB", "4096".
func parseSize(s string) (uint64, error) {
	bad := func() (uint64, error) {
		return 0, usageErrorf("bad size %q: want bytes such as 4096, 512K, 64M or 1.5G (powers of 1024)", s)
	}
	t := strings.ToLower(strings.TrimSpace(s))
	if strings.HasSuffix(t, "ib") {
		t = strings.TrimSuffix(t, "ib")
		if t == "" || !strings.ContainsRune("kmgt", rune(t[len(t)-1])) {
			return bad()
		}
	} else {
		t = strings.TrimSuffix(t, "b")
	}
	mult := 1.0
	if n := len(t); n > 0 {
		if i := strings.IndexByte("kmgt", t[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			t = t[:n-1]
		}
	}
	if t == "" || strings.ContainsFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') }) {
		return bad()
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return bad()
	}
	v = math.Round(v * mult)
	if v >= 1<<53 {
		return 0, usageErrorf("size %q is too large", s)
	}
	return uint64(v), nil
}

// outFlags control what a command prints.
type outFlags struct {
	json      bool
	quiet     bool
	logLevel  string
	logFormat string
}

func (f *outFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&f.json, "json", false,
		"write one JSON document with the outcome and report to stdout (no progress bar)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false,
		"no progress bar and no summary; errors still go to stderr")
	fs.StringVar(&f.logLevel, "log-level", "warn",
		"log level on stderr: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text",
		"log format on stderr: text or json (json by default with --json)")
}

// logger returns the logger the flags of cmd ask for, writing to w.
// Without --log-format, --json selects JSON logs, so that everything a
// script reads is JSON (STYLE.md section 6).
func (f *outFlags) logger(cmd *cobra.Command, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	switch strings.ToLower(f.logLevel) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, usageErrorf("bad --log-level %q: want debug, info, warn or error", f.logLevel)
	}
	format := strings.ToLower(f.logFormat)
	if f.json && !cmd.Flags().Changed("log-format") {
		format = "json"
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("bad --log-format %q: want text or json", f.logFormat)
}

// noArgs rejects positional arguments with a usage error; hint says what
// to do instead.
func noArgs(hint string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageErrorf("unexpected argument %q: %s", args[0], hint)
		}
		return nil
	}
}

// nonNegative rejects a negative duration flag with a usage error.
func nonNegative(name string, d time.Duration) error {
	if d < 0 {
		return usageErrorf("--%s %v must not be negative", name, d)
	}
	return nil
}
