package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/mcp-dev/mcp/repairtree"
)

// RepairSummary is the last line "mcp repair --json" prints when it stops.
type RepairSummary struct {
	Event string           `json:"event"`
	OK    bool             `json:"ok"`
	Error string           `json:"error"`
	Stats repairtree.Stats `json:"stats"`
}

// Repair is a running "mcp repair" process.
type Repair struct {
	Host *Host
	Args []string
	// After Stop (or once Done is closed):
	Started, Exited time.Time
	ExitCode        int // -1 if killed or never reaped
	Err             error
	Summary         RepairSummary
	SummaryErr      error  // stdout's last line was not the summary
	Stdout          string // raw
	Stderr          string // the last 4 KiB
	// UserCPU and SysCPU are the CPU time the process used.
	UserCPU, SysCPU time.Duration

	cmd  interface{ Signal(os.Signal) error }
	done chan struct{}
}

// StartRepair starts "mcp repair" in h with args (add --json to get a
// summary) and returns at once. The process ends with ctx, the lab, or
// Stop. If logFile is set, its whole stderr goes there too, and its
// stdout next to it (.json).
func StartRepair(ctx context.Context, bin string, h *Host, args []string, logFile string) (*Repair, error) {
	r := &Repair{Host: h, Args: append([]string{"mcp", "repair"}, args...), ExitCode: -1, done: make(chan struct{})}
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 4096}
	cmd := h.Cmd(ctx, bin, append([]string{"repair"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	var log *os.File
	if logFile != "" {
		var err error
		if log, err = os.Create(logFile); err != nil {
			return nil, err
		}
		cmd.Stderr = io.MultiWriter(stderr, log)
	}
	r.Started = time.Now()
	if err := cmd.Start(); err != nil {
		if log != nil {
			log.Close()
		}
		return nil, fmt.Errorf("start mcp repair in %s: %w", h.NS, err)
	}
	r.cmd = cmd.Process
	go func() {
		defer close(r.done)
		r.Err = cmd.Wait()
		r.Exited = time.Now()
		if log != nil {
			log.Close()
			_ = os.WriteFile(strings.TrimSuffix(logFile, ".log")+".json", stdout.Bytes(), 0o644)
		}
		if cmd.ProcessState != nil {
			r.ExitCode = cmd.ProcessState.ExitCode()
			r.UserCPU, r.SysCPU = cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime()
		}
		r.Stdout, r.Stderr = stdout.String(), stderr.String()
		r.SummaryErr = decodeOne(stdout.Bytes(), &r.Summary)
	}()
	return r, nil
}

// Done is closed once the process has exited and its outcome is filled in.
func (r *Repair) Done() <-chan struct{} { return r.done }

// Stop sends SIGTERM and waits up to wait for the process to exit (then
// it kills it). It returns nil if it exited 0 with a summary saying ok.
func (r *Repair) Stop(wait time.Duration) error {
	select {
	case <-r.done:
	default:
		r.cmd.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(wait):
			r.cmd.Signal(syscall.SIGKILL)
			<-r.done
			return fmt.Errorf("mcp repair in %s: still running %v after SIGTERM; killed; stderr: %s", r.Host.NS, wait, r.Stderr)
		}
	}
	switch {
	case r.ExitCode != 0:
		return fmt.Errorf("mcp repair in %s: exit code %d (%v); stderr: %s", r.Host.NS, r.ExitCode, r.Err, r.Stderr)
	case r.SummaryErr != nil:
		return fmt.Errorf("mcp repair in %s: no summary (%v): stdout %q", r.Host.NS, r.SummaryErr, r.Stdout)
	case !r.Summary.OK:
		return fmt.Errorf("mcp repair in %s: summary ok=false, error %q", r.Host.NS, r.Summary.Error)
	}
	return nil
}

// String formats the counters tests log.
func (s *RepairSummary) String() string {
	st := &s.Stats
	return fmt.Sprintf("sessions %d, packets in %d, region NAKs heard %d (entries %d, lacking %d, ignored %d), NAKs forwarded %d (suppressed %d), repair rounds %d, repair packets %d (%d bytes), relayed %d, receivers complete %d failed %d, depth %d",
		st.SessionsTotal, st.PacketsIn, st.RegionNAKs, st.RegionNAKEntries, st.NAKsLacking, st.NAKsIgnored, st.NAKsForwarded, st.NAKsSuppressed,
		st.RepairRounds, st.RepairPackets, st.RepairBytes, st.Relayed, st.ReceiversComplete, st.ReceiversFailed, st.Depth)
}

// Launch starts mcp with args in h and returns a function that waits for
// it and fills p, and its process ID. It is what Transfer uses, for tests
// that lay out their processes themselves. If logFile is set, the whole
// stderr goes there, and stdout next to it (.json).
func Launch[R any](ctx context.Context, h *Host, bin string, args []string, p *Proc[R], logFile string) (wait func(), pid int, err error) {
	return start(ctx, h, bin, args, p, logFile)
}
