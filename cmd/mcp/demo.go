package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// The demo runs on loopback only, never on a real network.
const (
	demoInterface = "lo"
	demoFile      = "mcp-demo.bin"
	demoLinger    = 500 * time.Millisecond
	// demoJoinWait lets receivers join before the first packet. Late
	// joiners are repaired too, but the demo shows the common case.
	demoJoinWait = 200 * time.Millisecond
	// demoGrace is how long receivers may take to finish after the
	// sender is done before they are stopped.
	demoGrace        = 10 * time.Second
	demoMaxReceivers = 32
)

type demoFlags struct {
	out       outFlags
	size      string
	receivers int
	rate      string
	seed      uint64
}

func newDemoCmd() *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo [flags]",
		Short: "Send a generated file to receivers on this host over loopback",
		Long: fmt.Sprintf(`Demo runs a sender and several receivers in this process over multicast on
the loopback interface (%s, TTL 0: nothing leaves this host). It generates
a random file, sends it, checks every copy byte for byte, prints a summary
and removes everything it wrote. It exits 0 only if every copy matches.`, demoInterface),
		Example: `  mcp demo
  mcp demo --size 1G --receivers 5 --rate 1G`,
		Args: noArgs("demo takes no arguments; see its flags"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd, &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.size, "size", "64M", "size of the generated file in bytes; K, M, G are powers of 1024")
	fs.IntVar(&f.receivers, "receivers", 3, fmt.Sprintf("number of receivers, 1 to %d", demoMaxReceivers))
	fs.StringVar(&f.rate, "rate", formatRate(rmtp.DefaultRateBitsPerSec),
		"most bits per second to send (less while receivers fall behind); K, M, G are powers of 1000; 0 or unlimited: no pacing")
	fs.Uint64Var(&f.seed, "seed", 0, "seed for the file's contents; 0: a random seed, shown in the summary")
	f.out.add(cmd)
	return cmd
}

// demoReport is the --json report of a demo.
type demoReport struct {
	SizeBytes      uint64          `json:"size_bytes"`
	Seed           uint64          `json:"seed"`
	Interface      string          `json:"interface"`
	Group          string          `json:"group"`
	RateBitsPerSec float64         `json:"rate_bps"` // -1: unpaced
	Sender         rmtp.SendReport `json:"sender"`
	SenderError    string          `json:"sender_error,omitempty"`
	Receivers      []demoReceiver  `json:"receivers"`
	Matched        int             `json:"copies_matched"`
}

// demoReceiver is one receiver's outcome. OK means its copy is byte-exact.
type demoReceiver struct {
	Index  int                `json:"index"` // from 1
	OK     bool               `json:"ok"`
	Error  string             `json:"error,omitempty"`
	Report rmtp.ReceiveReport `json:"report"`
}

type demoConfig struct {
	size      uint64
	receivers int
	rate      float64
	seed      uint64
	group     netip.AddrPort
}

func (f *demoFlags) config() (demoConfig, error) {
	var c demoConfig
	size, err := parseSize(f.size)
	if err != nil {
		return c, err
	}
	if f.receivers < 1 || f.receivers > demoMaxReceivers {
		return c, usageErrorf("--receivers %d out of range [1, %d]", f.receivers, demoMaxReceivers)
	}
	rate, err := parseRate(f.rate)
	if err != nil {
		return c, err
	}
	seed := f.seed
	for seed == 0 {
		seed = rand.Uint64()
	}
	// A random group and port, so demos on one host do not mix.
	group := netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 255, 77, byte(1 + rand.IntN(254))}),
		uint16(20000+rand.IntN(40000)))
	return demoConfig{size: size, receivers: f.receivers, rate: rate, seed: seed, group: group}, nil
}

func runDemo(cmd *cobra.Command, f *demoFlags) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	var rep demoReport
	err := func() error {
		c, err := f.config()
		if err != nil {
			return err
		}
		logger, err := f.out.logger(cmd, stderr)
		if err != nil {
			return err
		}
		bars := newProgress(stdout, stderr, !f.out.quiet && !f.out.json)
		return demo(cmd.Context(), c, &rep, logger, bars)
	}()
	if f.out.json {
		return writeResult(stdout, err, 1, rep.SizeBytes, rep.Sender.Duration, rep.Sender.GoodputBitsPerSec, rep)
	}
	if !f.out.quiet && rep.Receivers != nil {
		printDemoSummary(stdout, &rep)
	}
	return err
}

