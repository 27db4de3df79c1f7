package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the release, set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/mcp
var version = "dev"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  noArgs("version takes no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return err
		},
	}
}

// versionString is "mcp VERSION (commit REV[, modified], TIME) GOVERSION OS/ARCH".
// Without -ldflags, a module version from "go install ...@v1.2.3" is used.
func versionString() string {
	v, commit, goVersion := version, "unknown", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		var rev, when string
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" {
			commit = rev
			if len(commit) > 12 {
				commit = commit[:12]
			}
			if modified {
				commit += ", modified"
			}
			if when != "" {
				commit += ", " + when
			}
		}
	}
	return fmt.Sprintf("mcp %s (commit %s) %s %s/%s", v, commit, goVersion, runtime.GOOS, runtime.GOARCH)
}
