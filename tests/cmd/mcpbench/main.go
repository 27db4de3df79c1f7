// Command mcpbench measures mcp against a plain UDP multicast baseline on
// one namespace lab (package lab): a sender and N receivers on a bridge.
// tests/bench.sh builds and runs it; run that rather than this.
//
// It first searches the rate a plain blaster (udpblast) sustains to every
// receiver with under 0.1% loss: trials of about 2 s each, starting at
// 200 Mbit/s, multiplying by 1.5 while trials pass, then bisecting
// between the best pass and the first failure, at most -trials trials. A
// trial passes if every receiver got at least 99.9% of the datagrams, the
// sender achieved at least 95% of the asked rate, and no receiver was
// still reading 200 ms after the sender ended (with 32 MiB socket buffers,
// as mcp asks for, a receiver slower than the sender otherwise shows no
// loss in a short trial).
//
// It then sends one random file with mcp at each loss level (nftables
// random drop of UDP input at every receiver) and prints, per case, the
// wall time (sender start to last receiver done), goodput per receiver
// (min/avg of the receivers' own figures), sender bytes_sent / file size
// and NAKs heard at the sender, then the ratios the project targets.
//
// mcp's --rate is, unless -rate says otherwise, the blaster's sustainable
// rate: the fastest the same lab delivers without loss, so mcp at 0% loss
// is judged against what the network can carry. (udpblast counts UDP
// payload bits; mcp's rate counts whole packets, about 2% more per
// packet, so this slightly favours the baseline.)
//
// Every copy is checked (SHA-256, size, mode) against the source.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mcp-dev/mcp/tests/lab"
)

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcpbench:", err)
	}
	os.Exit(code)
}

type config struct {
	mcp, blast string
	size       int64
	receivers  int
	losses     []float64 // percent
	rate       string    // "auto" or an mcp --rate
	baseline   string    // "search" or a rate
	trials     int
	timeout    time.Duration
	extra      []string
	recvExtra  []string
	work       string
	logDir     string
}

func run() (int, error) {
	var c config
	var size, losses, extra, recvExtra string
	flag.StringVar(&c.mcp, "mcp", lab.EnvOr("MCP_BIN", ""), "mcp binary (env MCP_BIN)")
	flag.StringVar(&c.blast, "udpblast", lab.EnvOr("BLAST_BIN", ""), "udpblast binary (env BLAST_BIN)")
	flag.StringVar(&size, "size", lab.EnvOr("SIZE", "256M"), "file size, K/M/G = powers of 1024 (env SIZE)")
	flag.IntVar(&c.receivers, "receivers", 0, "receivers (env RECEIVERS, default 8)")
	flag.StringVar(&losses, "losses", lab.EnvOr("LOSSES", "0,1,5"), "loss per receiver in percent, comma separated (env LOSSES)")
	flag.StringVar(&c.rate, "rate", lab.EnvOr("RATE", "auto"), "mcp --rate, or auto: the blaster's sustainable rate (env RATE)")
	flag.StringVar(&c.baseline, "baseline", lab.EnvOr("BASELINE", "search"), "blaster rate: search, or a rate such as 450M to skip the search (env BASELINE)")
	flag.IntVar(&c.trials, "trials", 8, "most blaster trials in the rate search")
	flag.DurationVar(&c.timeout, "timeout", 0, "receivers' --timeout (default: 4x the time at the rate, at least 60s)")
	flag.StringVar(&extra, "send-args", lab.EnvOr("SEND_ARGS", ""), "extra mcp send flags, space separated (env SEND_ARGS)")
	flag.StringVar(&recvExtra, "recv-args", lab.EnvOr("RECV_ARGS", ""), "extra mcp receive flags, space separated (env RECV_ARGS)")
	flag.StringVar(&c.logDir, "logdir", lab.EnvOr("LOGDIR", ""), "keep each mcp's stderr (--log-level info) in DIR/loss-<pct>/ (env LOGDIR)")
	flag.StringVar(&c.work, "work", lab.EnvOr("WORK", ""), "directory for the file and copies (default: a new temporary one)")
	sweep := flag.Bool("sweep", false, "only delete namespaces left by dead lab processes, and exit")
	flag.Parse()
	if *sweep {
		if s := lab.Sweep(false); len(s) > 0 {
			fmt.Fprintf(os.Stderr, "mcpbench: swept %v\n", s)
		}
		return 0, nil
	}
	if c.receivers == 0 {
		n, err := strconv.Atoi(lab.EnvOr("RECEIVERS", "8"))
		if err != nil {
			return 2, fmt.Errorf("RECEIVERS: %v", err)
		}
		c.receivers = n
	}
	var err error
	if c.size, err = lab.ParseSize(size); err != nil {
		return 2, err
	}
	for _, f := range strings.Split(losses, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 100 {
			return 2, fmt.Errorf("bad loss %q: want percentages such as 0,1,5", f)
		}
		c.losses = append(c.losses, v)
	}
	if c.mcp == "" || c.blast == "" {
		return 2, errors.New("need -mcp and -udpblast (tests/bench.sh sets them)")
	}
	c.extra = strings.Fields(extra)
	c.recvExtra = strings.Fields(recvExtra)
	if c.receivers < 1 || c.receivers > 100 {
		return 2, fmt.Errorf("receivers %d out of range [1, 100]", c.receivers)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := lab.Start(lab.Options{Hosts: c.receivers + 1, Logf: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, f+"\n", a...)
	}})
	if err != nil {
		return 1, err
	}
	defer l.Close()
	return bench(ctx, c, l)
}