// demo runs one session: it fills rep as it goes and returns an error
// unless every copy matched.
func demo(ctx context.Context, c demoConfig, rep *demoReport, logger *slog.Logger, bars *progress) error {
	*rep = demoReport{
		SizeBytes:      c.size,
		Seed:           c.seed,
		Interface:      demoInterface,
		Group:          c.group.String(),
		RateBitsPerSec: c.rate,
	}
	base, err := os.MkdirTemp("", "mcp-demo-")
	if err != nil {
		return fmt.Errorf("create demo directory: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(base); err != nil {
			logger.Warn("remove demo directory", "dir", base, "err", err)
		}
	}()
	src := filepath.Join(base, "send", demoFile)
	if err := writeRandomFile(src, c.size, c.seed); err != nil {
		return err
	}
	logger.Info("demo file written", "path", src, "bytes", c.size, "seed", c.seed)

	// TTL -1 is TTL 0: packets never leave this host.
	net := rmtp.NetConfig{Interface: demoInterface, Group: c.group, TTL: -1}
	sendProgress := bars.add("sender    ")
	rep.Receivers = make([]demoReceiver, c.receivers)
	dirs := make([]string, c.receivers)
	progress := make([]func(done, total uint64), c.receivers)
	for i := range dirs {
		dirs[i] = filepath.Join(base, fmt.Sprintf("receiver-%d", i+1))
		progress[i] = bars.add(fmt.Sprintf("receiver %d", i+1))
		rep.Receivers[i].Index = i + 1
	}
	bars.start()
	defer bars.stop()

	rctx, stopReceivers := context.WithCancel(ctx)
	defer stopReceivers()
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Go(func() {
			r, err := rmtp.Receive(rctx, rmtp.ReceiveOptions{
				Net:      net,
				Dir:      dirs[i],
				Progress: progress[i],
				Logger:   logger.With("receiver", i+1),
			})
			rep.Receivers[i].Report = r
			if err != nil {
				rep.Receivers[i].Error = err.Error()
			}
		})
	}
	select {
	case <-time.After(demoJoinWait):
	case <-ctx.Done():
	}
	sr, sendErr := rmtp.Send(ctx, rmtp.SendOptions{
		Net:   net,
		Paths: []string{src},
		Sender: rmtp.SenderConfig{
			RateBitsPerSec: c.rate,
			Linger:         demoLinger,
			Mode:           wire.ModeReliable,
		},
		Progress: sendProgress,
		Logger:   logger.With("role", "sender"),
	})
	rep.Sender = sr
	if sendErr != nil {
		rep.SenderError = sendErr.Error()
		stopReceivers()
	} else {
		t := time.AfterFunc(demoGrace, stopReceivers)
		defer t.Stop()
	}
	wg.Wait()
	bars.stop()

	for i := range rep.Receivers {
		r := &rep.Receivers[i]
		if r.Error != "" {
			continue
		}
		same, err := sameFile(src, filepath.Join(dirs[i], demoFile))
		switch {
		case err != nil:
			r.Error = err.Error()
		case !same:
			r.Error = "copy differs from the original"
		default:
			r.OK = true
			rep.Matched++
		}
	}
	if sendErr != nil {
		return fmt.Errorf("send: %w", sendErr)
	}
	if rep.Matched < c.receivers {
		return fmt.Errorf("%d of %d copies did not arrive intact", c.receivers-rep.Matched, c.receivers)
	}
	return nil
}

// writeRandomFile writes size bytes drawn from a ChaCha8 stream seeded
// with seed, so a seed names the file's contents.
func writeRandomFile(name string, size, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("create demo file: %w", err)
	}
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("create demo file: %w", err)
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	_, err = io.Copy(f, io.LimitReader(rand.NewChaCha8(key), int64(size)))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write demo file %s: %w", name, err)
	}
	return nil
}

// sameFile reports whether two files hold the same bytes.
func sameFile(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, fmt.Errorf("copy missing: %w", err)
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 1<<20), bufio.NewReaderSize(fb, 1<<20)
	bufA, bufB := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, errA := io.ReadFull(ra, bufA)
		nb, errB := io.ReadFull(rb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		if errA != nil && !endA {
			return false, errA
		}
		if errB != nil && !endB {
			return false, errB
		}
		if endA || endB {
			return endA == endB, nil
		}
	}
}

func printDemoSummary(w io.Writer, r *demoReport) {
	s := &r.Sender
	st := &s.Stats
	fmt.Fprintf(w, "demo      %s (%d bytes) to %s over %s, group %s, seed %d\n",
		humanBytes(r.SizeBytes), r.SizeBytes, plural(len(r.Receivers), "receiver", "receivers"), r.Interface, r.Group, r.Seed)
	if r.SenderError != "" {
		fmt.Fprintf(w, "sender    FAILED: %s\n", r.SenderError)
	} else {
		fmt.Fprintf(w, "sent      in %v including a %v linger, goodput %s (rate %s)\n",
			s.Duration.Round(time.Millisecond), demoLinger, humanRate(s.GoodputBitsPerSec), formatRate(r.RateBitsPerSec))
	}
	fmt.Fprintf(w, "packets   %d data, %d parity, %d retransmitted; %d NAKs heard, %d repair rounds\n",
		st.DataPackets, st.ParityPackets, st.RetransPackets, st.NAKsHeard, st.RepairRounds)
	for _, rr := range r.Receivers {
		rst := &rr.Report.Stats
		status := "ok, byte-exact copy"
		if !rr.OK {
			status = "FAILED: " + rr.Error
		}
		fmt.Fprintf(w, "receiver %d  %s; %d NAKs sent, %d suppressed, %d bad packets dropped\n",
			rr.Index, status, rst.NAKsSent, rst.NAKsSuppressed, sumDrops(rst.Drops))
	}
	fmt.Fprintf(w, "result    %d of %d copies match\n", r.Matched, len(r.Receivers))
}
