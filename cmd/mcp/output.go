package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// result is the last JSON line --json writes to stdout (the "summary"
// event, events.go), on success and on failure. Report is the library's
// report, possibly partial; the top-level figures repeat its main numbers
// in convenient units.
type result struct {
	Time        string  `json:"time"`
	Event       string  `json:"event"` // always "summary"
	OK          bool    `json:"ok"`
	Error       string  `json:"error,omitempty"`
	Files       int     `json:"files"`
	Bytes       uint64  `json:"bytes"`
	DurationSec float64 `json:"duration_s"`
	GoodputMbps float64 `json:"goodput_mbps"`
	Report      any     `json:"report"`
}

func newResult(err error, files int, bytes uint64, d time.Duration, goodputBps float64, report any) result {
	r := result{
		Event:       eventSummary,
		OK:          err == nil,
		Files:       files,
		Bytes:       bytes,
		DurationSec: d.Seconds(),
		GoodputMbps: goodputBps / 1e6,
		Report:      report,
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// humanBytes formats a byte count for people: "64.0 MiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= unit
		if v < unit || s == "TiB" {
			return fmt.Sprintf("%.1f %s", v, s)
		}
	}
	panic("unreachable")
}

// humanRate formats bits per second: "190.9 Mbit/s".
func humanRate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.1f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}

// sumDrops adds up packets dropped by reason.
func sumDrops(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress draws one progressbar/v3 bar per transfer on a terminal, one
// line each, redrawn together. The library's Progress callbacks only store
// numbers; a goroutine of progress's own renders them, so a slow terminal
// never holds up an engine. A nil *progress draws nothing.
type progress struct {
	w     io.Writer
	width int // terminal columns; lines are cut to fit
	bars  []*bar
	stopc chan struct{}
	done  chan struct{}
	drawn int // lines drawn so far; owned by the render goroutine
}

// bar is one line. done and total are set by the library's goroutine.
type bar struct {
	done, total atomic.Uint64
	pb          *progressbar.ProgressBar
	line        *lineCapture
	known       bool // pb has its length; owned by the render goroutine
}

// newProgress returns a progress drawing on w (stderr, so stdout keeps
// only the summary), or nil when enabled is false or either stdout or w
// is not a terminal: a script that captures stdout gets no bar even when
// its stderr is a terminal.
func newProgress(stdout, w io.Writer, enabled bool) *progress {
	if !enabled || !isTerminal(stdout) || !isTerminal(w) {
		return nil
	}
	width := 80
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			width = cols
		}
	}
	return &progress{w: w, width: width}
}

// add adds a line labelled desc and returns the callback to give the
// library, or nil for a nil progress. Call add before start.
func (p *progress) add(desc string) func(done, total uint64) {
	if p == nil {
		return nil
	}
	b := &bar{line: &lineCapture{}}
	// The length is unknown (-1) until the library reports a total:
	// receivers learn it from the manifest.
	b.pb = progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(b.line),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(20),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetSpinnerChangeInterval(0), // no goroutine of its own
		progressbar.OptionUseANSICodes(true),
	)
	p.bars = append(p.bars, b)
	return func(done, total uint64) {
		b.total.Store(total)
		b.done.Store(done)
	}
}

// start starts drawing.
func (p *progress) start() {
	if p == nil {
		return
	}
	p.stopc = make(chan struct{})
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			p.render()
			select {
			case <-t.C:
			case <-p.stopc:
				p.render()
				return
			}
		}
	}()
}

// stop draws the final state and returns once drawing has stopped; the
// cursor is left below the bars.
func (p *progress) stop() {
	if p == nil || p.stopc == nil {
		return
	}
	close(p.stopc)
	<-p.done
	p.stopc = nil
}

func (p *progress) render() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn) // back to the first line
	}
	for _, br := range p.bars {
		done, total := br.done.Load(), br.total.Load()
		if total > 0 && !br.known {
			br.pb.ChangeMax64(int64(total))
			br.known = true
		}
		br.pb.Set64(int64(done))
		line := br.line.last()
		if r := []rune(line); len(r) > p.width-1 {
			line = string(r[:p.width-1])
		}
		b.WriteString("\r\x1b[2K")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	p.drawn = len(p.bars)
	io.WriteString(p.w, b.String())
}

// lineCapture is the writer a progressbar draws into: it keeps the last
// line drawn, without the carriage returns and ANSI sequences meant for a
// terminal of the bar's own.
type lineCapture struct {
	mu   sync.Mutex
	line string
}

var ansiSeq = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

func (c *lineCapture) Write(b []byte) (int, error) {
	s := ansiSeq.ReplaceAllString(string(b), "")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimRight(s, " \n")
	if s != "" {
		c.mu.Lock()
		c.line = s
		c.mu.Unlock()
	}
	return len(b), nil
}

func (c *lineCapture) last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.line
}

// writeResult writes the --json summary line for a command's outcome to
// w and returns the command's error, or the write error if that is all
// that went wrong. Commands that also write events use their
// eventWriter's summary instead, so lines are never interleaved.
func writeResult(w io.Writer, err error, files int, bytes uint64, d time.Duration, goodputBps float64, report any) error {
	return newEventWriter(w).summary(err, files, bytes, d, goodputBps, report)
}