func bench(ctx context.Context, c config, l *lab.Lab) (int, error) {
	fmt.Printf("mcpbench: %s file, %d receivers, losses %v%%, %d CPUs, lab %s\n\n",
		lab.HumanSize(c.size), c.receivers, c.losses, runtime.NumCPU(), l.Name)

	// 1. Baseline.
	var blastRate float64
	var trials []trial
	var err error
	if c.baseline == "search" {
		blastRate, trials, err = searchRate(ctx, c, l)
	} else {
		blastRate, err = lab.ParseRate(c.baseline)
		fmt.Printf("blaster rate search skipped: baseline given as %s\n", c.baseline)
	}
	for _, t := range trials {
		fmt.Printf("  blaster trial: %7.1f Mbit/s asked, %7.1f achieved, worst receiver loss %.3f%%, drain %4.0f ms, CPU tx %.1f rx %.1f µs/datagram -> %s\n",
			t.asked/1e6, t.achieved/1e6, t.loss*100, t.drain.Seconds()*1e3, t.txPerPkt.Seconds()*1e6, t.cpuPerPkt.Seconds()*1e6, map[bool]string{true: "pass", false: "fail"}[t.pass])
	}
	if err != nil {
		return 1, err
	}
	fmt.Printf("blaster sustainable rate: %.1f Mbit/s (1408-byte payloads, < 0.1%% loss at every receiver)\n\n", blastRate/1e6)

	mcpRate := c.rate
	if mcpRate == "auto" {
		mcpRate = fmt.Sprintf("%.0fM", blastRate/1e6)
	}
	timeout := c.timeout
	if timeout == 0 {
		r, err := strconv.ParseFloat(strings.TrimSuffix(mcpRate, "M"), 64)
		if err != nil || !strings.HasSuffix(mcpRate, "M") || r <= 0 {
			r = 100
		}
		timeout = max(60*time.Second, 4*time.Duration(float64(c.size*8)/(r*1e6)*float64(time.Second)))
	}

	// 2. The file.
	work := c.work
	if work == "" {
		work, err = os.MkdirTemp("", "mcpbench-")
		if err != nil {
			return 1, err
		}
		defer os.RemoveAll(work)
	}
	src := filepath.Join(work, "src", "bench.bin")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		return 1, err
	}
	if err := lab.WriteRandomFile(src, c.size, uint64(time.Now().UnixNano())); err != nil {
		return 1, err
	}
	want, err := lab.Snapshot(src)
	if err != nil {
		return 1, err
	}

	// 3. mcp at each loss.
	type row struct {
		loss    float64
		res     *lab.TransferResult
		bad     []string
		dropped []uint64
	}
	var rows []row
	failed := false
	for _, loss := range c.losses {
		if ctx.Err() != nil {
			return 1, ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "mcp at %.1f%% loss, --rate %s ...\n", loss, mcpRate)
		for _, h := range l.Hosts[1:] {
			if err := h.SetLoss(int(math.Round(loss * 10))); err != nil {
				return 1, err
			}
		}
		dirs := make([]string, c.receivers)
		for i := range dirs {
			dirs[i] = filepath.Join(work, fmt.Sprintf("dst-%v-%d", loss, i))
		}
		tr := lab.Transfer{
			MCP: c.mcp, Sender: l.Hosts[0], Receivers: l.Hosts[1:], Dirs: dirs,
			Paths:    []string{src},
			Group:    netipGroup(l, 7700),
			SendArgs: append([]string{"--rate", mcpRate}, c.extra...),
			RecvArgs: append([]string(nil), c.recvExtra...),
			Timeout:  timeout,
		}
		if c.logDir != "" {
			tr.LogDir = filepath.Join(c.logDir, fmt.Sprintf("loss-%v", loss))
			if err := os.MkdirAll(tr.LogDir, 0o755); err != nil {
				return 1, err
			}
			tr.SendArgs = append(tr.SendArgs, "--log-level", lab.EnvOr("LOGLEVEL", "info"))
			tr.RecvArgs = append(tr.RecvArgs, "--log-level", lab.EnvOr("LOGLEVEL", "info"))
		}
		res, err := tr.Run(ctx)
		if err != nil {
			return 1, err
		}
		r := row{loss: loss, res: res}
		for _, h := range l.Hosts[1:] {
			n, _ := h.Dropped()
			r.dropped = append(r.dropped, n)
		}
		if err := res.Failures(); err != nil {
			r.bad = append(r.bad, err.Error())
		}
		for i, d := range want.CompareAll(dirs, 5) {
			for _, s := range d {
				r.bad = append(r.bad, fmt.Sprintf("receiver %d: %s", i, s))
			}
		}
		for _, d := range dirs {
			os.RemoveAll(d)
		}
		fmt.Fprintf(os.Stderr, "  %s\n  nft drops per receiver: %v\n", res.Summary(uint64(c.size)), r.dropped)
		for _, b := range r.bad {
			fmt.Fprintf(os.Stderr, "  FAILURE: %s\n", b)
			failed = true
		}
		rows = append(rows, r)
	}

	// 4. The table.
	fmt.Printf("mcp --rate %s (the blaster's sustainable rate unless -rate/RATE is set) %s\n", mcpRate, strings.Join(c.extra, " "))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "loss\twall s\tgoodput min Mbit/s\tavg Mbit/s\tsent/file\tNAKs heard\tNAK entries\trepair pkts\twire Mbit/s\ttx µs/pkt\trx µs/pkt\tok\t")
	for _, r := range rows {
		mn, avg := goodputs(r.res)
		st := r.res.Send.JSON.Report.Stats
		tx, rx := cpuPerPacket(r.res)
		fmt.Fprintf(tw, "%.1f%%\t%.2f\t%.1f\t%.1f\t%.3f\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%v\t\n", r.loss, r.res.Wall.Seconds(), mn, avg,
			lab.Overhead(st.BytesSent, uint64(c.size)), st.NAKsHeard, st.NAKEntriesHeard, st.ParityPackets+st.RetransPackets,
			float64(st.BytesSent)*8/r.res.Wall.Seconds()/1e6, tx.Seconds()*1e6, rx.Seconds()*1e6, len(r.bad) == 0)
	}
	tw.Flush()
	fmt.Println("(wall: sender start to last receiver done; goodput: the receivers' own figures; wire Mbit/s: sender bytes_sent*8/wall,\n what the pacer achieved; tx/rx µs/pkt: CPU (user+sys) per packet sent by the sender / handled by a receiver, mean)")

	fmt.Println()
	find := func(loss float64) *row {
		for i := range rows {
			if rows[i].loss == loss {
				return &rows[i]
			}
		}
		return nil
	}
	check := func(name string, v, target float64, atLeast bool) {
		ok := v <= target
		op := "<="
		if atLeast {
			ok, op = v >= target, ">="
		}
		fmt.Printf("%-44s %6.3f  (target %s %.2f) %s\n", name, v, op, target, map[bool]string{true: "OK", false: "MISSED"}[ok])
	}
	r0, r5 := find(0), find(5)
	if r0 != nil {
		_, avg := goodputs(r0.res)
		check("mcp goodput at 0% (avg) / blaster rate", avg*1e6/blastRate, 0.8, true)
	}
	if r5 != nil {
		check("sender bytes at 5% / file size", lab.Overhead(r5.res.Send.JSON.Report.Stats.BytesSent, uint64(c.size)), 1.15, false)
	}
	if r0 != nil && r5 != nil {
		check("wall at 5% / wall at 0%", r5.res.Wall.Seconds()/r0.res.Wall.Seconds(), 1.3, false)
	}
	if failed {
		return 1, errors.New("some transfers failed or delivered wrong copies (see FAILURE lines above)")
	}
	return 0, nil
}

