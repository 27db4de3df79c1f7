// Command mcp sends files to many hosts at once over IP multicast and makes
// every receiver end up with a byte-exact copy (DESIGN.md).
//
// The command is thin (STYLE.md section 11): each subcommand turns flags
// into an rmtp config, calls one library function with a context that
// SIGINT and SIGTERM cancel, and renders the result. Exit codes: 0 done,
// 1 failed, 2 usage (a bad flag, argument or flag value), 3 partial
// (--expect), 4 interrupted by a signal, 5 refused; "receive --daemon"
// exits 0 when a signal stops it. With --json, stdout carries JSON lines
// (events.go) and nothing else; logs go to stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcp-dev/mcp/rmtp"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitPartial = 3 // --expect N: fewer than N receivers confirmed
	exitSignal  = 4 // interrupted by SIGINT or SIGTERM
	exitRefused = 5 // the receiver refused the session (manifest, space)
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default behaviour so a
		// second Ctrl-C kills a process that is slow to clean up.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args with ctx as every command's context
// and returns the exit code. Errors are printed on stderr as
// "mcp: <error>".
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "mcp: %v\n", err)
	code := exitCode(err)
	if code == exitUsage && cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return code
}

// usageError marks an error in how mcp was called: an unknown command or
// flag, a missing argument, or a flag value that does not parse. main
// exits with status 2 for it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitCode maps an error returned by a command to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	switch {
	case errors.Is(err, rmtp.ErrUnconfirmed):
		return exitPartial
	case errors.Is(err, context.Canceled):
		// The commands' context is cancelled only by a signal (main);
		// time limits end them with context.DeadlineExceeded.
		return exitSignal
	case errors.Is(err, rmtp.ErrRefused):
		return exitRefused
	}
	return exitFailure
}
