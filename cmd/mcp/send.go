package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

type sendFlags struct {
	net         netFlags
	out         outFlags
	rate        string
	k           int
	proactive   string
	symbolSize  int
	linger      time.Duration
	mode        string
	expect      int
	timeout     time.Duration
	repairShare float64
	slowPolicy  string

	relayListen string // --relay-listen
	resume      bool   // --resume
	stateDir    string // --state-dir
	hashCache   bool   // --hash-cache
}

func newSendCmd() *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "send [flags] PATH...",
		Short: "Send files and directories to every receiver on the group",
		Long: `Send multicasts the named files and directories to the group and stays
to answer NAKs until none has been heard for --linger. Each PATH is
delivered under its base name: "mcp send dir" delivers "dir/..." into each
receiver's --dir.

Start the receivers first: the sender does not know who listens, and a
receiver that joins late is repaired only while the sender lingers.

With --expect N (confirmed mode) the sender instead stays until N
receivers have reported that their copies are complete and verified, and
exits 0; if --timeout passes first, or a receiver reports failure, it
exits 3 and says how many confirmed.`,
		Example: `  mcp send --interface eth0 image.iso
  mcp send --interface 10.0.0.5 --group 239.1.2.3:9000 --rate 1G --json dataset/
  mcp send --interface eth0 --expect 40 --timeout 10m release.tar`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("nothing to send: name at least one file or directory")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSend(cmd, &f, args)
		},
	}
	fs := cmd.Flags()
	f.net.add(cmd)
	fs.StringVar(&f.rate, "rate", formatRate(rmtp.DefaultRateBitsPerSec),
		"most bits per second to send, headers and repairs included (the sender slows down while receivers report they fall behind); K, M, G are powers of 1000; 0 or unlimited: no pacing; auto: start at 10M and find the rate from receivers' loss, auto:R: the same, never over R")
	fs.IntVar(&f.k, "fec-k", rmtp.DefaultK,
		fmt.Sprintf("source symbols per FEC block, 1 to %d", wire.MaxK))
	fs.StringVar(&f.proactive, "fec-proactive", "auto",
		"parity symbols sent with every block before any NAK: auto (reliable and confirmed modes): as many as the group's worst receiver lacks in 9 blocks of 10, learnt from the NAKs, 0 without loss; N: that many with every block (best-effort mode needs a count)")
	fs.IntVar(&f.symbolSize, "symbol-size", 0,
		fmt.Sprintf("bytes of file data per packet, 1 to %d; 0: the largest that fits the interface MTU, at most %d", rmtp.MaxSymbolSizeOnWire, rmtp.DefaultSymbolSize))
	fs.DurationVar(&f.linger, "linger", rmtp.DefaultLinger,
		"how long to keep answering NAKs after the last data, once none are heard")
	fs.StringVar(&f.mode, "mode", wire.ModeReliable.String(),
		"reliability: reliable (NAKs and repairs, ends on --linger), confirmed (as reliable, ends when --expect receivers report) or best-effort (FEC only, receivers never NAK)")
	fs.IntVar(&f.expect, "expect", 0,
		"wait for this many receivers to report complete copies (confirmed mode); 0: do not wait")
	fs.DurationVar(&f.timeout, "timeout", 0,
		"give up after this long (exit 3 with --expect, else 1); 0: no limit")
	fs.Float64Var(&f.repairShare, "repair-share", rmtp.DefaultRepairShare,
		"largest share of --rate that repairs take while new data waits, in (0, 1]; after the first pass repairs may use the whole rate")
	fs.StringVar(&f.slowPolicy, "slow-policy", rmtp.SlowLeave.String(),
		"receivers that lose much of the stream: leave (they catch up after the first pass; the rest keep the full rate) or wait (the rate drops until the slowest loses under 2%)")
	fs.BoolVar(&f.resume, "resume", false,
		"continue the session these files make from where a crashed or interrupted send stopped (its checkpoint in --state-dir)")
	fs.StringVar(&f.stateDir, "state-dir", "",
		"where the sender keeps its checkpoint and its cache of file hashes (default: the user cache directory, e.g. ~/.cache/mcp/send; \"none\": neither)")
	fs.BoolVar(&f.hashCache, "hash-cache", true,
		"keep the SHA-256 of files of 8 MiB or more in --state-dir/sha256, so that a file sent again unchanged (same inode, size, mtime and ctime) is not read and hashed again before the first packet")
	fs.StringVar(&f.relayListen, "relay-listen", "",
		"accept relay repair servers (mcp repair --relay) at this unicast IP:PORT and copy the stream to each over UDP, for sites the group does not reach")
	addMetricsFlag(cmd)
	f.out.add(cmd)
	return cmd
}

