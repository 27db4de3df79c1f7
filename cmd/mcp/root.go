package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mcp",
		Short: "Reliable multicast file transfer",
		Long: `mcp sends files to many hosts at once over IP multicast. Receivers
repair losses with NAKs and Reed-Solomon parity, check every file against
its SHA-256 and never leave a partial file in place.

Try it on this host only, over loopback:

  mcp demo

Across hosts, start receivers first, then the sender:

  mcp receive --interface eth0 --dir /srv/incoming
  mcp send --interface eth0 image.iso`,
		Version:                    versionString(),
		SilenceUsage:               true,
		SuggestionsMinimumDistance: 2,
		SilenceErrors:              true,
		// The root only runs to reject unknown commands with a usage
		// error; cobra's own "unknown command" error carries no type.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := "unknown command \"" + args[0] + "\" for \"mcp\""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usageErrorf("%s", msg)
		},
	}
	// --cpuprofile is for measuring mcp itself (tests/, issue work); it is
	// hidden from help.
	// --trace writes a runtime/trace execution trace (where goroutines
	// wait), likewise hidden.
	var cpuprofile, tracefile string
	var profFile, traceFile *os.File
	root.PersistentFlags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile to this file")
	root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentFlags().StringVar(&tracefile, "trace", "", "write an execution trace to this file")
	root.PersistentFlags().MarkHidden("trace")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		oneProc(cmd.Name())
		if tracefile != "" {
			f, err := os.Create(tracefile)
			if err != nil {
				return err
			}
			traceFile = f
			if err := trace.Start(f); err != nil {
				return err
			}
		}
		if cpuprofile == "" {
			return nil
		}
		// "%p" in the name becomes the process ID, so that several
		// processes started with one command line keep their own profile.
		f, err := os.Create(strings.ReplaceAll(cpuprofile, "%p", strconv.Itoa(os.Getpid())))
		if err != nil {
			return err
		}
		profFile = f
		return pprof.StartCPUProfile(f)
	}
	root.PersistentPostRun = func(cmd *cobra.Command, args []string) {
		if profFile != nil {
			pprof.StopCPUProfile()
			profFile.Close()
		}
		if traceFile != nil {
			trace.Stop()
			traceFile.Close()
		}
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err}
	})
	root.AddCommand(newSendCmd(), newReceiveCmd(), newDemoCmd(), newVersionCmd())
	root.AddCommand(newRepairCmd())
	root.AddCommand(newKeygenCmd())
	return root
}

// oneProc runs send, receive and repair with one P (GOMAXPROCS=1) unless
// the GOMAXPROCS environment variable says otherwise. Each runs one
// engine goroutine plus socket readers that hand it batches; with more
// Ps every hand-off could wake another thread, and the scheduler's
// spinning and futex calls were a fifth of a receiver's CPU with 9
// processes on 2 cores (tests/bench.sh: 4.9-5.2 against 5.4-6.3 µs per
// packet at 0% loss, 6.4 against 6.9-7.4 at 5%). Blocking system calls
// (file writes, fsync) still get threads of their own. demo runs a
// sender and three receivers in one process and keeps every P.
func oneProc(cmd string) {
	switch cmd {
	case "send", "receive", "repair":
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(1)
		}
	}
}
