package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcp-dev/mcp/rmtp"
)

func newKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen [--out FILE]",
		Short: "Make a random pre-shared key for --key",
		Long: `Keygen writes a new random 32-byte key (from the operating system's
random source) in mcp's key-file format: a comment line with the key's
public ID, then "mcp-key-v1" and the key in base64. Copy the same file to
every sender, receiver and repair server of the group and pass it with
--key; packets are then sealed (AES-256-GCM) and packets without the key
are dropped.

The key must stay secret: mcp refuses a key file that group or others can
read. When stdout is a file (mcp keygen > FILE), keygen makes it mode 0600;
--out FILE creates the file with mode 0600 and refuses to overwrite one.`,
		Example: `  mcp keygen > /etc/mcp/group.key
  mcp keygen --out /etc/mcp/group.key`,
		Args: noArgs("keygen takes no arguments; redirect stdout or pass --out FILE"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			text, _ := rmtp.GenerateKey().MarshalText()
			if out != "" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return fmt.Errorf("create key file: %w (keygen never overwrites a key; remove it first)", err)
				}
				if _, err := f.Write(text); err != nil {
					f.Close()
					return fmt.Errorf("write key file %s: %w", out, err)
				}
				return f.Close()
			}
			w := cmd.OutOrStdout()
			restrict(w)
			_, err := w.Write(text)
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "create this file (mode 0600) instead of writing to stdout")
	return cmd
}

// restrict makes w mode 0600 when it is a regular file, so that
// "mcp keygen > FILE" leaves a file that --key accepts.
func restrict(w io.Writer) {
	f, ok := w.(*os.File)
	if !ok {
		return
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		f.Chmod(0o600)
	}
}
