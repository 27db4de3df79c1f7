package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/mcp-dev/mcp/repairtree"
)

type repairFlags struct {
	net         netFlags
	out         outFlags
	serve       string
	upstream    string
	relay       bool
	relayBind   string
	cacheDir    string
	rate        string
	maxSessions int
	sessionTTL  time.Duration
	metrics     string
}

func newRepairCmd() *cobra.Command {
	var f repairFlags
	cmd := &cobra.Command{
		Use:   "repair --serve IP:PORT --cache-dir DIR [flags]",
		Short: "Run a repair server for a region (long-running)",
		Long: `Repair joins the data group as a receiver of every session sent on it,
caches each session on disk, and serves a region: receivers started with
--repair IP:PORT (or --repair auto) NAK to it and hear its repairs on the
--serve group. It answers from its cache with fresh Reed-Solomon parity
(or retransmission), and asks upstream only for what it lacks itself,
once for the whole region, so the sender hears one NAK per region.

--upstream is the data group by default, or the --serve group of a
parent repair server (a deeper tree). With --relay, --upstream is instead
the unicast IP:PORT of a sender started with --relay-listen: the stream
arrives over UDP unicast and is re-multicast on the --serve group, for a
site the data group does not reach; its receivers use the --serve group
as their --group.

It runs until SIGINT or SIGTERM and serves any number of sessions, one
after another or at once (up to --max-sessions).`,
		Example: `  mcp repair --interface eth0 --serve 239.255.78.1:7800 --cache-dir /var/cache/mcp
  mcp repair --interface eth0 --serve 239.255.78.9:7800 --upstream 239.255.78.1:7800 --cache-dir /var/cache/mcp
  mcp repair --interface eth1 --relay --upstream 10.0.0.5:7900 --serve 239.255.79.1:7700 --cache-dir /var/cache/mcp --metrics 127.0.0.1:9478`,
		Args: noArgs("repair takes no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRepair(cmd, &f)
		},
	}
	fs := cmd.Flags()
	f.net.add(cmd)
	fs.StringVar(&f.serve, "serve", "", "region group IP:PORT this server serves (repairs go there, NAKs come to PORT+1); required")
	fs.StringVar(&f.upstream, "upstream", "",
		"where to ask for what this server lacks: the data group (default), a parent repair server's --serve group, or with --relay the sender's --relay-listen IP:PORT")
	fs.BoolVar(&f.relay, "relay", false, "take the stream over unicast from --upstream and re-multicast it on --serve")
	fs.StringVar(&f.relayBind, "relay-bind", "", "with --relay: local IP:PORT of the unicast link (default: the address the route to --upstream leaves from, any port)")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "directory for the session caches (cleared at start); required")
	fs.StringVar(&f.rate, "rate", formatRate(repairtree.DefaultRateBitsPerSec), "most bits per second sent into the region (repairs, announces); relayed data is not paced")
	fs.IntVar(&f.maxSessions, "max-sessions", repairtree.DefaultMaxSessions, "most sessions cached at once")
	fs.DurationVar(&f.sessionTTL, "session-ttl", repairtree.DefaultSessionTTL, "forget a session (and remove its cache) this long after the last packet or NAK for it")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9478; empty: off")
	f.out.add(cmd)
	return cmd
}

func (f *repairFlags) options() (repairtree.RunOptions, error) {
	var o repairtree.RunOptions
	n, err := f.net.config()
	if err != nil {
		return o, err
	}
	if f.serve == "" {
		return o, usageErrorf("no region: pass --serve IP:PORT, the group this server serves")
	}
	region, err := parseGroup(f.serve)
	if err != nil {
		return o, usageErrorf("--serve: %v", err)
	}
	var up netip.AddrPort
	switch {
	case f.relay:
		if up, err = netip.ParseAddrPort(f.upstream); err != nil || up.Addr().IsMulticast() {
			return o, usageErrorf("--relay needs --upstream HOST:PORT, the unicast address of a sender started with --relay-listen")
		}
	case f.upstream != "":
		if up, err = parseGroup(f.upstream); err != nil {
			return o, usageErrorf("--upstream: %v (without --relay it is a multicast group)", err)
		}
	}
	if f.relayBind != "" {
		if !f.relay {
			return o, usageErrorf("--relay-bind needs --relay")
		}
		if o.RelayBind, err = netip.ParseAddrPort(f.relayBind); err != nil {
			return o, usageErrorf("bad --relay-bind %q: want IP:PORT", f.relayBind)
		}
	}
	if f.cacheDir == "" {
		return o, usageErrorf("no cache directory: pass --cache-dir DIR")
	}
	rate, err := parseRate(f.rate)
	if err != nil {
		return o, err
	}
	if f.maxSessions < 1 {
		return o, usageErrorf("--max-sessions %d must be at least 1", f.maxSessions)
	}
	if f.sessionTTL <= 0 {
		return o, usageErrorf("--session-ttl %v must be positive", f.sessionTTL)
	}
	o.Net = n
	o.CacheDir = f.cacheDir
	o.Server = repairtree.Config{
		Upstream:       up,
		Region:         region,
		Relay:          f.relay,
		RateBitsPerSec: rate,
		MaxSessions:    f.maxSessions,
		SessionTTL:     f.sessionTTL,
	}
	return o, nil
}

