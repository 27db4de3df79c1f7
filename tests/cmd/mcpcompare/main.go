// Command mcpcompare measures mcp side by side with udpcast, UFTP and a
// TCP fan-out on namespace labs (package lab): one sender and N
// receivers on a bridge, MTU 1500, random loss at every receiver
// (nftables, lab.Host.SetLoss; SetTCPLoss for TCP). tests/compare.sh
// installs the baselines, builds and runs it; run that rather than this.
//
// Every tool sends the same random file. Per cell (tool × setting × N ×
// loss) it records the wall time from the sender's start until every
// receiver has the whole file (mcp: the receiver exited after verifying
// it; udpcast: the receiver printed "Transfer complete."; UFTP: the final
// name appeared with the full size; TCP: the client exited), goodput per
// receiver (file bits over that receiver's time), the bytes the sender
// put out per byte of file (UDP or TCP payload counted by an nftables
// output rule, and eth0's tx bytes with all headers), the CPU seconds
// (user + system) of the sender and of each receiver process, and
// whether every copy has the source's SHA-256.
//
// Settings: A, the bridge as it is; B, the sender's eth0 shaped with a
// token bucket (lab.Host.Shape) to SHAPE (default 1 Gbit/s). mcp gets
// --rate MCP_RATE in A and the shaped rate in B if MCP_RATE is a rate.
// mcp's --rate (MCP_RATE=tune, the default), udpcast's --max-bitrate
// and UFTP's -R rate (or TFMCC congestion control) are, unless fixed by
// MCP_RATE / UDPCAST_ARGS / UFTP_ARGS, tuned per setting and N before the cells:
// each candidate sends a TUNE_SIZE file to all N receivers without loss,
// and the fastest whose copies are all exact is kept. The tuning trials
// are printed.
//
// Before each cell, tuning trials included, it writes and deletes as
// much scratch data as the cell's copies (warmPageCache; -no-warm or
// NO_WARM=1 skips it), so that no tool starts on memory this VM has
// handed back to its host.
//
// The matrix is SIZE (256M), RECEIVERS (1,4,8), LOSSES (0,1,5 percent,
// at every receiver) and, at the largest N, one receiver at SLOW percent
// (20) loss with the others at 0. It writes results.csv and one
// goodput-<setting>.png (goodput per receiver against loss at the
// largest N, one line per tool) into OUT, prints the table and checks
// the ratios issue 7 targets.
package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
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
		fmt.Fprintln(os.Stderr, "mcpcompare:", err)
	}
	os.Exit(code)
}

type config struct {
	mcp, tcpfan string
	size        int64
	tuneSize    int64
	receivers   []int
	losses      []float64 // percent
	slow        float64   // percent at one receiver; 0: no such case
	tools       []string
	settings    []string
	mcpRate     string  // setting A
	shape       float64 // setting B, bits/s
	udpcastArgs []string
	uftpArgs    []string
	sendArgs    []string
	recvArgs    []string
	timeout     time.Duration
	out, work   string
	gro         bool // lab.Options.GRO: hosts receive like NICs
	brnf        bool // lab.Options.BridgeNetfilter: bridged frames through the host firewall's hooks
	noWarm      bool // skip warmPageCache before each cell
}

// defaultMCPRate is mcp's --rate unless MCP_RATE says otherwise: "tune"
// tunes it per setting and N as the baselines' rates are (candidates).
// A fixed 450M, the earlier default, suited 8 receivers on this two-core
// lab (300M gave 193 Mbit/s per receiver, 450M 239 and 600M 242) but
// held one receiver to 417 Mbit/s where udpcast moved 1,489.
const defaultMCPRate = "tune"

