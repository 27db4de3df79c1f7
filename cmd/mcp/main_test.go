package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
)

// execute runs mcp with args as main would, within a bounded time, and
// returns what it printed and its exit code.
func execute(t *testing.T, timeout time.Duration, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"failure", errors.New("send on lo: boom"), exitFailure},
		{"usage", usageErrorf("bad rate %q", "x"), exitUsage},
		{"wrapped usage", fmt.Errorf("send: %w", usageErrorf("bad")), exitUsage},
		{"signal", fmt.Errorf("send interrupted after 1s: %w", context.Canceled), exitSignal},
		{"time limit", fmt.Errorf("receive: %w", context.DeadlineExceeded), exitFailure},
		{"refused", fmt.Errorf("%w: no space", rmtp.ErrRefused), exitRefused},
		{"unconfirmed", fmt.Errorf("send: %w: 1 of 2", rmtp.ErrUnconfirmed), exitPartial},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestUsageErrors checks that calling mcp wrongly exits with status 2 and
// says what is wrong. None of these reach the network.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown command", []string{"sned"}, `unknown command "sned"`},
		{"unknown flag", []string{"send", "--interface", "lo", "--bogus", "f"}, "unknown flag: --bogus"},
		{"unknown root flag", []string{"--bogus"}, "unknown flag: --bogus"},
		{"bad flag value", []string{"send", "--interface", "lo", "--ttl", "x", "f"}, "invalid argument"},
		{"send without path", []string{"send", "--interface", "lo"}, "nothing to send"},
		{"send without interface", []string{"send", "f"}, "no interface given: pass --interface (available: "},
		{"bad rate", []string{"send", "--interface", "lo", "--rate", "fast", "f"}, `bad rate "fast"`},
		{"rate in bytes", []string{"send", "--interface", "lo", "--rate", "100MB", "f"}, `bad rate "100MB"`},
		{"group not multicast", []string{"send", "--interface", "lo", "--group", "1.2.3.4:5", "f"}, "is not a multicast address"},
		{"group garbage", []string{"send", "--interface", "lo", "--group", "nope", "f"}, `bad --group "nope"`},
		{"bad ttl", []string{"send", "--interface", "lo", "--ttl", "300", "f"}, "--ttl 300 out of range"},
		{"bad k", []string{"send", "--interface", "lo", "--fec-k", "0", "f"}, "--fec-k 0 out of range"},
		{"bad proactive", []string{"send", "--interface", "lo", "--fec-proactive", "200", "f"}, "--fec-proactive 200 out of range"},
		{"proactive not a count", []string{"send", "--interface", "lo", "--fec-proactive", "some", "f"}, `bad --fec-proactive "some": want auto or a count`},
		{"proactive auto with best-effort", []string{"send", "--interface", "lo", "--mode", "best-effort", "f"}, "give a count such as --fec-proactive 16"},
		{"bad symbol size", []string{"send", "--interface", "lo", "--symbol-size", "100000", "f"}, "--symbol-size 100000 out of range"},
		{"zero linger", []string{"send", "--interface", "lo", "--linger", "0s", "f"}, "--linger 0s must be positive"},
		{"confirmed without expect", []string{"send", "--interface", "lo", "--mode", "confirmed", "f"}, "--mode confirmed needs --expect N"},
		{"expect with best-effort", []string{"send", "--interface", "lo", "--mode", "best-effort", "--expect", "2", "f"}, "use --mode confirmed"},
		{"rate auto with best-effort", []string{"send", "--interface", "lo", "--mode", "best-effort", "--rate", "auto", "f"}, "give a rate such as --rate 200M"},
		{"rate auto without a ceiling", []string{"send", "--interface", "lo", "--rate", "auto:0", "f"}, "auto needs a ceiling"},
		{"negative expect", []string{"send", "--interface", "lo", "--expect", "-1", "f"}, "--expect -1 must not be negative"},
		{"negative send timeout", []string{"send", "--interface", "lo", "--timeout", "-1s", "f"}, "--timeout -1s must not be negative"},
		{"bad mode", []string{"send", "--interface", "lo", "--mode", "fast", "f"}, `bad --mode "fast"`},
		{"bad log level", []string{"send", "--interface", "lo", "--log-level", "loud", "f"}, `bad --log-level "loud"`},
		{"bad log format", []string{"send", "--interface", "lo", "--log-format", "xml", "f"}, `bad --log-format "xml"`},
		{"receive without dir", []string{"receive", "--interface", "lo"}, "no destination directory: pass --dir"},
		{"receive with argument", []string{"receive", "--interface", "lo", "--dir", "d", "extra"}, `unexpected argument "extra"`},
		{"receive bad group", []string{"receive", "--interface", "lo", "--dir", "d", "--group", "1.2.3.4:5"}, "is not a multicast address"},
		{"receive bad max-manifest", []string{"receive", "--interface", "lo", "--dir", "d", "--max-manifest", "1T"}, "--max-manifest 1T out of range"},
		{"receive bad max-files", []string{"receive", "--interface", "lo", "--dir", "d", "--max-files", "0"}, "--max-files 0 must be at least 1"},
		{"receive bad max-bytes", []string{"receive", "--interface", "lo", "--dir", "d", "--max-bytes", "lots"}, `--max-bytes: bad size "lots"`},
		{"receive negative timeout", []string{"receive", "--interface", "lo", "--dir", "d", "--timeout", "-1s"}, "--timeout -1s must not be negative"},
		{"demo bad size", []string{"demo", "--size", "lots"}, `bad size "lots"`},
		{"demo bad receivers", []string{"demo", "--receivers", "0"}, "--receivers 0 out of range"},
		{"demo bad rate", []string{"demo", "--rate", "-1"}, `bad rate "-1"`},
		{"version with argument", []string{"version", "x"}, `unexpected argument "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := execute(t, 10*time.Second, tt.args...)
			if code != exitUsage {
				t.Errorf("mcp %s: exit code %d, want %d; stderr:\n%s", strings.Join(tt.args, " "), code, exitUsage, stderr)
			}
			if !strings.HasPrefix(stderr, "mcp: ") || !strings.Contains(stderr, tt.want) {
				t.Errorf("mcp %s: stderr\n%s\nwant \"mcp: ...%s...\"", strings.Join(tt.args, " "), stderr, tt.want)
			}
			if stdout != "" {
				t.Errorf("mcp %s: stdout %q, want nothing", strings.Join(tt.args, " "), stdout)
			}
		})
	}
}

// TestUsageErrorJSON checks that --json still writes one document when a
// flag value is bad.
func TestUsageErrorJSON(t *testing.T) {
	stdout, _, code := execute(t, 10*time.Second, "send", "--interface", "lo", "--rate", "fast", "--json", "f")
	if code != exitUsage {
		t.Errorf("exit code %d, want %d", code, exitUsage)
	}
	res := decodeResult(t, stdout)
	if res.OK || !strings.Contains(res.Error, `bad rate "fast"`) {
		t.Errorf("got ok=%v error=%q, want ok=false and the rate error", res.OK, res.Error)
	}
}

func TestHelpAndVersion(t *testing.T) {
	stdout, stderr, code := execute(t, 10*time.Second, "send", "--help")
	if code != exitOK {
		t.Fatalf("send --help: exit code %d, stderr %s", code, stderr)
	}
	// Defaults come from the rmtp constants.
	for _, want := range []string{`--rate string`, `(default "200M")`, `(default "239.255.77.1:7700")`, "PORT+1", "(default 128)", "(default 2s)", `(default "reliable")`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("send --help lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, code = execute(t, 10*time.Second, "version")
	if code != exitOK || !strings.HasPrefix(stdout, "mcp dev (commit ") {
		t.Errorf("version: exit code %d, output %q", code, stdout)
	}
}

// TestCompletion: every shell gets a completion script.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "bash completion", "zsh": "#compdef mcp", "fish": "complete -c mcp"} {
		stdout, stderr, code := execute(t, 10*time.Second, "completion", shell)
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("mcp completion %s: exit %d, stdout lacks %q (stderr %q)", shell, code, want, stderr)
		}
	}
}