// sendOptions turns the flags into the library's options. Every problem is
// a usage error.
func (f *sendFlags) options(paths []string) (rmtp.SendOptions, error) {
	var o rmtp.SendOptions
	n, err := f.net.config()
	if err != nil {
		return o, err
	}
	rate, auto, err := parseSendRate(f.rate)
	if err != nil {
		return o, err
	}
	if f.k < 1 || f.k > wire.MaxK {
		return o, usageErrorf("--fec-k %d out of range [1, %d]", f.k, wire.MaxK)
	}
	proactive, proactiveAuto := 0, f.proactive == "auto"
	if !proactiveAuto {
		proactive, err = strconv.Atoi(f.proactive)
		if err != nil {
			return o, usageErrorf("bad --fec-proactive %q: want auto or a count of parity symbols", f.proactive)
		}
		if proactive < 0 || f.k+proactive > wire.MaxBlockSymbols {
			return o, usageErrorf("--fec-proactive %d out of range [0, %d] with --fec-k %d", proactive, wire.MaxBlockSymbols-f.k, f.k)
		}
	}
	if f.symbolSize < 0 || f.symbolSize > rmtp.MaxSymbolSizeOnWire {
		return o, usageErrorf("--symbol-size %d out of range [1, %d] (0: derive from the MTU)", f.symbolSize, rmtp.MaxSymbolSizeOnWire)
	}
	if f.linger <= 0 {
		// SenderConfig reads zero as "the default", so zero cannot be
		// passed through.
		return o, usageErrorf("--linger %v must be positive", f.linger)
	}
	if !(f.repairShare > 0 && f.repairShare <= 1) {
		return o, usageErrorf("--repair-share %v out of range (0, 1]", f.repairShare)
	}
	mode, err := parseMode(f.mode)
	if err != nil {
		return o, err
	}
	policy, err := rmtp.ParseSlowPolicy(f.slowPolicy)
	if err != nil {
		return o, usageErrorf("--slow-policy: %v", err)
	}
	switch {
	case f.expect < 0:
		return o, usageErrorf("--expect %d must not be negative", f.expect)
	case f.timeout < 0:
		return o, usageErrorf("--timeout %v must not be negative", f.timeout)
	case mode == wire.ModeConfirmed && f.expect == 0:
		return o, usageErrorf("--mode confirmed needs --expect N: how many receivers to wait for")
	case mode == wire.ModeBestEffort && auto:
		return o, usageErrorf("--rate %s finds the rate from receivers' loss reports, which --mode best-effort is for doing without; give a rate such as --rate 200M", f.rate)
	case mode == wire.ModeBestEffort && f.expect > 0:
		return o, usageErrorf("--expect waits for receivers' reports, which --mode best-effort does not wait for; use --mode confirmed")
	case mode == wire.ModeBestEffort && proactiveAuto:
		return o, usageErrorf("--fec-proactive auto learns from receivers' NAKs, which --mode best-effort receivers never send; give a count such as --fec-proactive 16 (parity symbols per block of --fec-k %d)", f.k)
	case f.expect > 0:
		mode = wire.ModeConfirmed
	}
	return rmtp.SendOptions{
		Net:        n,
		Paths:      paths,
		SymbolSize: f.symbolSize,
		K:          f.k,
		Sender: rmtp.SenderConfig{
			Proactive:      proactive,
			ProactiveAuto:  proactiveAuto,
			RateBitsPerSec: rate,
			AutoRate:       auto,
			Linger:         f.linger,
			Mode:           mode,
			Expect:         f.expect,
			RepairShare:    f.repairShare,
			SlowPolicy:     policy,
		},
	}, nil
}

// parseMode maps --mode to the wire mode. SenderConfig.Mode's zero value
// is best-effort, so the mode is always set explicitly.
func parseMode(s string) (wire.Mode, error) {
	switch strings.ToLower(s) {
	case wire.ModeReliable.String():
		return wire.ModeReliable, nil
	case wire.ModeBestEffort.String(), "besteffort", "best_effort":
		return wire.ModeBestEffort, nil
	case wire.ModeConfirmed.String():
		return wire.ModeConfirmed, nil
	}
	return 0, usageErrorf("bad --mode %q: want reliable, confirmed or best-effort", s)
}

