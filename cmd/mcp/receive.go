package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

type receiveFlags struct {
	net           netFlags
	out           outFlags
	dir           string
	timeout       time.Duration
	senderTimeout time.Duration
	maxManifest   string
	maxFiles      int
	maxBytes      string
	daemon        daemonFlags // daemon.go

	repair string // --repair

	stateDir           string        // --state-dir
	checkpointInterval time.Duration // --checkpoint-interval

	session   string // --session
	fromCache bool   // --from-cache
}

func newReceiveCmd() *cobra.Command {
	var f receiveFlags
	cmd := &cobra.Command{
		Use:   "receive --dir DIR [flags]",
		Short: "Receive one session into a directory",
		Long: `Receive joins the group, takes the first session announced on it and
writes its files under --dir. Each file is checked against its SHA-256
before it appears under its name; on failure no partial file is left.

With --daemon it receives session after session, up to --max-sessions at
once, until SIGINT or SIGTERM (then it aborts the sessions in flight,
removing their partial files, and exits 0), never the same session twice,
and runs --exec after each verified session (or file, --exec-per-file).

Start receivers before the sender.`,
		Example: `  mcp receive --interface eth0 --dir /srv/incoming
  mcp receive --interface eth0 --dir /srv/incoming --daemon --exec ./ingest.sh --metrics 127.0.0.1:9477
  mcp receive --interface eth0 --group 239.1.2.3:9000 --dir . --timeout 10m --json`,
		Args: noArgs("receive takes no arguments; pass the destination with --dir"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReceive(cmd, &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.dir, "dir", "", "destination directory, created if missing; required")
	f.net.add(cmd)
	fs.DurationVar(&f.timeout, "timeout", 0,
		"give up if the session is not complete after this long; 0: wait forever")
	fs.DurationVar(&f.senderTimeout, "sender-timeout", rmtp.DefaultSenderTimeout,
		"give up on a session whose sender has been silent this long; 0: never")
	fs.StringVar(&f.maxManifest, "max-manifest", "16M",
		"refuse (exit 5) a session whose manifest is larger; K, M, G are powers of 1024")
	fs.IntVar(&f.maxFiles, "max-files", rmtp.DefaultMaxFiles,
		"refuse (exit 5) a session with more files, empty ones included")
	fs.StringVar(&f.maxBytes, "max-bytes", "0",
		"refuse (exit 5) a session with more bytes of files; 0: no limit but free space")
	fs.StringVar(&f.repair, "repair", "",
		"repair server to NAK to: its --serve group IP:PORT, or auto to pick one from the ADVERTs heard (same subnet first, then deepest); empty: NAK to the sender")
	fs.StringVar(&f.session, "session", "",
		"take only this session (its 16-hex-digit ID, as mcp send prints it), live or announced from a repair server's cache")
	fs.BoolVar(&f.fromCache, "from-cache", false,
		"also take a session that a repair server announces from its cache after its sender left (a receiver that comes late); without it only live sessions are taken")
	fs.StringVar(&f.stateDir, "state-dir", "",
		"where checkpoints go, so a receive killed or failed midway resumes when run again (default DIR/"+rmtp.StateDirName+")")
	fs.DurationVar(&f.checkpointInterval, "checkpoint-interval", rmtp.DefaultCheckpointInterval,
		"how often to make received blocks durable and save the checkpoint; 0: no checkpoints (a rerun starts over)")
	f.daemon.add(cmd)
	f.out.add(cmd)
	return cmd
}

// options turns the flags into the library's options. Every problem is a
// usage error.
func (f *receiveFlags) options() (rmtp.ReceiveOptions, error) {
	var o rmtp.ReceiveOptions
	if f.dir == "" {
		return o, usageErrorf("no destination directory: pass --dir")
	}
	n, err := f.net.config()
	if err != nil {
		return o, err
	}
	if err := nonNegative("timeout", f.timeout); err != nil {
		return o, err
	}
	if err := nonNegative("sender-timeout", f.senderTimeout); err != nil {
		return o, err
	}
	st := f.senderTimeout
	if st == 0 {
		st = -1 // ReceiverConfig: zero means the default, negative disables
	}
	maxManifest, err := parseSize(f.maxManifest)
	if err != nil {
		return o, usageErrorf("--max-manifest: %v", err)
	}
	if maxManifest < 1 || maxManifest > wire.MaxManifestSize {
		return o, usageErrorf("--max-manifest %s out of range [1, %d]", f.maxManifest, wire.MaxManifestSize)
	}
	if f.maxFiles < 1 {
		return o, usageErrorf("--max-files %d must be at least 1", f.maxFiles)
	}
	maxBytes, err := parseSize(f.maxBytes)
	if err != nil {
		return o, usageErrorf("--max-bytes: %v", err)
	}
	if err := nonNegative("checkpoint-interval", f.checkpointInterval); err != nil {
		return o, err
	}
	var session wire.SessionID
	if f.session != "" {
		b, err := hex.DecodeString(f.session)
		if err != nil || len(b) != len(session) {
			return o, usageErrorf("bad --session %q: want the 16 hex digits of a session ID, as mcp send prints it", f.session)
		}
		copy(session[:], b)
	}
	o.AutoRepair = f.repair == "auto"
	if f.repair != "" && !o.AutoRepair {
		if o.Repair, err = parseGroup(f.repair); err != nil {
			return o, usageErrorf("bad --repair %q: want the repair server's --serve group IP:PORT, or auto", f.repair)
		}
	}
	if f.checkpointInterval > 0 {
		o.StateDir = f.stateDir
		if o.StateDir == "" {
			o.StateDir = filepath.Join(f.dir, rmtp.StateDirName)
		}
	}
	return rmtp.ReceiveOptions{
		StateDir:           o.StateDir,
		CheckpointInterval: f.checkpointInterval,
		Repair:             o.Repair,
		AutoRepair:         o.AutoRepair,
		Net:                n,
		Dir:                f.dir,
		Receiver: rmtp.ReceiverConfig{
			SenderTimeout:    st,
			MaxManifestBytes: int(maxManifest),
			MaxFiles:         f.maxFiles,
			MaxBytes:         maxBytes,
			Session:          session,
			FromCache:        f.fromCache,
		},
	}, nil
}

func runReceive(cmd *cobra.Command, f *receiveFlags) error {
	if f.daemon.on {
		return runDaemon(cmd, f)
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var ev *eventWriter
	if f.out.json {
		ev = newEventWriter(stdout)
	}
	var rep rmtp.ReceiveReport
	err := func() error {
		if err := f.daemon.check(cmd); err != nil {
			return err
		}
		opts, err := f.options()
		if err != nil {
			return err
		}
		opts.Receiver.Events = ev.callback()
		if opts.Logger, err = f.out.logger(cmd, stderr); err != nil {
			return err
		}
		ctx := cmd.Context()
		if f.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, f.timeout)
			defer cancel()
		}
		bars := newProgress(stdout, stderr, !f.out.quiet && !f.out.json)
		opts.Progress = bars.add("receive")
		bars.start()
		rep, err = rmtp.Receive(ctx, opts)
		bars.stop()
		return err
	}()
	if f.out.json {
		ev.receiveStopped(rep, err)
		return ev.summary(err, rep.Files, rep.Bytes, rep.Duration, rep.GoodputBitsPerSec, rep)
	}
	if err == nil && !f.out.quiet {
		printReceiveSummary(stdout, &rep, f.dir)
	}
	return err
}

func printReceiveSummary(w io.Writer, r *rmtp.ReceiveReport, dir string) {
	st := &r.Stats
	fmt.Fprintf(w, "received  %s, %s (%d bytes) into %s, session %s\n", plural(r.Files, "file", "files"), humanBytes(r.Bytes), r.Bytes, dir, r.Session)
	fmt.Fprintf(w, "time      %v, goodput %s\n", r.Duration.Round(time.Millisecond), humanRate(r.GoodputBitsPerSec))
	fmt.Fprintf(w, "packets   %d data, %d parity, %d repair, %d duplicate; %d blocks rebuilt\n", st.DataPackets, st.ParityPackets, st.RepairPackets, st.DupPackets, st.BlocksRebuilt)
	fmt.Fprintf(w, "NAKs      %d sent, %d heard, %d suppressed\n", st.NAKsSent, st.NAKsHeard, st.NAKsSuppressed)
	fmt.Fprintf(w, "dropped   %d bad packets\n", sumDrops(st.Drops))
}
