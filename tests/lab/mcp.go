package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
)

// Result is the JSON document "mcp send --json" and "mcp receive --json"
// print on stdout. R is rmtp.SendReport or rmtp.ReceiveReport.
type Result[R any] struct {
	OK          bool    `json:"ok"`
	Error       string  `json:"error"`
	Files       int     `json:"files"`
	Bytes       uint64  `json:"bytes"`
	DurationSec float64 `json:"duration_s"`
	GoodputMbps float64 `json:"goodput_mbps"`
	Report      R       `json:"report"`
}

// Proc is the outcome of one mcp process.
type Proc[R any] struct {
	Host     *Host
	Args     []string
	Started  time.Time
	Exited   time.Time
	ExitCode int   // -1 if killed or never started
	Err      error // from starting or waiting
	JSON     Result[R]
	JSONErr  error  // stdout was not one JSON document
	Stdout   string // raw, for failure messages
	Stderr   string // the last 4 KiB
	// UserCPU and SysCPU are the CPU time the process used.
	UserCPU, SysCPU time.Duration
}

// Wall is how long the process ran.
func (p *Proc[R]) Wall() time.Duration { return p.Exited.Sub(p.Started) }

// Failure returns nil if the process exited 0 and printed {"ok": true},
// or else an error saying what went wrong, with its stderr tail.
func (p *Proc[R]) Failure() error {
	switch {
	case p.Err != nil && p.ExitCode < 0:
		return fmt.Errorf("%s in %s: %v; stderr: %s", strings.Join(p.Args, " "), p.Host.NS, p.Err, p.Stderr)
	case p.ExitCode != 0:
		return fmt.Errorf("%s in %s: exit code %d, json error %q; stderr: %s", p.Args[0], p.Host.NS, p.ExitCode, p.JSON.Error, p.Stderr)
	case p.JSONErr != nil:
		return fmt.Errorf("%s in %s: stdout is not a JSON result (%v): %q", p.Args[0], p.Host.NS, p.JSONErr, p.Stdout)
	case !p.JSON.OK:
		return fmt.Errorf("%s in %s: exit 0 but json ok=false, error %q", p.Args[0], p.Host.NS, p.JSON.Error)
	}
	return nil
}

// Transfer describes one mcp session in a lab.
type Transfer struct {
	// MCP is the path of the mcp binary.
	MCP string
	// Sender runs "mcp send"; Receivers run "mcp receive", receiver i into
	// Dirs[i].
	Sender    *Host
	Receivers []*Host
	Dirs      []string
	// Late maps a receiver index to a delay: that receiver starts this
	// long after the sender instead of before it.
	Late map[int]time.Duration
	// Paths are the files and directories to send.
	Paths []string
	// Group is the data group; if zero, 239.213.<Subnet>.1:7700.
	Group netip.AddrPort
	// SendArgs and RecvArgs are appended to the commands (e.g. "--rate", "300M").
	SendArgs []string
	RecvArgs []string
	// Timeout is the receivers' --timeout; if zero, 60 s. The whole
	// transfer is also bounded by it plus 30 s.
	Timeout time.Duration
	// ReceiverStarted, if set, is called with each receiver's index and
	// process ID once it runs (tests use it to stop and continue one).
	ReceiverStarted func(i, pid int)
	// LogDir, if set, receives each process's whole stderr: sender.log,
	// receiver-0.log, ... (for --log-level debug sessions), and its --json
	// document: sender.json, receiver-0.json, ...
	LogDir string
}

// TransferResult is what Run measured.
type TransferResult struct {
	Send Proc[rmtp.SendReport]
	Recv []Proc[rmtp.ReceiveReport]
	// Wall is from the sender's start to the last receiver's exit: how
	// long until every receiver had its copy. The sender lingers longer.
	Wall time.Duration
}

