package repairtree

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
)

// RunOptions configures Run.
type RunOptions struct {
	// Net is the interface, TTL and data group (Net.Group).
	Net rmtp.NetConfig
	// Server tunes the engine; DataGroup is taken from Net.Group and
	// NewStore from CacheDir.
	Server Config
	// CacheDir holds the sessions' caches. Required.
	CacheDir string
	// RelayBind is the local unicast address of the relay link (relay
	// mode). If zero, an ephemeral port on the address the route to the
	// parent leaves from (the interface's address if there is no route):
	// a relay host's region interface is usually not the one that faces
	// its parent, and a parent cannot answer an address it has no route to.
	RelayBind netip.AddrPort
	// OnStats, if set, gets a snapshot of the counters about every
	// 100 ms, on the engine's goroutine: it must not block.
	OnStats func(Stats)
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger gets lifecycle and diagnostic logs. If nil, nothing is logged.
	Logger *slog.Logger
}

// Run serves as a repair server until ctx ends, and returns the final
// counters. It ends with nil when ctx was cancelled (a signal): a repair
// server runs until stopped.
func Run(ctx context.Context, opts RunOptions) (Stats, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.Net.Logger == nil {
		opts.Net.Logger = logger
	}
	nw, err := rmtp.ResolveNetwork(opts.Net, now)
	if err != nil {
		return Stats{}, err
	}
	cache, err := OpenDiskCache(opts.CacheDir)
	if err != nil {
		return Stats{}, err
	}
	cfg := opts.Server
	if !cfg.Relay {
		cfg.DataGroup = nw.Group()
	}
	cfg.NewStore = cache.NewStore
	cfg.Logger = logger
	srv, err := New(cfg, now())
	if err != nil {
		return Stats{}, err
	}
	cfg = srv.cfg
	saved, err := cache.Saved(logger)
	if err != nil {
		return Stats{}, err
	}
	for _, rec := range saved {
		if err := srv.Restore(now(), rec); err != nil {
			logger.Warn("cached session not restored; removing it", "err", err)
		}
	}

	var inputs []rmtp.Input
	var conns []*rmtp.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func(g netip.AddrPort, tag uint8, coalesce time.Duration) (*rmtp.UDPConn, error) {
		c, err := nw.OpenGroup(g)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		inputs = append(inputs, rmtp.Input{Conn: c, Tag: tag, Coalesce: coalesce})
		return c, nil
	}
	var relay *rmtp.UDPConn
	if cfg.Relay {
		bind := opts.RelayBind
		if !bind.IsValid() {
			bind = netip.AddrPortFrom(nw.InterfaceAddr(), 0)
			if a, err := routeSource(cfg.Upstream); err == nil {
				bind = netip.AddrPortFrom(a, 0)
			}
		}
		if relay, err = nw.OpenUnicast(bind); err != nil {
			return Stats{}, err
		}
		conns = append(conns, relay)
		inputs = append(inputs, rmtp.Input{Conn: relay, Tag: InData, Coalesce: rmtp.DataCoalesce})
	} else {
		if _, err := open(cfg.DataGroup, InData, rmtp.DataCoalesce); err != nil {
			return Stats{}, err
		}
		if cfg.Upstream != cfg.DataGroup {
			if _, err := open(cfg.Upstream, InUpstreamRepair, rmtp.DataCoalesce); err != nil {
				return Stats{}, err
			}
		}
		if _, err := open(rmtp.FeedbackOf(cfg.Upstream), InUpstreamControl, 0); err != nil {
			return Stats{}, err
		}
	}
	regionCtl, err := open(rmtp.FeedbackOf(cfg.Region), InRegionControl, 0)
	if err != nil {
		return Stats{}, err
	}
	logger.Info("repair server up", "region", cfg.Region, "upstream", cfg.Upstream, "relay", cfg.Relay,
		"group", cfg.DataGroup, "interface", nw.Interface().Name, "cache", opts.CacheDir, "source", fmt.Sprintf("%08x", cfg.Source))

	drops := make(map[string]uint64)
	out := make([]rmtp.Datagram, 0, rmtp.DefaultBatch)
	var viaRelay []rmtp.Datagram
	var lastStats, lastSave time.Time
	var saving chan error
	collect := func(wait bool) {
		if saving == nil {
			return
		}
		select {
		case err := <-saving:
			saving = nil
			if err != nil {
				logger.Warn("cache checkpoint not saved", "err", err)
			}
		default:
			if wait {
				if err := <-saving; err != nil {
					logger.Warn("cache checkpoint not saved", "err", err)
				}
				saving = nil
			}
		}
	}
	var relayOut rmtp.PacketConn
	if relay != nil {
		relayOut = nw.Sealed(relay)
	}
	regionOut := nw.Sealed(regionCtl)
	d := &rmtp.Driver{
		Net:      nw,
		Now:      now,
		Inputs:   inputs,
		Handle:   srv.HandlePacket,
		Timer:    srv.HandleTimer,
		Deadline: srv.NextDeadline,
		Drop:     func(reason string) { drops[reason]++ },
		Outgoing: func(t time.Time) error {
			for range 4 { // then read again, as Send does
				out = srv.AppendOutgoing(t, out[:0])
				if len(out) == 0 {
					break
				}
				// What goes to the relay parent leaves by the relay
				// socket, so its replies come back there.
				viaRelay = viaRelay[:0]
				n := 0
				for _, dg := range out {
					if relay != nil && dg.Addr == cfg.Upstream {
						viaRelay = append(viaRelay, dg)
					} else {
						out[n] = dg
						n++
					}
				}
				if len(viaRelay) > 0 {
					if _, err := relayOut.WriteBatch(viaRelay); err != nil {
						logger.Warn("send to relay parent", "peer", cfg.Upstream, "err", err)
					}
				}
				if n > 0 {
					if _, err := regionOut.WriteBatch(out[:n]); err != nil {
						logger.Warn("send", "err", err)
					}
				}
				if len(out) < cap(out) {
					break
				}
				t = now()
			}
			if collect(false); saving == nil && t.Sub(lastSave) >= DefaultCheckpointInterval {
				lastSave = t
				if jobs := srv.dirty(); len(jobs) > 0 {
					ch := make(chan error, 1)
					saving = ch
					go func() { ch <- save(jobs) }()
				}
			}
			if opts.OnStats != nil && t.Sub(lastStats) >= 100*time.Millisecond {
				lastStats = t
				opts.OnStats(srv.Stats())
			}
			return nil
		},
	}
	err = d.Run(ctx)
	collect(true)
	if serr := save(srv.dirty()); serr != nil {
		logger.Warn("cache checkpoint not saved", "err", serr)
	}
	st := srv.Stats()
	if opts.OnStats != nil {
		opts.OnStats(st)
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	logger.Info("repair server down", "sessions_total", st.SessionsTotal, "repair_packets", st.RepairPackets, "drops", drops)
	return st, err
}

// routeSource returns the local address the kernel picks for unicast to
// dst: a connected UDP socket is routed but sends nothing.
func routeSource(dst netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("no route to %v", dst)
	}
	return a, nil
}
