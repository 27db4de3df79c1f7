package lab

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Tmpfs is a tmpfs mounted in a mount namespace of its own, held by a
// sleeping process: the machine's mount table never sees it, and it goes
// away with its holder, which dies with the test process (SIGKILL on
// parent death) even if the test panics. Processes run inside it with
// Wrap; the test reaches its files through Path (/proc/PID/root).
type Tmpfs struct {
	// Dir is the mount point: an existing directory of the machine's
	// file system, on which the namespace mounts the tmpfs.
	Dir string
	// PID is the holder's process ID.
	PID int

	cmd *exec.Cmd
}

// MountTmpfs mounts a tmpfs of size bytes on dir (an existing empty
// directory) in a new private mount namespace and returns once it is
// mounted. The caller must Close it.
func MountTmpfs(ctx context.Context, dir string, size int64) (*Tmpfs, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	script := fmt.Sprintf("mount -t tmpfs -o size=%d,mode=0755 mcplab-tmpfs %q && echo mounted && exec sleep 600", size, dir)
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr tailBuffer
	stderr.max = 1024
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("unshare: %w", err)
	}
	t := &Tmpfs{Dir: dir, PID: cmd.Process.Pid, cmd: cmd}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "mounted" {
		t.Close()
		return nil, fmt.Errorf("mount tmpfs on %s in a new mount namespace: %q %v: %s", dir, line, err, stderr.String())
	}
	return t, nil
}

// Path is where the test reaches p (a path inside the namespace) from
// outside it.
func (t *Tmpfs) Path(p string) string {
	return filepath.Join("/proc", strconv.Itoa(t.PID), "root", p)
}

// Wrap returns the command that runs bin with args inside the mount
// namespace (nsenter), for Host.Cmd or Launch: "ip netns exec NS nsenter
// -t PID -m -- bin args..." keeps the host's network namespace and sees
// the tmpfs.
func (t *Tmpfs) Wrap(bin string, args []string) (string, []string) {
	return "nsenter", append([]string{"-t", strconv.Itoa(t.PID), "-m", "--", bin}, args...)
}

// Remount changes the tmpfs's size.
func (t *Tmpfs) Remount(size int64) error {
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(t.PID), "-m", "--",
		"mount", "-o", fmt.Sprintf("remount,size=%d", size), t.Dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("remount %s: %v: %s", t.Dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Free returns the bytes free on the tmpfs.
func (t *Tmpfs) Free() (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(t.Path(t.Dir), &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Close kills the holder; the namespace and its tmpfs go with it (and
// with any process still running inside it).
func (t *Tmpfs) Close() error {
	if t.cmd.Process != nil {
		t.cmd.Process.Kill()
	}
	t.cmd.Wait()
	return nil
}