func run() (int, error) {
	var c config
	var size, tuneSize, receivers, losses, tools, settings, shape, udpcastArgs, uftpArgs, sendArgs, recvArgs string
	flag.StringVar(&c.mcp, "mcp", lab.EnvOr("MCP_BIN", ""), "mcp binary (env MCP_BIN)")
	flag.StringVar(&c.tcpfan, "tcpfan", lab.EnvOr("TCPFAN_BIN", ""), "tcpfan binary (env TCPFAN_BIN)")
	flag.StringVar(&size, "size", lab.EnvOr("SIZE", "256M"), "file size, K/M/G = powers of 1024 (env SIZE)")
	flag.StringVar(&tuneSize, "tune-size", lab.EnvOr("TUNE_SIZE", "64M"), "file size of the baselines' tuning trials, at most SIZE (env TUNE_SIZE)")
	flag.StringVar(&receivers, "receivers", lab.EnvOr("RECEIVERS", "1,4,8"), "receiver counts, comma separated (env RECEIVERS)")
	flag.StringVar(&losses, "losses", lab.EnvOr("LOSSES", "0,1,5"), "loss at every receiver in percent, comma separated (env LOSSES)")
	flag.Float64Var(&c.slow, "slow", 20, "loss in percent of the one slow receiver at the largest N; 0: skip that case (env SLOW)")
	flag.StringVar(&tools, "tools", lab.EnvOr("TOOLS", "mcp,udpcast,uftp,tcp"), "tools, comma separated (env TOOLS)")
	flag.StringVar(&settings, "settings", lab.EnvOr("SETTINGS", "A,B"), "A (unshaped), B (sender shaped to SHAPE), comma separated (env SETTINGS)")
	flag.StringVar(&c.mcpRate, "mcp-rate", lab.EnvOr("MCP_RATE", defaultMCPRate), "mcp --rate in setting A (in B: the shaped rate), or tune: tune it per setting and N (env MCP_RATE)")
	flag.StringVar(&shape, "shape", lab.EnvOr("SHAPE", "1G"), "the sender's shaped rate in setting B, bits/s with K/M/G (env SHAPE)")
	flag.StringVar(&udpcastArgs, "udpcast-args", lab.EnvOr("UDPCAST_ARGS", "auto"), "udp-sender flags, or auto: tune --max-bitrate (env UDPCAST_ARGS)")
	flag.StringVar(&uftpArgs, "uftp-args", lab.EnvOr("UFTP_ARGS", "auto"), "uftp flags, or auto: tune -R / -C (env UFTP_ARGS)")
	flag.StringVar(&sendArgs, "send-args", lab.EnvOr("SEND_ARGS", ""), "extra mcp send flags (env SEND_ARGS)")
	flag.StringVar(&recvArgs, "recv-args", lab.EnvOr("RECV_ARGS", ""), "extra mcp receive flags (env RECV_ARGS)")
	flag.DurationVar(&c.timeout, "timeout", 0, "bound on one transfer (default: the file at 25 Mbit/s, at least 60s; env CELL_TIMEOUT)")
	flag.StringVar(&c.out, "out", lab.EnvOr("OUT", ""), "output directory (env OUT; default tests/results/compare-<date>)")
	flag.StringVar(&c.work, "work", lab.EnvOr("WORK", ""), "directory for the files and copies (default: a new temporary one)")
	flag.BoolVar(&c.brnf, "brnf", lab.EnvOr("LAB_BRNF", "") == "1", "keep the kernel's br_netfilter default in the bridge namespace: every forwarded frame passes its IP hooks, once per port (lab.Options.BridgeNetfilter; env LAB_BRNF=1)")
	flag.BoolVar(&c.gro, "gro", lab.EnvOr("LAB_GRO", "") == "1", "hosts' interfaces coalesce what they receive (GRO) as NICs do, and loss is applied on the bridge (lab.Options.GRO; env LAB_GRO=1)")
	flag.BoolVar(&c.noWarm, "no-warm", lab.EnvOr("NO_WARM", "") == "1", "do not write and delete the cell's copies' worth of scratch data before each cell, so a cell may start on memory the VM handed back to its host (see warmPageCache; env NO_WARM=1)")
	sweep := flag.Bool("sweep", false, "only delete namespaces left by dead lab processes, and exit")
	flag.Parse()
	if *sweep {
		if s := lab.Sweep(false); len(s) > 0 {
			fmt.Fprintf(os.Stderr, "mcpcompare: swept %v\n", s)
		}
		return 0, nil
	}
	if v := os.Getenv("SLOW"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 100 {
			return 2, fmt.Errorf("SLOW %q: want a percentage", v)
		}
		c.slow = f
	}
	var err error
	if c.size, err = lab.ParseSize(size); err != nil {
		return 2, err
	}
	if c.tuneSize, err = lab.ParseSize(tuneSize); err != nil {
		return 2, err
	}
	c.tuneSize = min(c.tuneSize, c.size)
	for _, f := range splitList(receivers) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 100 {
			return 2, fmt.Errorf("bad receiver count %q: want numbers in [1, 100] such as 1,4,8", f)
		}
		c.receivers = append(c.receivers, n)
	}
	for _, f := range splitList(losses) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v < 0 || v > 100 {
			return 2, fmt.Errorf("bad loss %q: want percentages such as 0,1,5", f)
		}
		c.losses = append(c.losses, v)
	}
	for _, t := range splitList(tools) {
		if _, ok := toolSet[t]; !ok {
			return 2, fmt.Errorf("unknown tool %q: want mcp, udpcast, uftp, tcp", t)
		}
		c.tools = append(c.tools, t)
	}
	for _, s := range splitList(settings) {
		s = strings.ToUpper(s)
		if s != "A" && s != "B" {
			return 2, fmt.Errorf("unknown setting %q: want A, B", s)
		}
		c.settings = append(c.settings, s)
	}
	if c.shape, err = lab.ParseRate(shape); err != nil {
		return 2, err
	}
	if _, err := lab.ParseRate(c.mcpRate); err != nil && c.mcpRate != "tune" && c.mcpRate != "auto" {
		return 2, fmt.Errorf("MCP_RATE: %w (or tune, or auto)", err)
	}
	if udpcastArgs != "auto" {
		c.udpcastArgs = strings.Fields(udpcastArgs)
	}
	if uftpArgs != "auto" {
		c.uftpArgs = strings.Fields(uftpArgs)
	}
	c.sendArgs, c.recvArgs = strings.Fields(sendArgs), strings.Fields(recvArgs)
	if c.timeout == 0 {
		if v := os.Getenv("CELL_TIMEOUT"); v != "" {
			if c.timeout, err = time.ParseDuration(v); err != nil {
				return 2, fmt.Errorf("CELL_TIMEOUT: %v", err)
			}
		} else {
			c.timeout = max(60*time.Second, time.Duration(float64(c.size*8)/25e6*float64(time.Second)).Round(time.Second))
		}
	}
	if c.mcp == "" || c.tcpfan == "" {
		return 2, errors.New("need -mcp and -tcpfan (tests/compare.sh sets them)")
	}
	for _, t := range c.tools {
		for _, bin := range toolSet[t] {
			if _, err := os.Stat(bin); err != nil {
				if _, err := exec.LookPath(bin); err != nil {
					return 1, fmt.Errorf("%s needs %s, not found (tests/compare.sh installs it)", t, bin)
				}
			}
		}
	}
	if c.out == "" {
		c.out = filepath.Join("tests", "results", "compare-"+time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return 1, err
	}
	// The results are not for committing.
	if err := os.WriteFile(filepath.Join(c.out, ".gitignore"), []byte("*\n"), 0o644); err != nil {
		return 1, err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return compare(ctx, &c)
}

// toolSet names the programs each tool needs on PATH (mcp and tcp use
// the binaries compare.sh builds).
var toolSet = map[string][]string{
	"mcp":     nil,
	"udpcast": {"udp-sender", "udp-receiver"},
	"uftp":    {"uftp", "uftpd"},
	"tcp":     nil,
}

// cell is one measured transfer.
type cell struct {
	tool, setting string
	n             int
	loss          float64 // at every receiver, percent
	slow          float64 // >0: only the last receiver loses, this much
	params        string
	tuning        bool

	wall, healthy          time.Duration // last receiver done; last of all but the slow one
	gpMin, gpAvg           float64       // Mbit/s per receiver, over those done
	payload, wire          float64       // sender bytes / file size
	sendCPU                time.Duration
	recvCPUAvg, recvCPUMax time.Duration
	exact, complete        int // copies with the right SHA-256; receivers done
	errs                   []string
	notes                  []string
}

func (c *cell) ok() bool { return len(c.errs) == 0 && c.exact == c.n }

func (c *cell) caseName() string {
	if c.slow > 0 {
		return fmt.Sprintf("1 of %d at %g%%", c.n, c.slow)
	}
	return fmt.Sprintf("%g%%", c.loss)
}

func compare(ctx context.Context, c *config) (int, error) {
	work := c.work
	var err error
	if work == "" {
		if work, err = os.MkdirTemp("", "mcpcompare-"); err != nil {
			return 1, err
		}
		defer os.RemoveAll(work)
	}
	src := filepath.Join(work, "src", "bench.bin")
	tune := filepath.Join(work, "src", "tune.bin")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		return 1, err
	}
	seed := uint64(time.Now().UnixNano())
	if err := lab.WriteRandomFile(src, c.size, seed); err != nil {
		return 1, err
	}
	if err := lab.WriteRandomFile(tune, c.tuneSize, seed+1); err != nil {
		return 1, err
	}
	sums := map[string][32]byte{}
	for _, f := range []string{src, tune} {
		if sums[f], err = lab.HashFile(f); err != nil {
			return 1, err
		}
	}
	maxN := slices.Max(c.receivers)
	fmt.Printf("mcpcompare: %s file, receivers %v, losses %v%%, one-slow case %g%% at N=%d, tools %v, settings %v, shape %.0f Mbit/s, receiver GRO %v, %d CPUs\n\n",
		lab.HumanSize(c.size), c.receivers, c.losses, c.slow, maxN, c.tools, c.settings, c.shape/1e6, c.gro, runtime.NumCPU())

	var cells []*cell
	for _, setting := range c.settings {
		for _, n := range c.receivers {
			if ctx.Err() != nil {
				return 1, ctx.Err()
			}
			cs, err := runN(ctx, c, setting, n, n == maxN, src, tune, sums)
			cells = append(cells, cs...)
			if err != nil {
				report(c, cells, maxN)
				return 1, err
			}
		}
	}
	return report(c, cells, maxN), nil
}