func runRepair(cmd *cobra.Command, f *repairFlags) error {
	opts, err := f.options()
	if err != nil {
		return err
	}
	if opts.Logger, err = f.out.logger(cmd, cmd.ErrOrStderr()); err != nil {
		return err
	}
	if f.metrics != "" {
		m := newMetrics()
		c := newRepairCollector()
		m.reg.MustRegister(c)
		stop, err := m.serve(f.metrics, opts.Logger)
		if err != nil {
			return err
		}
		defer stop()
		opts.OnStats = c.Set
	}
	var ev *eventWriter
	if f.out.json {
		ev = newEventWriter(cmd.OutOrStdout())
		opts.Server.Events = ev.callback()
	}
	st, err := repairtree.Run(cmd.Context(), opts)
	if f.out.json {
		// The last line; unlike send and receive it reports the server's
		// counters under "stats" (README, "JSON events").
		doc := struct {
			Time  string           `json:"time"`
			Event string           `json:"event"`
			OK    bool             `json:"ok"`
			Error string           `json:"error,omitempty"`
			Stats repairtree.Stats `json:"stats"`
		}{Time: ev.stamp(), Event: "summary", OK: err == nil, Stats: st}
		if err != nil {
			doc.Error = err.Error()
		}
		if werr := ev.write(doc); werr != nil && err == nil {
			err = werr
		}
	} else if err == nil && !f.out.quiet {
		fmt.Fprintf(cmd.OutOrStdout(), "repair server stopped: %d sessions, %d region NAKs, %d repairs (%s), %d NAKs forwarded upstream, %d receivers complete\n",
			st.SessionsTotal, st.RegionNAKs, st.RepairPackets, humanBytes(st.RepairBytes), st.NAKsForwarded, st.ReceiversComplete)
	}
	return err
}

// newRepairCollector exports a repair server's counters (README,
// "Metrics").
func newRepairCollector() *statsCollector[repairtree.Stats] {
	b := newMetricBuilder[repairtree.Stats]("mcp_repair")
	b.counter("packets_total", "Packets heard on every input.", func(s *repairtree.Stats) uint64 { return s.PacketsIn })
	b.counter("naks_heard_total", "NAK packets heard from the region.", func(s *repairtree.Stats) uint64 { return s.RegionNAKs })
	b.counter("nak_entries_heard_total", "Block entries in the region's NAKs.", func(s *repairtree.Stats) uint64 { return s.RegionNAKEntries })
	b.counter("nak_entries_lacking_total", "Region NAK entries for blocks not cached (yet).", func(s *repairtree.Stats) uint64 { return s.NAKsLacking })
	b.counter("naks_forwarded_total", "NAK packets sent upstream for this server's own losses.", func(s *repairtree.Stats) uint64 { return s.NAKsForwarded })
	b.counter("naks_suppressed_total", "Own NAKs cancelled because a sibling's covered them.", func(s *repairtree.Stats) uint64 { return s.NAKsSuppressed })
	b.counter("repairs_total", "Repair rounds answered.", func(s *repairtree.Stats) uint64 { return s.RepairRounds })
	b.counter("repair_packets_total", "Repair packets sent into the region (parity and retransmissions).", func(s *repairtree.Stats) uint64 { return s.RepairPackets })
	b.counter("repair_bytes_total", "Bytes of repair packets sent into the region.", func(s *repairtree.Stats) uint64 { return s.RepairBytes })
	b.counter("relayed_packets_total", "Packets re-multicast into the region (--relay).", func(s *repairtree.Stats) uint64 { return s.Relayed })
	b.gauge("cache_bytes", "File bytes held in the cache.", func(s *repairtree.Stats) float64 { return float64(s.CacheBytes) })
	b.gauge("sessions", "Sessions cached now.", func(s *repairtree.Stats) float64 { return float64(s.Sessions) })
	b.counter("sessions_total", "Sessions ever cached.", func(s *repairtree.Stats) uint64 { return s.SessionsTotal })
	b.counter("sessions_failed_total", "Sessions whose upstream failed before the cache was complete.", func(s *repairtree.Stats) uint64 { return s.SessionsFailed })
	const rep = "Receivers of the region that reported, by result."
	b.counterBy("receivers_total", rep, "result", "complete", func(s *repairtree.Stats) uint64 { return s.ReceiversComplete })
	b.counterBy("receivers_total", rep, "result", "failed", func(s *repairtree.Stats) uint64 { return s.ReceiversFailed })
	b.gauge("depth", "Depth in the tree (1 under the sender).", func(s *repairtree.Stats) float64 { return float64(s.Depth) })
	return b.collector(nil)
}

var _ prometheus.Collector = (*statsCollector[repairtree.Stats])(nil)