// Failures lists every process that failed, in one error.
func (r *TransferResult) Failures() error {
	var errs []error
	if err := r.Send.Failure(); err != nil {
		errs = append(errs, fmt.Errorf("sender: %w", err))
	}
	for i := range r.Recv {
		if err := r.Recv[i].Failure(); err != nil {
			errs = append(errs, fmt.Errorf("receiver %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// Run starts the receivers (the late ones excepted), waits until each has
// joined the group, starts the sender, starts late receivers after their
// delay, and waits for every process to exit. It returns an error only
// if the lab itself failed; mcp's failures are in the result.
func (tr Transfer) Run(ctx context.Context) (*TransferResult, error) {
	if len(tr.Dirs) != len(tr.Receivers) {
		return nil, fmt.Errorf("%d receivers but %d dirs", len(tr.Receivers), len(tr.Dirs))
	}
	if tr.Timeout == 0 {
		tr.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, tr.Timeout+30*time.Second)
	defer cancel()
	if !tr.Group.IsValid() {
		tr.Group = netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 213, byte(tr.Sender.Lab.Subnet), 1}), 7700)
	}
	group := tr.Group.String()
	res := &TransferResult{Recv: make([]Proc[rmtp.ReceiveReport], len(tr.Receivers))}
	var wg sync.WaitGroup

	startRecv := func(i int) error {
		args := append([]string{"receive", "--dir", tr.Dirs[i], "--interface", tr.Receivers[i].Iface,
			"--group", group, "--ttl", "1", "--timeout", tr.Timeout.String(), "--json", "--quiet"}, tr.RecvArgs...)
		w, pid, err := start(ctx, tr.Receivers[i], tr.MCP, args, &res.Recv[i], tr.logFile(fmt.Sprintf("receiver-%d.log", i)))
		if err != nil {
			return err
		}
		if tr.ReceiverStarted != nil {
			tr.ReceiverStarted(i, pid)
		}
		wg.Add(1)
		go func() { defer wg.Done(); w() }()
		return nil
	}
	for i := range tr.Receivers {
		if _, late := tr.Late[i]; late {
			continue
		}
		if err := startRecv(i); err != nil {
			cancel()
			wg.Wait()
			return res, err
		}
	}
	// Joining takes milliseconds; a receiver that has not joined after
	// 10 s has failed (its stderr says why).
	joinCtx, joinCancel := context.WithTimeout(ctx, 10*time.Second)
	defer joinCancel()
	for i, h := range tr.Receivers {
		if _, late := tr.Late[i]; late {
			continue
		}
		if err := h.WaitGroups(joinCtx, tr.Group.Addr()); err != nil {
			cancel()
			wg.Wait()
			return res, fmt.Errorf("receiver %d never joined: %w (stderr: %s)", i, err, res.Recv[i].Stderr)
		}
	}

	args := append([]string{"send", "--interface", tr.Sender.Iface, "--group", group, "--ttl", "1", "--json", "--quiet"}, tr.SendArgs...)
	args = append(append(args, "--"), tr.Paths...)
	w, _, err := start(ctx, tr.Sender, tr.MCP, args, &res.Send, tr.logFile("sender.log"))
	if err != nil {
		cancel()
		wg.Wait()
		return res, err
	}
	sendStart := res.Send.Started
	wg.Add(1)
	go func() { defer wg.Done(); w() }()

	var lateErr error
	var lateMu sync.Mutex
	for i, d := range tr.Late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(time.Until(sendStart.Add(d))):
			case <-ctx.Done():
				return
			}
			if err := startRecv(i); err != nil {
				lateMu.Lock()
				lateErr = errors.Join(lateErr, err)
				lateMu.Unlock()
			}
		}()
	}
	wg.Wait()
	end := sendStart
	for i := range res.Recv {
		if res.Recv[i].Exited.After(end) {
			end = res.Recv[i].Exited
		}
	}
	res.Wall = end.Sub(sendStart)
	return res, lateErr
}

// logFile returns the path of a log under LogDir, or "".
func (tr *Transfer) logFile(name string) string {
	if tr.LogDir == "" {
		return ""
	}
	return filepath.Join(tr.LogDir, name)
}