func runSend(cmd *cobra.Command, f *sendFlags, paths []string) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	ev := jsonEvents(cmd, f.out.json)
	var rep rmtp.SendReport
	err := func() error {
		opts, err := f.options(paths)
		if err != nil {
			return err
		}
		if opts.RelayListen, err = parseRelayListen(f.relayListen); err != nil {
			return err
		}
		if opts.StateDir, err = sendStateDir(f.stateDir); err != nil {
			return err
		}
		if f.hashCache && opts.StateDir != "" {
			opts.HashCacheDir = filepath.Join(opts.StateDir, "sha256")
		}
		opts.Resume = f.resume
		if f.resume && opts.StateDir == "" {
			return usageErrorf("--resume needs a checkpoint: not with --state-dir none")
		}
		if opts.Logger, err = f.out.logger(cmd, stderr); err != nil {
			return err
		}
		stopObserving, err := observeSend(cmd, &opts, ev, opts.Logger)
		if err != nil {
			return err
		}
		defer stopObserving()
		bars := newProgress(stdout, stderr, !f.out.quiet && !f.out.json)
		opts.Progress = bars.add("send")
		bars.start()
		ctx := cmd.Context()
		if f.timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, f.timeout)
			defer cancel()
		}
		rep, err = rmtp.Send(ctx, opts)
		bars.stop()
		switch {
		case err == nil || errors.Is(err, rmtp.ErrUnconfirmed):
		case errors.Is(err, context.Canceled) && cmd.Context().Err() != nil:
			err = fmt.Errorf("send interrupted after %v: %w", rep.Duration.Round(time.Millisecond), err)
		case errors.Is(err, context.DeadlineExceeded) && f.timeout > 0:
			err = fmt.Errorf("send stopped by --timeout %v: %w", f.timeout, err)
		}
		return err
	}()
	if f.out.json {
		ev.sendEnded(rep, err)
		return ev.summary(err, rep.Files, rep.Bytes, rep.Duration, rep.GoodputBitsPerSec, rep)
	}
	if err == nil && !f.out.quiet {
		printSendSummary(stdout, &rep)
	}
	return err
}

func printSendSummary(w io.Writer, r *rmtp.SendReport) {
	st := &r.Stats
	fmt.Fprintf(w, "sent      %s, %s (%d bytes), session %s\n", plural(r.Files, "file", "files"), humanBytes(r.Bytes), r.Bytes, r.Session)
	wait := "the linger"
	if r.Expected > 0 {
		wait = "the wait for reports"
	}
	fmt.Fprintf(w, "time      %v including %s, goodput %s\n", r.Duration.Round(time.Millisecond), wait, humanRate(r.GoodputBitsPerSec))
	fmt.Fprintf(w, "packets   %d data, %d parity, %d retransmitted, %d control\n", st.DataPackets, st.ParityPackets, st.RetransPackets, st.ControlPackets)
	fmt.Fprintf(w, "NAKs      %d heard (%d entries, %d ignored), %d repair rounds\n", st.NAKsHeard, st.NAKEntriesHeard, st.NAKsIgnored, st.RepairRounds)
	if r.Expected > 0 {
		fmt.Fprintf(w, "reports   %d of %d expected receivers complete, %d failed\n", st.Completed, r.Expected, st.Failed)
	} else {
		fmt.Fprintf(w, "reports   %d receivers complete, %d failed (heard, not waited for)\n", st.Completed, st.Failed)
	}
	fmt.Fprintf(w, "dropped   %d bad packets\n", sumDrops(r.Drops))
}

// parseRelayListen parses --relay-listen: empty, or a unicast IP:PORT.
func parseRelayListen(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Addr().IsMulticast() || ap.Port() == 0 {
		return netip.AddrPort{}, usageErrorf("bad --relay-listen %q: want a unicast IP:PORT of this host, e.g. 10.0.0.5:7900", s)
	}
	return ap, nil
}

// sendStateDir returns the sender's state directory: flag, or the user
// cache directory's mcp/send; "" for none.
func sendStateDir(flag string) (string, error) {
	switch flag {
	case "none":
		return "", nil
	case "":
		dir, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no user cache directory for the sender's checkpoint (%w): pass --state-dir DIR, or --state-dir none", err)
		}
		return filepath.Join(dir, "mcp", "send"), nil
	}
	return flag, nil
}
