package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcp-dev/mcp/rmtp"
)

// --metrics: Prometheus exposition at http://ADDR/metrics
// (prometheus/client_golang). The engines' counters live on their driver
// goroutine; the drivers hand a copy (a stats snapshot) to a callback
// every ~100 ms, a statsCollector keeps the latest one, and each scrape
// turns it into constant metrics. So a scrape never touches an engine and
// costs the transfer nothing, and a value is at most ~100 ms old.
//
// The metric names are listed in the README ("Metrics"). Counters end in
// _total; bytes and seconds are in base units. The Go runtime and process
// collectors are registered too (go_*, process_*).
//
// statsCollector is generic so that other commands (mcp repair) export
// their engine's stats the same way: declare a statsCollector[T] with a
// list of stat[T] and register it in a metrics registry.

// stat is one metric read from a snapshot of type T.
type stat[T any] struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	labels []string // values of desc's variable labels
	value  func(*T) float64
}

// statsCollector is a prometheus.Collector over the latest snapshot of T.
// Before the first Set it exports nothing.
type statsCollector[T any] struct {
	latest atomic.Pointer[T]
	stats  []stat[T]
	// drops, if set, exports a map of counters by reason under dropDesc
	// (label "reason").
	drops    func(*T) map[string]uint64
	dropDesc *prometheus.Desc
}

// Set stores a snapshot; its signature fits the library's Stats callbacks.
// The caller must not modify v's maps afterwards (the library hands over
// fresh copies).
func (c *statsCollector[T]) Set(v T) { c.latest.Store(&v) }

func (c *statsCollector[T]) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range c.stats {
		ch <- s.desc // duplicates (one desc, several label values) are ignored
	}
	if c.dropDesc != nil {
		ch <- c.dropDesc
	}
}

func (c *statsCollector[T]) Collect(ch chan<- prometheus.Metric) {
	p := c.latest.Load()
	if p == nil {
		return
	}
	for _, s := range c.stats {
		ch <- prometheus.MustNewConstMetric(s.desc, s.typ, s.value(p), s.labels...)
	}
	if c.drops != nil {
		for reason, n := range c.drops(p) {
			ch <- prometheus.MustNewConstMetric(c.dropDesc, prometheus.CounterValue, float64(n), reason)
		}
	}
}

// metricBuilder makes stats with a common name prefix.
type metricBuilder[T any] struct {
	prefix string
	descs  map[string]*prometheus.Desc
	stats  []stat[T]
}

func newMetricBuilder[T any](prefix string) *metricBuilder[T] {
	return &metricBuilder[T]{prefix: prefix, descs: make(map[string]*prometheus.Desc)}
}

// add adds metric prefix_name. label, if not "", is its one variable
// label, and labelValue this stat's value of it.
func (b *metricBuilder[T]) add(name, help string, typ prometheus.ValueType, label, labelValue string, value func(*T) float64) {
	full := b.prefix + "_" + name
	d := b.descs[full]
	if d == nil {
		var labels []string
		if label != "" {
			labels = []string{label}
		}
		d = prometheus.NewDesc(full, help, labels, nil)
		b.descs[full] = d
	}
	s := stat[T]{desc: d, typ: typ, value: value}
	if label != "" {
		s.labels = []string{labelValue}
	}
	b.stats = append(b.stats, s)
}

func (b *metricBuilder[T]) counter(name, help string, value func(*T) uint64) {
	b.add(name, help, prometheus.CounterValue, "", "", func(t *T) float64 { return float64(value(t)) })
}

func (b *metricBuilder[T]) counterBy(name, help, label, labelValue string, value func(*T) uint64) {
	b.add(name, help, prometheus.CounterValue, label, labelValue, func(t *T) float64 { return float64(value(t)) })
}

func (b *metricBuilder[T]) gauge(name, help string, value func(*T) float64) {
	b.add(name, help, prometheus.GaugeValue, "", "", value)
}

func (b *metricBuilder[T]) collector(drops func(*T) map[string]uint64) *statsCollector[T] {
	c := &statsCollector[T]{stats: b.stats}
	if drops != nil {
		c.drops = drops
		c.dropDesc = prometheus.NewDesc(b.prefix+"_dropped_packets_total", "Packets dropped without being acted on, by reason.", []string{"reason"}, nil)
	}
	return c
}