func goodputs(r *lab.TransferResult) (minMbps, avgMbps float64) {
	var g []float64
	for i := range r.Recv {
		g = append(g, r.Recv[i].JSON.GoodputMbps)
	}
	if len(g) == 0 {
		return 0, 0
	}
	sum := 0.0
	for _, v := range g {
		sum += v
	}
	return slices.Min(g), sum / float64(len(g))
}

// cpuPerPacket is the sender's CPU per packet sent and the receivers'
// mean CPU per datagram handled (kept, duplicate or dropped).
func cpuPerPacket(r *lab.TransferResult) (tx, rx time.Duration) {
	st := r.Send.JSON.Report.Stats
	if n := st.DataPackets + st.ParityPackets + st.RetransPackets + st.ControlPackets; n > 0 {
		tx = (r.Send.UserCPU + r.Send.SysCPU) / time.Duration(n)
	}
	var cpu time.Duration
	var pkts uint64
	for i := range r.Recv {
		p := &r.Recv[i]
		rs := p.JSON.Report.Stats
		cpu += p.UserCPU + p.SysCPU
		pkts += rs.DataPackets + rs.ParityPackets + rs.DupPackets
		for _, n := range rs.Drops {
			pkts += n
		}
	}
	if pkts > 0 {
		rx = cpu / time.Duration(pkts)
	}
	return tx, rx
}

