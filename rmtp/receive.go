package rmtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// ReceiveOptions configures Receive.
type ReceiveOptions struct {
	Net NetConfig
	// Dir is the destination directory. Required.
	Dir string
	// Receiver tunes the engine; its ControlGroup is filled in.
	Receiver ReceiverConfig
	// Repair is the region group of a repair server (mcp repair --serve):
	// the receiver NAKs and reports to its feedback address (port+1) and
	// hears repairs on it. Zero: NAK to the sender's group.
	Repair netip.AddrPort
	// AutoRepair picks a repair server from the ADVERTs heard on the data
	// group's feedback address (Receiver.RepairServer has the rule).
	AutoRepair bool
	// StateDir, if set, holds the session's checkpoint (checkpointing.go):
	// saved every CheckpointInterval while blocks complete, taken up when
	// the same session is received again after a crash, kept with the
	// temporary files when a receive fails in a way worth resuming, and
	// removed when it succeeds. Empty: no checkpoints.
	StateDir string
	// CheckpointInterval: see DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// Progress, if set, is called about every 100 ms with file bytes
	// complete and the total (0 until the manifest is known).
	Progress func(done, total uint64)
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger gets lifecycle and diagnostic logs. If nil, nothing is logged.
	Logger *slog.Logger
}

// ReceiveReport summarises a receive.
type ReceiveReport struct {
	Session           string        `json:"session"`
	Files             int           `json:"files"`
	Bytes             uint64        `json:"bytes"`
	Duration          time.Duration `json:"duration_ns"` // from the first ANNOUNCE to the end
	GoodputBitsPerSec float64       `json:"goodput_bps"`
	Stats             ReceiverStats `json:"stats"`
	// DataSocket is the data socket's buffer and offload state at the
	// end: whether it still read coalesced buffers (GRO) and how many.
	DataSocket  SocketStats `json:"data_socket"`
	MaxRSSBytes uint64      `json:"max_rss_bytes"`
}

// loadSampleInterval is how often a receiver looks at its data socket's
// queue (Receiver.NoteLoad); one getsockopt each time.
const loadSampleInterval = 5 * time.Millisecond