// runN builds a lab of one sender and n receivers, applies the setting,
// tunes the baselines and runs every cell of that N.
func runN(ctx context.Context, c *config, setting string, n int, withSlow bool, src, tune string, sums map[string][32]byte) ([]*cell, error) {
	l, err := lab.Start(lab.Options{Hosts: n + 1, GRO: c.gro, BridgeNetfilter: c.brnf, Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	snd := l.Hosts[0]
	if err := snd.SegmentTCP(); err != nil {
		return nil, err
	}
	if err := countOut(snd); err != nil {
		return nil, err
	}
	mcpRate := c.mcpRate
	if setting == "B" {
		if err := snd.Shape(c.shape); err != nil {
			return nil, err
		}
		if mcpRate != "tune" && mcpRate != "auto" {
			mcpRate = fmt.Sprintf("%.0fM", c.shape/1e6)
		}
	}
	base := func(size int64, file string) *env {
		return &env{c: c, l: l, snd: snd, rcv: l.Hosts[1:], src: file, size: size, timeout: c.timeout}
	}
	params := map[string][]string{"mcp": {"--rate", mcpRate}, "tcp": nil, "udpcast": c.udpcastArgs, "uftp": c.uftpArgs}
	var cells []*cell
	for _, t := range c.tools {
		if (t == "udpcast" && c.udpcastArgs == nil) || (t == "uftp" && c.uftpArgs == nil) || (t == "mcp" && mcpRate == "tune") {
			best, trials, err := tuneTool(ctx, c, t, setting, n, base(c.tuneSize, tune), sums[tune])
			cells = append(cells, trials...)
			if err != nil {
				return cells, err
			}
			params[t] = best
		}
	}
	cases := []struct{ loss, slow float64 }{}
	for _, loss := range c.losses {
		cases = append(cases, struct{ loss, slow float64 }{loss, 0})
	}
	if withSlow && c.slow > 0 && n >= 2 {
		cases = append(cases, struct{ loss, slow float64 }{0, c.slow})
	}
	for _, cs := range cases {
		for i, h := range l.Hosts[1:] {
			p := int(math.Round(cs.loss * 10))
			if cs.slow > 0 && i == n-1 {
				p = int(math.Round(cs.slow * 10))
			}
			if err := h.SetLoss(p); err != nil {
				return cells, err
			}
			if err := h.SetTCPLoss(p); err != nil {
				return cells, err
			}
		}
		// The tools take turns at each loss, so a change in the
		// machine's load spreads over all of them.
		for _, t := range c.tools {
			if ctx.Err() != nil {
				return cells, ctx.Err()
			}
			x := &cell{tool: t, setting: setting, n: n, loss: cs.loss, slow: cs.slow, params: strings.Join(params[t], " ")}
			if err := measure(ctx, x, base(c.size, src), tools[t], params[t], sums[src]); err != nil {
				return cells, err
			}
			fmt.Fprintf(os.Stderr, "  %s\n", x.line())
			cells = append(cells, x)
		}
	}
	return cells, nil
}

// candidates are the settings tuneTool tries. udpcast: --max-bitrate
// (the raw rate, headers and retransmissions included) or none, in
// udpcast's default half-duplex mode and with --full-duplex (more
// data in flight while it waits for acks). UFTP: -R fixed rates in
// Kbit/s, "-R -1" (as fast as the interface takes), and TFMCC
// congestion control. mcp: --rate caps from 300M to 2G, in B the shaped
// rate too, and --rate auto.
func candidates(t string, shape float64, setting string) [][]string {
	switch t {
	case "mcp":
		out := [][]string{{"--rate", "300M"}, {"--rate", "450M"}, {"--rate", "700M"}, {"--rate", "1G"}, {"--rate", "2G"}, {"--rate", "auto"}}
		if setting == "B" {
			out = append(out, []string{"--rate", fmt.Sprintf("%.0fM", shape/1e6)})
		}
		return out
	case "udpcast":
		var out [][]string
		for _, r := range []string{"", "200m", "300m", "500m"} {
			for _, fd := range []bool{false, true} {
				var a []string
				if r != "" {
					a = append(a, "--max-bitrate", r)
				}
				if fd {
					a = append(a, "--full-duplex")
				}
				out = append(out, a)
			}
		}
		return out
	case "uftp":
		out := [][]string{{"-R", "200000"}, {"-R", "300000"}, {"-R", "500000"}, {"-R", "800000"}, {"-R", "-1"}, {"-C", "tfmcc"}}
		if setting == "B" {
			out = append(out, []string{"-R", fmt.Sprintf("%.0f", shape/1e3*0.95)})
		}
		return out
	}
	return [][]string{nil}
}

// tuneTool tries each candidate once on the tuning file, all n
// receivers, no loss, and returns the fastest whose copies are exact.
func tuneTool(ctx context.Context, c *config, t, setting string, n int, e *env, sum [32]byte) ([]string, []*cell, error) {
	fmt.Fprintf(os.Stderr, "tuning %s, setting %s, %d receivers, %s file, no loss ...\n", t, setting, n, lab.HumanSize(e.size))
	for _, h := range e.rcv {
		if err := h.SetLoss(0); err != nil {
			return nil, nil, err
		}
	}
	var trials []*cell
	var best []string
	bestWall := time.Duration(math.MaxInt64)
	for _, p := range candidates(t, c.shape, setting) {
		x := &cell{tool: t, setting: setting, n: n, params: strings.Join(p, " "), tuning: true}
		if err := measure(ctx, x, e, tools[t], p, sum); err != nil {
			return nil, trials, err
		}
		fmt.Fprintf(os.Stderr, "  trial %s\n", x.line())
		trials = append(trials, x)
		if x.ok() && x.wall < bestWall {
			best, bestWall = p, x.wall
		}
	}
	if bestWall == time.Duration(math.MaxInt64) {
		return nil, trials, fmt.Errorf("tuning %s (setting %s, %d receivers): no candidate delivered exact copies", t, setting, n)
	}
	fmt.Fprintf(os.Stderr, "  %s: keeping %q (%.2fs)\n", t, strings.Join(best, " "), bestWall.Seconds())
	return best, trials, nil
}

// warmPageCache writes n bytes of scratch data into dir and deletes
// it, untimed, so that every cell's receivers write their copies into
// memory in the same state, whatever ran before. Without it, the first
// cell after a phase that wrote less (the tuning trials) or after an
// idle pause starts on free memory that this VM's virtio_balloon free
// page reporting has handed back to the host, and every page the
// receivers' writes touch faults back in: the tool that runs first
// (mcp) paid 2x the receiver CPU in those cells (0.94 s against 0.48 s
// in the cell after it) while one held to a lower rate did not show it.
func warmPageCache(dir string, n int64) error {
	f, err := os.CreateTemp(dir, "warm-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	for n > 0 {
		m := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:m]); err != nil {
			return fmt.Errorf("warming the page cache in %s: %w", dir, err)
		}
		n -= m
	}
	return nil
}