// senderSnapshot is what a sender's metrics read.
type senderSnapshot struct {
	Stats  rmtp.SenderStats
	Drops  map[string]uint64
	Active bool // the session is running
	Failed bool // it ended with an error
}

func newSenderCollector() *statsCollector[senderSnapshot] {
	b := newMetricBuilder[senderSnapshot]("mcp_sender")
	b.counter("bytes_total", "Bytes handed to the socket, every packet and header included.", func(s *senderSnapshot) uint64 { return s.Stats.BytesSent })
	const pk = "Packets sent, by kind: data (first pass), parity (proactive and repair), retransmit (source symbols sent again), control (ANNOUNCE, TAIL)."
	b.counterBy("packets_total", pk, "kind", "data", func(s *senderSnapshot) uint64 { return s.Stats.DataPackets })
	b.counterBy("packets_total", pk, "kind", "parity", func(s *senderSnapshot) uint64 { return s.Stats.ParityPackets })
	b.counterBy("packets_total", pk, "kind", "retransmit", func(s *senderSnapshot) uint64 { return s.Stats.RetransPackets })
	b.counterBy("packets_total", pk, "kind", "control", func(s *senderSnapshot) uint64 { return s.Stats.ControlPackets })
	b.counter("naks_heard_total", "NAK packets heard from receivers.", func(s *senderSnapshot) uint64 { return s.Stats.NAKsHeard })
	b.counter("nak_entries_heard_total", "Block entries in the NAKs heard.", func(s *senderSnapshot) uint64 { return s.Stats.NAKEntriesHeard })
	b.counter("nak_entries_ignored_total", "NAK entries already answered or out of range.", func(s *senderSnapshot) uint64 { return s.Stats.NAKsIgnored })
	b.counter("repairs_total", "Repair rounds: NAK buckets answered with parity or retransmission.", func(s *senderSnapshot) uint64 { return s.Stats.RepairRounds })
	const rep = "Completion reports heard from receivers, by result."
	b.counterBy("receiver_reports_total", rep, "result", "complete", func(s *senderSnapshot) uint64 { return s.Stats.Completed })
	b.counterBy("receiver_reports_total", rep, "result", "failed", func(s *senderSnapshot) uint64 { return s.Stats.Failed })
	b.counter("congestion_reports_total", "Congestion reports heard from receivers.", func(s *senderSnapshot) uint64 { return s.Stats.CongestionReports })
	b.counter("rate_cuts_total", "Times the sending rate was cut for congested receivers.", func(s *senderSnapshot) uint64 { return s.Stats.RateCuts })
	b.gauge("rate_bits_per_second", "Current sending rate cap.", func(s *senderSnapshot) float64 { return s.Stats.RateBps })
	b.gauge("grtt_seconds", "Group round-trip time estimate.", func(s *senderSnapshot) float64 { return s.Stats.GRTT.Seconds() })
	b.gauge("sessions_active", "Sessions being sent (0 or 1).", func(s *senderSnapshot) float64 { return b2f(s.Active) })
	b.gauge("sessions_failed", "Sessions that ended with an error (0 or 1).", func(s *senderSnapshot) float64 { return b2f(s.Failed && !s.Active) })
	return b.collector(func(s *senderSnapshot) map[string]uint64 { return s.Drops })
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func newDaemonCollector() *statsCollector[rmtp.DaemonStats] {
	b := newMetricBuilder[rmtp.DaemonStats]("mcp_receiver")
	b.counter("bytes_total", "File bytes received and written, all sessions.", func(s *rmtp.DaemonStats) uint64 { return s.Totals.BytesDone })
	const pk = "Symbols kept, by kind: data (source), parity, repair (flagged as repair), and duplicate (not kept)."
	b.counterBy("packets_total", pk, "kind", "data", func(s *rmtp.DaemonStats) uint64 { return s.Totals.DataPackets })
	b.counterBy("packets_total", pk, "kind", "parity", func(s *rmtp.DaemonStats) uint64 { return s.Totals.ParityPackets })
	b.counterBy("packets_total", pk, "kind", "repair", func(s *rmtp.DaemonStats) uint64 { return s.Totals.RepairPackets })
	b.counterBy("packets_total", pk, "kind", "duplicate", func(s *rmtp.DaemonStats) uint64 { return s.Totals.DupPackets })
	b.counter("blocks_rebuilt_total", "Blocks rebuilt from parity.", func(s *rmtp.DaemonStats) uint64 { return s.Totals.BlocksRebuilt })
	b.counter("naks_sent_total", "NAK packets sent.", func(s *rmtp.DaemonStats) uint64 { return s.Totals.NAKsSent })
	b.counter("naks_heard_total", "NAK packets heard from peers.", func(s *rmtp.DaemonStats) uint64 { return s.Totals.NAKsHeard })
	b.counter("naks_suppressed_total", "Own NAKs cancelled because a peer's covered them.", func(s *rmtp.DaemonStats) uint64 { return s.Totals.NAKsSuppressed })
	b.counter("socket_drops_total", "Packets the data socket dropped because they were not read in time.", func(s *rmtp.DaemonStats) uint64 { return s.Totals.SocketDrops })
	b.counter("congestion_reports_sent_total", "Congestion reports sent.", func(s *rmtp.DaemonStats) uint64 { return s.Totals.CongestionSent })
	b.counter("resumed_bytes_total", "File bytes taken from a checkpoint instead of the network (sessions resumed).", func(s *rmtp.DaemonStats) uint64 { return s.Totals.ResumedBytes })
	b.gauge("sessions_active", "Sessions being received.", func(s *rmtp.DaemonStats) float64 { return float64(s.Active) })
	b.counter("sessions_completed_total", "Sessions received completely.", func(s *rmtp.DaemonStats) uint64 { return s.Completed })
	b.counter("sessions_failed_total", "Sessions that ended incomplete (their partial files removed).", func(s *rmtp.DaemonStats) uint64 { return s.Failed })
	b.counter("sessions_skipped_total", "Sessions not taken because --max-sessions were active.", func(s *rmtp.DaemonStats) uint64 { return s.Skipped })
	b.counter("files_total", "Files of completed sessions.", func(s *rmtp.DaemonStats) uint64 { return uint64(s.Totals.Files) })
	b.gauge("grtt_seconds", "Largest group round-trip time among active sessions, as their senders advertise it.", func(s *rmtp.DaemonStats) float64 { return s.GRTT.Seconds() })
	return b.collector(func(s *rmtp.DaemonStats) map[string]uint64 { return s.Totals.Drops })
}

// metrics is a command's registry. Fields are nil for what the command
// does not export.
type metrics struct {
	reg    *prometheus.Registry
	sender *statsCollector[senderSnapshot]
	daemon *statsCollector[rmtp.DaemonStats]
	hooks  *prometheus.CounterVec
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &metrics{reg: reg}
}

// withSender adds the sender's metrics.
func (m *metrics) withSender() *metrics {
	m.sender = newSenderCollector()
	m.reg.MustRegister(m.sender)
	return m
}

// withDaemon adds the receive daemon's metrics, hooks included.
func (m *metrics) withDaemon() *metrics {
	m.daemon = newDaemonCollector()
	m.hooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcp_hooks_total",
		Help: "--exec hooks run, by result: ok, failed (non-zero exit or did not start), timeout (killed after --exec-timeout).",
	}, []string{"result"})
	for _, r := range []string{"ok", "failed", "timeout"} {
		m.hooks.WithLabelValues(r) // exported as 0 before the first hook
	}
	m.reg.MustRegister(m.daemon, m.hooks)
	return m
}

func (m *metrics) hookDone(r hookResult) {
	if m == nil || m.hooks == nil {
		return
	}
	switch {
	case r.TimedOut:
		m.hooks.WithLabelValues("timeout").Inc()
	case r.Err != nil:
		m.hooks.WithLabelValues("failed").Inc()
	default:
		m.hooks.WithLabelValues("ok").Inc()
	}
}

// serve listens on addr and serves /metrics until stop is called. It
// returns once listening, so a bad or busy address is an error at once.
func (m *metrics) serve(addr string, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w (pass a free HOST:PORT, e.g. 127.0.0.1:9477)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("metrics server", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}, nil
}