// start starts mcp in h and returns a function that waits for it and
// fills p, and the process ID. If logFile is set, the whole stderr goes
// there too.
func start[R any](ctx context.Context, h *Host, bin string, args []string, p *Proc[R], logFile string) (func(), int, error) {
	p.Host, p.Args, p.ExitCode = h, append([]string{"mcp"}, args...), -1
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 4096}
	cmd := h.Cmd(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	var log *os.File
	if logFile != "" {
		var err error
		if log, err = os.Create(logFile); err != nil {
			return nil, 0, err
		}
		cmd.Stderr = io.MultiWriter(stderr, log)
	}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		if log != nil {
			log.Close()
		}
		p.Err = err
		p.Exited = p.Started
		return nil, 0, fmt.Errorf("start %s in %s: %w", bin, h.NS, err)
	}
	return func() {
		err := cmd.Wait()
		p.Exited = time.Now()
		if log != nil {
			log.Close()
		}
		p.Err = err
		if cmd.ProcessState != nil {
			p.ExitCode = cmd.ProcessState.ExitCode() // -1 if killed by a signal
			p.UserCPU, p.SysCPU = cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime()
		}
		p.Stdout = stdout.String()
		p.Stderr = stderr.String()
		if logFile != "" {
			// The --json document next to the log, for reading afterwards;
			// a failure to write it only loses that copy.
			_ = os.WriteFile(strings.TrimSuffix(logFile, ".log")+".json", stdout.Bytes(), 0o644)
		}
		p.JSONErr = decodeOne(stdout.Bytes(), &p.JSON)
	}, cmd.Process.Pid, nil
}

// decodeOne decodes the summary of mcp's --json output from b: JSON lines
// (events), the last of which is {"event": "summary", ...}.
func decodeOne(b []byte, v any) error {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	last := lines[len(lines)-1]
	var head struct {
		Event string `json:"event"`
	}
	if err := json.Unmarshal(last, &head); err != nil {
		return err
	}
	if head.Event != "summary" {
		return fmt.Errorf("last JSON line is event %q, not the summary", head.Event)
	}
	return json.Unmarshal(last, v)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// Summary formats the figures every test and benchmark logs: wall time,
// goodput per receiver, sender bytes on the wire per byte of file, NAKs
// heard at the sender and NAK counts per receiver.
func (r *TransferResult) Summary(fileBytes uint64) string {
	var b strings.Builder
	st := r.Send.JSON.Report.Stats
	fmt.Fprintf(&b, "wall %.2fs (sender ran %.2fs, cpu user %.2fs sys %.2fs), sender bytes_sent/file %.3f (data %d, parity %d, retrans %d, control %d), NAKs heard %d (entries %d), repair rounds %d, receivers completed %d, GRTT %v",
		r.Wall.Seconds(), r.Send.Wall().Seconds(), r.Send.UserCPU.Seconds(), r.Send.SysCPU.Seconds(), Overhead(st.BytesSent, fileBytes),
		st.DataPackets, st.ParityPackets, st.RetransPackets, st.ControlPackets,
		st.NAKsHeard, st.NAKEntriesHeard, st.RepairRounds, st.Completed, st.GRTT)
	for i := range r.Recv {
		p := &r.Recv[i]
		rs := p.JSON.Report.Stats
		fmt.Fprintf(&b, "\n  receiver %d: exit %d ok=%v, goodput %.1f Mbit/s, ran %.2fs (cpu user %.2fs sys %.2fs), NAKs sent %d (entries %d) suppressed %d, parity kept %d, repairs kept %d, dups %d, rebuilt %d, drops %v",
			i, p.ExitCode, p.JSON.OK, p.JSON.GoodputMbps, p.Wall().Seconds(), p.UserCPU.Seconds(), p.SysCPU.Seconds(), rs.NAKsSent, rs.NAKEntriesSent, rs.NAKsSuppressed,
			rs.ParityPackets, rs.RepairPackets, rs.DupPackets, rs.BlocksRebuilt, rs.Drops)
	}
	return b.String()
}

// Overhead is sent/file, or 0 for an empty file.
func Overhead(sent, file uint64) float64 {
	if file == 0 {
		return 0
	}
	return float64(sent) / float64(file)
}