// measure runs one transfer of e.src with tool t and fills x.
func measure(ctx context.Context, x *cell, base *env, t tool, params []string, sum [32]byte) error {
	e := *base
	work := filepath.Join(filepath.Dir(filepath.Dir(e.src)), "dst")
	os.RemoveAll(work)
	for i := range e.rcv {
		d := filepath.Join(work, strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		e.dirs = append(e.dirs, d)
		e.copies = append(e.copies, filepath.Join(d, filepath.Base(e.src)))
	}
	defer os.RemoveAll(work)
	if !e.c.noWarm {
		if err := warmPageCache(work, int64(len(e.rcv))*e.size); err != nil {
			return err
		}
	}
	before, err := sent(e.snd)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, e.timeout+45*time.Second)
	o, err := t.run(cctx, &e, params)
	timedOut := cctx.Err() != nil
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	after, err := sent(e.snd)
	if err != nil {
		return err
	}
	if timedOut && ctx.Err() == nil {
		o.errs = append(o.errs, "timed out")
	}
	x.errs, x.notes = o.errs, o.notes
	file := float64(e.size)
	x.payload = float64(after.payload-before.payload) / file
	x.wire = float64(after.wire-before.wire) / file
	x.sendCPU = o.sendCPU
	var gps []float64
	for i, d := range o.done {
		x.recvCPUAvg += o.recvCPU[i]
		x.recvCPUMax = max(x.recvCPUMax, o.recvCPU[i])
		if d.IsZero() {
			continue
		}
		x.complete++
		el := d.Sub(o.start)
		x.wall = max(x.wall, el)
		if x.slow == 0 || i < len(o.done)-1 {
			x.healthy = max(x.healthy, el)
		}
		gps = append(gps, file*8/el.Seconds()/1e6)
	}
	x.recvCPUAvg /= time.Duration(len(o.done))
	if len(gps) > 0 {
		x.gpMin = slices.Min(gps)
		for _, g := range gps {
			x.gpAvg += g
		}
		x.gpAvg /= float64(len(gps))
	}
	for i, p := range e.copies {
		if h, err := lab.HashFile(p); err == nil && h == sum {
			x.exact++
		} else if !o.done[i].IsZero() {
			x.errs = append(x.errs, fmt.Sprintf("receiver %d: copy differs from the source (%v)", i, err))
		}
	}
	return nil
}

