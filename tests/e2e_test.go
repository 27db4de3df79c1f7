// Package tests holds mcp's multi-process tests: real mcp binaries in
// network namespaces joined by a bridge (see package lab), with packet
// loss from nftables. They need root; without it they skip (or fail when
// CI=true).
//
// Environment:
//
//	MCP_BIN           use this mcp binary instead of building ./cmd/mcp
//	MCP_E2E_RATE      the senders' --rate (default 300M; a cap: senders slow down
//	                  when receivers report that they fall behind)
//	MCP_E2E_LOGDIR    keep each process's stderr in DIR/<test>/
//	MCP_E2E_LOGLEVEL  their --log-level when MCP_E2E_LOGDIR is set (default info)
package tests

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/tests/lab"
)

var (
	mcpBin      string // built once by TestMain
	mcpBuildErr error
	blastBin    string
	blastErr    error
	tcpfanBin   string
	tcpfanErr   error
)

// defaultRate is the senders' --rate. It was 150M while a sender that
// could not reach its rate stopped reading NAKs (the 5%-loss test then
// failed under CI load); since that fix 300M passes with the race
// detector and the other packages' tests running alongside.
// tests/bench.sh measures more.
const defaultRate = "300M"

func rate() string {
	if r := os.Getenv("MCP_E2E_RATE"); r != "" {
		return r
	}
	return defaultRate
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "mcp-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mcpBin = os.Getenv("MCP_BIN"); mcpBin == "" {
		mcpBin = filepath.Join(tmp, "mcp")
		mcpBuildErr = goBuild(root, mcpBin, "./cmd/mcp")
	}
	blastBin = filepath.Join(tmp, "udpblast")
	blastErr = goBuild(root, blastBin, "./tests/cmd/udpblast")
	tcpfanBin = filepath.Join(tmp, "tcpfan")
	tcpfanErr = goBuild(root, tcpfanBin, "./tests/cmd/tcpfan")
	code := m.Run()
	// Labs close in t.Cleanup; this catches any a panic left behind.
	if swept := lab.Sweep(true); len(swept) > 0 {
		fmt.Fprintf(os.Stderr, "swept leftover namespaces: %v\n", swept)
	}
	return code
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the mcp module")
	}
	return filepath.Dir(mod), nil
}