// Receive joins the group, receives one session into opts.Dir and returns
// once every file is verified and in place. On any failure, including ctx
// ending, no partial file is left in place.
func Receive(ctx context.Context, opts ReceiveOptions) (ReceiveReport, error) {
	var rep ReceiveReport
	logger := opts.Logger
	if logger == nil {
		logger = discardLogger
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.Dir == "" {
		return rep, fmt.Errorf("no destination directory: pass --dir")
	}
	if opts.Net.Logger == nil {
		opts.Net.Logger = logger
	}
	rn, err := opts.Net.resolve()
	if err != nil {
		return rep, err
	}
	store, err := NewFileStore(opts.Dir)
	if err != nil {
		return rep, err
	}
	cfg := opts.Receiver
	cfg.ControlGroup = rn.control
	if opts.Repair.IsValid() {
		if !opts.Repair.Addr().Is4() || !opts.Repair.Addr().IsMulticast() || opts.Repair.Port() == 0 || opts.Repair.Port() == 65535 {
			return rep, fmt.Errorf("repair server group %v is not an IPv4 multicast group:port with port below 65535 (pass mcp repair's --serve address)", opts.Repair)
		}
		cfg.ControlGroup = FeedbackOf(opts.Repair)
	} else if opts.AutoRepair {
		cfg.AutoRepair = true
		cfg.LocalPrefix = interfacePrefix(rn.ifi, rn.ifaddr)
	}
	cfg.Logger = logger
	var ck *checkpointer
	if opts.StateDir != "" {
		if ck, err = newCheckpointer(opts.StateDir, opts.CheckpointInterval, logger); err != nil {
			return rep, err
		}
		store.reserved = stateDirIn(opts.Dir, opts.StateDir)
		cfg.Resume = ck.load
	}
	r, err := NewReceiver(cfg, store)
	if err != nil {
		return rep, err
	}
	dataConn, err := rn.openBulk(rn.data)
	if err != nil {
		return rep, err
	}
	defer dataConn.Close()
	ctlConn, err := rn.open(rn.control)
	if err != nil {
		return rep, err
	}
	defer ctlConn.Close()
	seal, keys, err := opts.Net.keying(now, logger)
	if err != nil {
		return rep, err
	}
	ctlOut := seal(ctlConn)
	logger.Info("waiting for a session", "group", rn.data, "interface", rn.ifi.Name, "dir", opts.Dir)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rx := make(chan *rxBatch)
	free := newRxPool(8)
	go readLoop(rctx, dataConn, rx, free, dataCoalesce)
	go readLoop(rctx, ctlConn, rx, free, 0)
	// joinRepair opens the repair server's region: repairs on the group,
	// peers' NAKs (damping) on its feedback address.
	joinRepair := func(g netip.AddrPort) error {
		repConn, err := rn.openBulk(g)
		if err != nil {
			return err
		}
		regConn, err := rn.open(FeedbackOf(g))
		if err != nil {
			repConn.Close()
			return err
		}
		context.AfterFunc(rctx, func() { repConn.Close(); regConn.Close() })
		go readLoop(rctx, repConn, rx, free, dataCoalesce)
		go readLoop(rctx, regConn, rx, free, 0)
		logger.Info("using repair server", "region", g)
		return nil
	}
	if opts.Repair.IsValid() {
		if err := joinRepair(opts.Repair); err != nil {
			return rep, err
		}
	}
	autoJoined := false

	var start, lastLoad time.Time
	out := make([]Datagram, 0, 16)
	l := &loop{
		now:  now,
		eng:  r,
		rx:   rx,
		free: free,
		drop: r.Drop,
		keys: keys,
		outgoing: func(now time.Time) error {
			if start.IsZero() {
				if _, ok := r.Session(); ok {
					start = now
				}
			}
			if g, ok := r.RepairServer(); ok && !autoJoined {
				autoJoined = true
				if err := joinRepair(g); err != nil {
					return err
				}
			}
			if ck != nil {
				ck.maybe(now, r, store)
			}
			if now.Sub(lastLoad) >= loadSampleInterval {
				lastLoad = now
				if l, err := dataConn.Load(); err == nil {
					r.NoteLoad(now, l)
				}
			}
			out = r.AppendOutgoing(now, out[:0])
			if len(out) > 0 {
				if _, err := ctlOut.WriteBatch(out); err != nil {
					logger.Warn("send feedback", "err", err)
				}
			}
			return nil
		},
		finished: func(time.Time) bool { return (r.Done() && !r.Reporting()) || r.Err() != nil },
	}
	if opts.Progress != nil {
		l.progress = func() { opts.Progress(r.Progress()) }
	}
	err = l.run(ctx)
	if err == nil {
		err = r.Err()
	}
	end := now()
	st := r.Stats()
	rep.Session, rep.Files, rep.Bytes, rep.Stats = st.Session, st.Files, st.Bytes, st
	rep.DataSocket = dataConn.Stats()
	rep.MaxRSSBytes = maxRSS()
	if !start.IsZero() {
		rep.Duration = end.Sub(start)
		if rep.Duration > 0 {
			rep.GoodputBitsPerSec = float64(st.Bytes) * 8 / rep.Duration.Seconds()
		}
	}
	if opts.Progress != nil {
		opts.Progress(r.Progress())
	}
	id, haveSession := r.Session()
	if ck != nil {
		defer ck.tidy()
	}
	if err != nil {
		kept := false
		if ck != nil && resumable(err) && r.Checkpoint() != nil {
			if cerr := ck.final(r, store); cerr == nil {
				kept = store.Close() == nil
			} else {
				logger.Warn("final checkpoint", "err", cerr)
			}
		}
		if !kept {
			if aerr := store.Abort(); aerr != nil {
				logger.Warn("cleanup", "err", aerr)
			}
			if ck != nil && haveSession {
				ck.remove(id)
			}
		}
		what := "partial files removed"
		if kept {
			what = fmt.Sprintf("what was received is kept for a resume (%s and hidden .part files): run the same command again", opts.StateDir)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			done, total := r.Progress()
			if !haveSession {
				return rep, fmt.Errorf("no session heard on %v via %s: %w (%s)", rn.data, rn.ifi.Name, err, keyHint(st.Drops))
			}
			return rep, fmt.Errorf("session %s incomplete (%d of %d bytes): %w; %s", st.Session, done, total, err, what)
		}
		if kept {
			return rep, fmt.Errorf("%w; %s", err, what)
		}
		return rep, err
	}
	if ck != nil && haveSession {
		ck.remove(id)
	}
	return rep, nil
}