func (x *cell) line() string {
	s := fmt.Sprintf("%-7s %s N=%d %-12s %-28q wall %6.2fs", x.tool, x.setting, x.n, x.caseName(), x.params, x.wall.Seconds())
	if x.slow > 0 {
		s += fmt.Sprintf(" (healthy %.2fs)", x.healthy.Seconds())
	}
	s += fmt.Sprintf(", goodput min/avg %.1f/%.1f Mbit/s, sent/file %.3f (wire %.3f), cpu sender %.2fs receiver avg %.2fs, exact %d/%d",
		x.gpMin, x.gpAvg, x.payload, x.wire, x.sendCPU.Seconds(), x.recvCPUAvg.Seconds(), x.exact, x.n)
	for _, e := range x.errs {
		s += "\n      " + e
	}
	for _, e := range x.notes {
		s += "\n      note: " + e
	}
	return s
}

// report prints the table and the targets and writes the CSV and charts;
// it returns the exit code (1 if a measured cell failed).
func report(c *config, cells []*cell, maxN int) int {
	var measured []*cell
	for _, x := range cells {
		if !x.tuning {
			measured = append(measured, x)
		}
	}
	code := 0
	fmt.Println("\ntuning trials (baselines, tuning file, no loss; the fastest exact one is kept):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tool\tset\tN\tparams\twall s\tgoodput avg\tsent/file\texact\t")
	for _, x := range cells {
		if x.tuning {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.2f\t%.1f\t%.3f\t%d/%d\t\n", x.tool, x.setting, x.n, x.params, x.wall.Seconds(), x.gpAvg, x.payload, x.exact, x.n)
		}
	}
	tw.Flush()
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tset\tN\tloss\twall s\thealthy s\tgoodput min\tavg Mbit/s\tsent/file\twire/file\tsender cpu s\trecv cpu avg s\texact\tparams\t")
	for _, x := range measured {
		h := "-"
		if x.slow > 0 {
			h = fmt.Sprintf("%.2f", x.healthy.Seconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.2f\t%s\t%.1f\t%.1f\t%.3f\t%.3f\t%.2f\t%.2f\t%d/%d\t%s\t\n", x.tool, x.setting, x.n, x.caseName(),
			x.wall.Seconds(), h, x.gpMin, x.gpAvg, x.payload, x.wire, x.sendCPU.Seconds(), x.recvCPUAvg.Seconds(), x.exact, x.n, x.params)
		if !x.ok() {
			code = 1
		}
	}
	tw.Flush()
	fmt.Println("(wall: sender start to the last receiver holding the whole file; healthy: the same without the slow receiver;\n" +
		" goodput: file bits over each receiver's time; sent/file: UDP or TCP payload the sender put out (nftables output counter) per file byte;\n" +
		" wire/file: the sender's eth0 tx bytes, all headers included; cpu: user+system seconds of the sender process and the mean receiver process;\n" +
		" exact: copies with the source's SHA-256)")
	for _, x := range measured {
		for _, e := range x.errs {
			fmt.Printf("FAILURE %s %s N=%d %s: %s\n", x.tool, x.setting, x.n, x.caseName(), e)
		}
		for _, e := range x.notes {
			fmt.Printf("NOTE %s %s N=%d %s: %s\n", x.tool, x.setting, x.n, x.caseName(), e)
		}
	}
	targets(c, measured, maxN)
	if err := writeCSV(filepath.Join(c.out, "results.csv"), cells, c.gro); err != nil {
		fmt.Fprintln(os.Stderr, "mcpcompare: csv:", err)
		code = 1
	}
	for _, s := range c.settings {
		name := filepath.Join(c.out, "goodput-"+s+".png")
		if err := chart(name, s, c, measured, maxN); err != nil {
			fmt.Fprintln(os.Stderr, "mcpcompare: chart:", err)
			code = 1
		}
	}
	fmt.Printf("\nwrote %s/results.csv and goodput-<setting>.png\n", c.out)
	return code
}

// targets checks issue 7's ratios, within this run, at N=8 (or the
// largest N measured).
func targets(c *config, cells []*cell, maxN int) {
	n := 8
	if !slices.Contains(c.receivers, 8) {
		n = maxN
	}
	find := func(tool, setting string, loss, slow float64) *cell {
		for _, x := range cells {
			if x.tool == tool && x.setting == setting && x.n == n && x.loss == loss && x.slow == slow && x.complete == x.n {
				return x
			}
		}
		return nil
	}
	fmt.Printf("\ntargets (N=%d; a ratio is shown only when both cells completed):\n", n)
	check := func(name string, v, target float64, atLeast bool, have bool) {
		if !have {
			fmt.Printf("  %-62s    n/a  (target %s %.2f) NOT MEASURED\n", name, map[bool]string{true: ">=", false: "<="}[atLeast], target)
			return
		}
		ok, op := v <= target, "<="
		if atLeast {
			ok, op = v >= target, ">="
		}
		fmt.Printf("  %-62s %7.4f  (target %s %.2f) %s\n", name, v, op, target, map[bool]string{true: "OK", false: "MISSED"}[ok])
	}
	ratio := func(setting, other string, loss float64) (float64, bool) {
		m, o := find("mcp", setting, loss, 0), find(other, setting, loss, 0)
		if m == nil || o == nil {
			return 0, false
		}
		return m.wall.Seconds() / o.wall.Seconds(), true
	}
	r, ok := ratio("A", "udpcast", 0)
	check("A 0%: mcp wall / udpcast wall", r, 0.8, false, ok)
	r, ok = ratio("A", "uftp", 0)
	check("A 0%: mcp wall / UFTP wall", r, 0.5, false, ok)
	r, ok = ratio("A", "tcp", 0)
	check("A 0%: mcp wall / TCP fan-out wall", r, 1.0, false, ok)
	m := find("mcp", "B", 0, 0)
	if m != nil {
		check("B 0%: mcp goodput per receiver (avg) / shaped rate", m.gpAvg*1e6/c.shape, 0.9, true, true)
	} else {
		check("B 0%: mcp goodput per receiver (avg) / shaped rate", 0, 0.9, true, false)
	}
	r, ok = ratio("B", "tcp", 0)
	check("B 0%: mcp wall / TCP fan-out wall", r, 0.25, false, ok)
	for _, s := range []string{"A", "B"} {
		m := find("mcp", s, 5, 0)
		check(s+" 5%: mcp sender payload bytes / file size", payloadOf(m), 1.12, false, m != nil)
		r, ok := ratio(s, "udpcast", 5)
		check(s+" 5%: mcp wall / udpcast wall", r, 0.6, false, ok)
	}
	// Issue 7, point 3: receiver CPU per GiB at most udp-receiver's. The
	// file is the same in both cells, so the per-cell means compare.
	for _, s := range []string{"A", "B"} {
		for _, loss := range c.losses {
			m, u := find("mcp", s, loss, 0), find("udpcast", s, loss, 0)
			r := 0.0
			if m != nil && u != nil && u.recvCPUAvg > 0 {
				r = m.recvCPUAvg.Seconds() / u.recvCPUAvg.Seconds()
			}
			check(fmt.Sprintf("%s %g%%: mcp receiver CPU / udp-receiver CPU (mean)", s, loss), r, 1.0, false, r > 0)
		}
	}
	for _, s := range []string{"A", "B"} {
		var slow *cell
		for _, x := range cells {
			if x.tool == "mcp" && x.setting == s && x.n == n && x.slow > 0 {
				slow = x
			}
		}
		base := find("mcp", s, 0, 0)
		name := fmt.Sprintf("%s one slow receiver: mcp healthy-%d wall / all-healthy wall", s, n-1)
		if slow != nil && base != nil && slow.healthy > 0 {
			check(name, slow.healthy.Seconds()/base.wall.Seconds(), 1.1, false, true)
		} else {
			check(name, 0, 1.1, false, false)
		}
	}
}

func payloadOf(x *cell) float64 {
	if x == nil {
		return 0
	}
	return x.payload
}

func writeCSV(name string, cells []*cell, gro bool) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"tool", "setting", "receivers", "case", "loss_pct", "slow_receiver_loss_pct", "params", "tuning_trial",
		"wall_s", "healthy_wall_s", "goodput_min_mbps", "goodput_avg_mbps", "sent_payload_per_file", "sent_wire_per_file",
		"sender_cpu_s", "recv_cpu_avg_s", "recv_cpu_max_s", "complete", "exact", "all_exact", "errors", "notes", "receiver_gro"})
	for _, x := range cells {
		kind := "all"
		if x.slow > 0 {
			kind = "one-slow"
		}
		f := func(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
		w.Write([]string{x.tool, x.setting, strconv.Itoa(x.n), kind, f(x.loss), f(x.slow), x.params, strconv.FormatBool(x.tuning),
			f(x.wall.Seconds()), f(x.healthy.Seconds()), f(x.gpMin), f(x.gpAvg), f(x.payload), f(x.wire),
			f(x.sendCPU.Seconds()), f(x.recvCPUAvg.Seconds()), f(x.recvCPUMax.Seconds()),
			strconv.Itoa(x.complete), strconv.Itoa(x.exact), strconv.FormatBool(x.ok()), strings.Join(x.errs, "; "), strings.Join(x.notes, "; "), strconv.FormatBool(gro)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