type trial struct {
	asked, achieved, loss float64
	drain                 time.Duration // worst receiver's reading after the sender ended
	cpuPerPkt             time.Duration // receivers' mean CPU per datagram
	txPerPkt              time.Duration // sender's CPU per datagram
	pass                  bool
}

// searchRate finds the highest blaster rate that passes.
func searchRate(ctx context.Context, c config, l *lab.Lab) (float64, []trial, error) {
	const size = 1408
	var trials []trial
	try := func(rate float64) (bool, error) {
		const trialTime = 2 * time.Second
		count := int(rate * trialTime.Seconds() / (size * 8))
		r, err := lab.Blast(ctx, c.blast, l.Hosts[0], l.Hosts[1:], netipGroup(l, 9000).String(), rate, count, size)
		if err != nil {
			return false, err
		}
		t := trial{asked: rate, achieved: r.Send.RateBPS, loss: r.WorstLoss(), drain: r.WorstDrain()}
		var cpu time.Duration
		var pkts uint64
		for _, x := range r.Recv {
			cpu += x.CPU
			pkts += x.Received
		}
		if pkts > 0 {
			t.cpuPerPkt = cpu / time.Duration(pkts)
		}
		if r.Send.Sent > 0 {
			t.txPerPkt = r.Send.CPU / time.Duration(r.Send.Sent)
		}
		// Keeping up means: no loss to speak of, the sender held the
		// rate, and no receiver was still draining a backlog from its
		// (32 MiB) socket buffer 10% of the trial after the sender was
		// done; a big buffer otherwise hides a receiver that is too slow.
		t.pass = t.loss < 0.001 && t.achieved >= 0.95*rate && t.drain < trialTime/10
		trials = append(trials, t)
		return t.pass, nil
	}
	good, bad := 0.0, 0.0
	rate := 200e6
	for len(trials) < c.trials {
		ok, err := try(rate)
		if err != nil {
			return 0, trials, err
		}
		if ok {
			good = rate
		} else {
			bad = rate
		}
		switch {
		case bad == 0:
			rate *= 1.5
		case good == 0:
			rate /= 2
		default:
			rate = (good + bad) / 2
		}
		if bad != 0 && good != 0 && (bad-good)/good < 0.05 {
			break
		}
		if rate < 10e6 {
			break
		}
	}
	if good == 0 {
		return 0, trials, errors.New("the blaster never passed: is the lab overloaded?")
	}
	return good, trials, nil
}

// netipGroup is the lab's group on port: 239.213.<subnet>.1.
func netipGroup(l *lab.Lab, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 213, byte(l.Subnet), 1}), port)
}