func goBuild(root, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

func needMCP(t *testing.T) {
	t.Helper()
	if mcpBuildErr != nil {
		t.Fatalf("mcp did not build: %v", mcpBuildErr)
	}
}

// transferTest is one file-transfer scenario.
type transferTest struct {
	receivers int
	lossPer   int // permille, at every receiver
	late      map[int]time.Duration
	rate      string // --rate; if empty, rate()
	sendArgs  []string
	timeout   time.Duration // receivers' --timeout; the test's own bound follows
	// slow names receivers that get a twentieth of the wall time: the
	// test stops them (SIGSTOP) for 95 ms out of every 100. (Running all
	// the time, a receiver here handles 64 MiB in about 0.2 s of CPU.)
	slow map[int]bool
	// setup, if set, runs on the lab before the transfer (shaping a
	// link, say); after, if set, once it is over (reading counters).
	setup, after func(*lab.Lab)
	// gro builds the lab with lab.Options.GRO: the hosts coalesce what
	// they receive, as NICs do.
	gro bool
	// idleFirst: the first receiver's host runs no receiver (its link,
	// shaped or not, still carries the group: the bridge floods it);
	// the others run as receivers 0, 1, ...
	idleFirst bool
}

// stutter stops and continues process group pgid, 95 ms stopped out of
// every 100, until done is closed or the group is gone; it always leaves
// the group running.
func stutter(pgid int, done <-chan struct{}) {
	defer syscall.Kill(-pgid, syscall.SIGCONT)
	for {
		if syscall.Kill(-pgid, syscall.SIGSTOP) != nil {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(95 * time.Millisecond):
		}
		if syscall.Kill(-pgid, syscall.SIGCONT) != nil {
			return
		}
		select {
		case <-done:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// run builds a lab, sends paths from host 0 to every receiver, checks
// every copy against want and the exit codes and JSON documents, and
// returns the result for the caller's own checks and logs.
func (tt transferTest) run(t *testing.T, want lab.Tree, paths []string) *lab.TransferResult {
	t.Helper()
	needMCP(t)
	if tt.rate == "" {
		tt.rate = rate()
	}
	l := lab.New(t, lab.Options{Hosts: tt.receivers + 1, GRO: tt.gro})
	for _, h := range l.Hosts[1:] {
		if err := h.SetLoss(tt.lossPer); err != nil {
			t.Fatal(err)
		}
	}
	if tt.setup != nil {
		tt.setup(l)
	}
	hosts := l.Hosts[1:]
	if tt.idleFirst {
		hosts = hosts[1:]
	}
	dirs := make([]string, len(hosts))
	for i := range dirs {
		dirs[i] = filepath.Join(t.TempDir(), "dst")
	}
	ctx, cancel := context.WithTimeout(context.Background(), tt.timeout+30*time.Second)
	defer cancel()
	tr := lab.Transfer{
		MCP:       mcpBin,
		Sender:    l.Hosts[0],
		Receivers: hosts,
		Dirs:      dirs,
		Late:      tt.late,
		Paths:     paths,
		SendArgs:  append([]string{"--rate", tt.rate, "--linger", "1s"}, tt.sendArgs...),
		Timeout:   tt.timeout,
	}
	stopStutter := make(chan struct{})
	var stutters sync.WaitGroup
	defer func() { close(stopStutter); stutters.Wait() }()
	tr.ReceiverStarted = func(i, pid int) {
		if tt.slow[i] {
			stutters.Go(func() { stutter(pid, stopStutter) })
		}
	}
	if dir := os.Getenv("MCP_E2E_LOGDIR"); dir != "" {
		tr.LogDir = filepath.Join(dir, t.Name())
		if err := os.MkdirAll(tr.LogDir, 0o755); err != nil {
			t.Fatal(err)
		}
		level := []string{"--log-level", cmp.Or(os.Getenv("MCP_E2E_LOGLEVEL"), "info")}
		tr.SendArgs = append(tr.SendArgs, level...)
		tr.RecvArgs = append(tr.RecvArgs, level...)
		t.Logf("logs in %s", tr.LogDir)
	}
	start := time.Now()
	res, err := tr.Run(ctx)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	if tt.after != nil {
		tt.after(l)
	}
	t.Logf("rate %s, %d receivers, loss %.1f%%: %s", tt.rate, len(hosts), float64(tt.lossPer)/10, res.Summary(want.Bytes()))
	for i, h := range hosts {
		if tt.lossPer > 0 {
			n, err := h.Dropped()
			if err != nil {
				t.Error(err)
			}
			t.Logf("receiver %d: nft dropped %d datagrams", i, n)
		}
	}
	if err := res.Failures(); err != nil {
		t.Errorf("failures:\n%v", err)
	}
	t.Logf("verifying %d copies (%.1f MiB each)", len(dirs), float64(want.Bytes())/(1<<20))
	for i, diffs := range want.CompareAll(dirs, 10) {
		if len(diffs) > 0 {
			t.Errorf("receiver %d's copy differs from the source:\n  %s", i, strings.Join(diffs, "\n  "))
		}
	}
	t.Logf("test wall time %.1fs", time.Since(start).Seconds())
	return res
}

// bigFile writes a random file of size bytes in a fresh directory and
// returns its path and tree.
func bigFile(t *testing.T, size int64) (string, lab.Tree) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("file: %d bytes, seed %d", size, seed)
	name := filepath.Join(t.TempDir(), "big file.bin")
	if err := lab.WriteRandomFile(name, size, seed); err != nil {
		t.Fatal(err)
	}
	want, err := lab.Snapshot(name)
	if err != nil {
		t.Fatal(err)
	}
	return name, want
}

func TestNoLoss64MiB(t *testing.T) {
	name, want := bigFile(t, 64<<20)
	res := transferTest{receivers: 4, timeout: 60 * time.Second}.run(t, want, []string{name})
	if st := res.Send.JSON.Report.Stats; st.RetransPackets+st.ParityPackets > st.DataPackets/100 {
		t.Logf("note: %d repairs without configured loss (queue drops in the lab?)", st.RetransPackets+st.ParityPackets)
	}
}

func TestLoss5pct(t *testing.T) {
	name, want := bigFile(t, 64<<20)
	transferTest{receivers: 4, lossPer: 50, timeout: 90 * time.Second}.run(t, want, []string{name})
}

// TestLossGRO is TestLoss5pct on hosts that coalesce what they receive
// (GRO, as a NIC's driver does; the loss drops single frames on the
// bridge before that): the receivers' data sockets must keep reading
// coalesced buffers, split them into the right datagrams around the
// gaps, and write exact copies. Elsewhere in the lab every buffer holds
// one datagram, so only this test runs that path on real coalescing.
func TestLossGRO(t *testing.T) {
	name, want := bigFile(t, 48<<20)
	var dropped []uint64
	res := transferTest{receivers: 3, lossPer: 50, timeout: 90 * time.Second, gro: true,
		after: func(l *lab.Lab) {
			for _, h := range l.Hosts[1:] {
				n, err := h.Dropped()
				if err != nil {
					t.Error(err)
				}
				dropped = append(dropped, n)
			}
		}}.run(t, want, []string{name})
	for i, n := range dropped {
		// 5% of about 36,000 datagrams.
		if n < 1000 {
			t.Errorf("receiver %d: the bridge dropped %d datagrams, want about 1,800", i, n)
		}
	}
	for i, r := range res.Recv {
		ds, st := r.JSON.Report.DataSocket, r.JSON.Report.Stats
		t.Logf("receiver %d: data socket GRO %v, %d coalesced buffers holding %d datagrams (of %d data, %d parity)",
			i, ds.GRO, ds.Coalesced, ds.CoalescedDatagrams, st.DataPackets, st.ParityPackets)
		// Paced sends come in bursts of up to 8 datagrams; most of them
		// must have arrived coalesced.
		if !ds.GRO || ds.CoalescedDatagrams < st.DataPackets/2 {
			t.Errorf("receiver %d: data socket %+v: want GRO kept and most of the %d data packets read coalesced", i, ds, st.DataPackets)
		}
	}
}

// TestSlowReceiver: one of four receivers runs a twentieth of the time, so
// its socket queue fills. It reports that, the sender slows down, and
// every copy completes without the repair storm that a fixed rate causes.
func TestSlowReceiver(t *testing.T) {
	name, want := bigFile(t, 64<<20)
	// --expect 4: the sender ends on the four reports. In reliable mode it
	// would linger up to 20 s, as the stalled receiver's queueing delay
	// raises the GRTT estimate to seconds.
	res := transferTest{receivers: 4, slow: map[int]bool{0: true}, timeout: 90 * time.Second,
		sendArgs: []string{"--expect", "4", "--timeout", "80s"}}.run(t, want, []string{name})
	st := res.Send.JSON.Report.Stats
	slow := res.Recv[0].JSON.Report.Stats
	over := lab.Overhead(st.BytesSent, want.Bytes())
	t.Logf("sender: %d congestion reports, %d rate cuts, lowest rate %.1f Mbit/s; slow receiver: queue up to %.1f%%, %d socket drops, %d reports sent; sender bytes/file %.3f",
		st.CongestionReports, st.RateCuts, st.RateMinBps/1e6, float64(slow.QueueMaxPermille)/10, slow.SocketDrops, slow.CongestionSent, over)
	if st.RateCuts == 0 {
		t.Errorf("the sender never slowed down for the slow receiver")
	}
	// Alone this is 1.02; CI once measured 1.61 while other packages'
	// race-enabled tests shared the two cores (the stalled receiver's
	// GRTT reached 1.5 s). A fixed-rate sender here sends several times
	// the file; 2.0 still catches that storm without flaking on load.
	if over > 2.0 {
		t.Errorf("sender bytes/file %.3f, want <= 2.0", over)
	}
}

func TestLateReceiver(t *testing.T) {
	// 64 MiB at 150 Mbit/s takes about 3.6 s, so the late receiver joins
	// in the middle of the first pass.
	name, want := bigFile(t, 64<<20)
	res := transferTest{
		receivers: 3,
		late:      map[int]time.Duration{2: 2 * time.Second},
		rate:      "150M",
		timeout:   90 * time.Second,
	}.run(t, want, []string{name})
	if late := res.Recv[2].Started.Sub(res.Send.Started); late < 2*time.Second {
		t.Errorf("late receiver started %v after the sender, want >= 2s", late)
	}
	if res.Send.Exited.Before(res.Recv[2].Started) {
		t.Errorf("sender exited before the late receiver started: the test proves nothing; make the transfer longer")
	}
	// Not asserted (the brief is "still completes"), but worth seeing:
	// what a late joiner costs on the wire, and how long the sender went
	// on after the last receiver was done.
	t.Logf("late joiner cost: sender bytes_sent/file %.2f; sender exited %.1fs after the last receiver",
		lab.Overhead(res.Send.JSON.Report.Stats.BytesSent, want.Bytes()), res.Send.Exited.Sub(res.Send.Started.Add(res.Wall)).Seconds())
}

// TestTree300Files sends a tree with 300 files of varied sizes and modes,
// names with spaces and UTF-8, nested and empty directories, and empty
// files.
func TestTree300Files(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	root := filepath.Join(t.TempDir(), "tree")
	makeTree(t, root, seed)
	want, err := lab.Snapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	files, dirs := 0, 0
	for _, e := range want {
		if e.Dir {
			dirs++
		} else {
			files++
		}
	}
	t.Logf("tree: %d files, %d directories, %d bytes", files, dirs, want.Bytes())
	if files != 300 {
		t.Fatalf("made %d files, want 300", files)
	}
	res := transferTest{receivers: 4, lossPer: 10, timeout: 60 * time.Second}.run(t, want, []string{root})
	for i := range res.Recv {
		if got := res.Recv[i].JSON.Files; got != 300 {
			t.Errorf("receiver %d: json files %d, want 300", i, got)
		}
	}
}

// makeTree writes 300 files under root: sizes 0..200 KiB (symbol and
// block boundaries included), several modes and mtimes, in nested
// directories with spaces and UTF-8 in their names, plus empty
// directories.
func makeTree(t *testing.T, root string, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 300))
	dirs := []string{
		"",
		"données",
		"données/été 2024",
		"a b",
		"a b/c d",
		"a b/c d/e f/g",
		"日本語/テスト",
		"Ünïcödé ✓",
		"deep/1/2/3/4/5/6/7",
	}
	empty := []string{"empty", "données/vide", "a b/c d/empty too", "deep/1/2/empty/nested empty"}
	for _, d := range append(dirs, empty...) {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sizes := []int64{0, 0, 0, 1, 63, 64, 1407, 1408, 1409, 64 * 1408, 64*1408 + 1, 64*1408 - 1, 200 << 10}
	modes := []fs.FileMode{0o644, 0o600, 0o755, 0o640, 0o444, 0o700, 0o604}
	names := []string{"file %03d.bin", "ß-%03d.txt", "été %03d", "x%03d", "日本 %03d.dat", "with  two  spaces %03d"}
	write := func(rel string, size int64, mode fs.FileMode) {
		p := filepath.Join(root, rel)
		if err := lab.WriteRandomFile(p, size, rng.Uint64()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1_600_000_000+rng.Int64N(200_000_000), rng.Int64N(1e9))
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	write("données/été 2024/ß.txt", 1234, 0o644)
	for i := 1; i < 300; i++ {
		size := rng.Int64N(200<<10 + 1)
		if i < len(sizes) {
			size = sizes[i]
		} else if i%25 == 0 {
			size = 0
		}
		rel := filepath.Join(dirs[rng.IntN(len(dirs))], fmt.Sprintf(names[i%len(names)], i))
		write(rel, size, modes[i%len(modes)])
	}
	// Directory modes other than the default, applied last so files
	// could be created.
	for d, mode := range map[string]fs.FileMode{"a b/c d": 0o750, "日本語": 0o700, "empty": 0o711} {
		if err := os.Chmod(filepath.Join(root, d), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMemory1GiB sends 1 GiB to one receiver and checks that neither
// process's peak RSS reaches 100 MiB.
func TestMemory1GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB transfer; skipped with -short")
	}
	name, want := bigFile(t, 1<<30)
	res := transferTest{receivers: 1, rate: "800M", timeout: 120 * time.Second}.run(t, want, []string{name})
	const limit = 100 << 20
	s, r := res.Send.JSON.Report.MaxRSSBytes, res.Recv[0].JSON.Report.MaxRSSBytes
	t.Logf("max RSS: sender %.1f MiB, receiver %.1f MiB (limit %d MiB)", float64(s)/(1<<20), float64(r)/(1<<20), limit>>20)
	if s == 0 || s >= limit {
		t.Errorf("sender max_rss_bytes %d, want in (0, %d)", s, limit)
	}
	if r == 0 || r >= limit {
		t.Errorf("receiver max_rss_bytes %d, want in (0, %d)", r, limit)
	}
}

// TestLabBaseline checks the lab itself with udpblast: a paced burst
// reaches every host, and SetLoss drops about what it should.
func TestLabBaseline(t *testing.T) {
	if blastErr != nil {
		t.Fatalf("udpblast did not build: %v", blastErr)
	}
	l := lab.New(t, lab.Options{Hosts: 3})
	if err := l.Hosts[2].SetLoss(100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	group := fmt.Sprintf("239.213.%d.9:9000", l.Subnet)
	const count = 20000
	r, err := lab.Blast(ctx, blastBin, l.Hosts[0], l.Hosts[1:], group, 200e6, count, 1408)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d at %.0f Mbit/s; received %v", r.Send.Sent, r.Send.RateBPS/1e6, r.ReceivedCounts())
	if got := r.Recv[0].Unique; got < count*999/1000 {
		t.Errorf("host 1 (no loss) got %d of %d", got, count)
	}
	if got := r.Recv[1].Unique; got < count*85/100 || got > count*95/100 {
		t.Errorf("host 2 (10%% loss) got %d of %d, want about 90%%", got, count)
	}
}
