package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and slave ends, 100 columns
// wide.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open pty slave: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 100}); err != nil {
		t.Fatalf("pty size: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// runOnTTY runs mcp with stderr, and stdout unless pipeStdout, on a
// pseudo-terminal and returns what the terminal showed.
func runOnTTY(t *testing.T, timeout time.Duration, pipeStdout bool, args ...string) (string, int) {
	t.Helper()
	m, s := openPTY(t)
	var shown bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, err := io.Copy(&shown, m)
		if err != nil && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
			t.Errorf("read pty: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var stdout io.Writer = s
	if pipeStdout {
		stdout = io.Discard
	}
	code := run(ctx, args, stdout, s)
	s.Close() // the master's reader then ends with EIO
	<-copied
	return shown.String(), code
}

// etaRE matches the bar's elapsed and estimated remaining time, "[1s:3s]".
var etaRE = regexp.MustCompile(`\[\d+s:\d+s\]`)

// TestProgressOnTerminal: send and receive draw a progress bar with rate
// and ETA on stderr when stdout and stderr are terminals, and none with
// --quiet or when stdout is piped.
func TestProgressOnTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	src, _ := writeTestFile(t, 4<<20)
	group := loopbackGroup(t)
	recvShown := make(chan string, 1)
	go func() {
		out, code := runOnTTY(t, 30*time.Second, false, "receive", "--interface", "lo", "--group", group, "--ttl", "0",
			"--dir", t.TempDir(), "--timeout", "30s")
		if code != exitOK {
			t.Errorf("receive: exit code %d", code)
		}
		recvShown <- out
	}()
	time.Sleep(200 * time.Millisecond)
	// 4 MiB at 40 Mbit/s: about a second, several redraws.
	sent, code := runOnTTY(t, 30*time.Second, false, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--rate", "40M", "--linger", "200ms", src)
	if code != exitOK {
		t.Fatalf("send: exit code %d", code)
	}
	got := <-recvShown
	for name, out := range map[string]string{"send": sent, "receive": got} {
		// The bar: a percentage, bytes done of the total, a rate and the
		// elapsed/remaining time, redrawn in place with ANSI codes.
		for _, want := range []string{"100%", "4.0 MiB", "MiB/s", "\x1b["} {
			if !strings.Contains(out, want) {
				t.Errorf("%s on a terminal: no %q in what it showed:\n%q", name, want, out)
			}
		}
		if !etaRE.MatchString(out) {
			t.Errorf("%s on a terminal: no [elapsed:remaining] time:\n%q", name, out)
		}
		if strings.Count(out, "%") < 3 {
			t.Errorf("%s on a terminal: the bar was drawn fewer than 3 times:\n%q", name, out)
		}
	}

	for _, c := range []struct {
		name string
		pipe bool
		args []string
	}{
		{"--quiet", false, []string{"--quiet"}},
		{"stdout piped", true, nil},
	} {
		args := append([]string{"send", "--interface", "lo", "--group", group, "--ttl", "0", "--rate", "40M", "--linger", "100ms"}, c.args...)
		out, code := runOnTTY(t, 30*time.Second, c.pipe, append(args, src)...)
		if code != exitOK {
			t.Fatalf("send, %s: exit code %d", c.name, code)
		}
		if strings.Contains(out, "%") || strings.Contains(out, "\x1b[") {
			t.Errorf("send, %s, stderr on a terminal: a bar was drawn:\n%q", c.name, out)
		}
	}
}
