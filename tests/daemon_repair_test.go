package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/tests/lab"
)

// TestDaemonWithRepairServer: a receive daemon with 5% loss, pointed at a
// repair server with --repair, receives two sessions one after the other;
// its NAKs go to the repair server's region, which repairs them, and both
// copies are exact. Namespaces: a sender, a repair server, the daemon.
func TestDaemonWithRepairServer(t *testing.T) {
	needMCP(t)
	l := lab.New(t, lab.Options{Hosts: 3})
	sender, server, recv := l.Hosts[0], l.Hosts[1], l.Hosts[2]
	if err := recv.SetLoss(50); err != nil {
		t.Fatal(err)
	}
	data := netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 213, byte(l.Subnet), 1}), 7700)
	region := netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 213, byte(l.Subnet), 2}), 7800)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	rs, err := lab.StartRepair(ctx, mcpBin, server, []string{"--interface", "eth0", "--group", data.String(), "--ttl", "1",
		"--serve", region.String(), "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--json"}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Stop(5 * time.Second) })
	joinCtx, joinCancel := context.WithTimeout(ctx, 10*time.Second)
	defer joinCancel()
	if err := server.WaitGroups(joinCtx, data.Addr()); err != nil {
		t.Fatalf("repair server: %v; stderr: %s", err, rs.Stderr)
	}

	dir := filepath.Join(t.TempDir(), "dst")
	var out, errOut syncBuffer
	d := recv.Cmd(ctx, mcpBin, "receive", "--daemon", "--interface", "eth0", "--group", data.String(), "--ttl", "1",
		"--dir", dir, "--repair", region.String(), "--json")
	d.Stdout, d.Stderr = &out, &errOut
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	daemonDone := make(chan struct{})
	go func() { d.Wait(); close(daemonDone) }()
	if err := recv.WaitGroups(joinCtx, data.Addr(), region.Addr()); err != nil {
		t.Fatalf("daemon: %v; stderr: %s", err, errOut.String())
	}

	var names []string
	for i, size := range []int64{8 << 20, 4<<20 + 3} {
		name := filepath.Join(t.TempDir(), fmt.Sprintf("s%d.bin", i))
		if err := lab.WriteRandomFile(name, size, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
		var p lab.Proc[rmtp.SendReport]
		wait, _, err := lab.Launch(ctx, sender, mcpBin, []string{"send", "--interface", "eth0", "--group", data.String(), "--ttl", "1",
			"--rate", rate(), "--linger", "1s", "--json", "--quiet", name}, &p, "")
		if err != nil {
			t.Fatal(err)
		}
		wait()
		if err := p.Failure(); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		st := p.JSON.Report.Stats
		t.Logf("session %d: sender data %d, parity %d, NAKs heard %d", i, st.DataPackets, st.ParityPackets, st.NAKsHeard)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(dir, filepath.Base(name))); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("session %d never completed at the daemon; stderr: %s", i, errOut.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	d.Process.Signal(syscall.SIGTERM)
	select {
	case <-daemonDone:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop after SIGTERM")
	}
	if code := d.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("daemon exit code %d; stderr: %s", code, errOut.String())
	}
	if err := rs.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var sum struct {
		OK     bool `json:"ok"`
		Report struct {
			Stats rmtp.DaemonStats `json:"stats"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatal(err)
	}
	dropped, _ := recv.Dropped()
	tot := &sum.Report.Stats.Totals
	srv := &rs.Summary.Stats
	t.Logf("daemon: %d sessions, nft dropped %d, NAKs sent %d, repairs kept %d; repair server: %s", sum.Report.Stats.Completed, dropped, tot.NAKsSent, tot.RepairPackets, rs.Summary.String())
	if !sum.OK || sum.Report.Stats.Completed != 2 || sum.Report.Stats.Failed != 0 {
		t.Errorf("daemon summary: ok %v, %d completed, %d failed; want ok, 2, 0", sum.OK, sum.Report.Stats.Completed, sum.Report.Stats.Failed)
	}
	if dropped == 0 || tot.NAKsSent == 0 || srv.RegionNAKs == 0 || srv.RepairPackets == 0 {
		t.Errorf("losses were not repaired by the repair server: %d dropped, %d NAKs sent, %d region NAKs heard, %d repair packets",
			dropped, tot.NAKsSent, srv.RegionNAKs, srv.RepairPackets)
	}
	want, err := lab.Snapshot(names...)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := want.Compare(dir, 10); len(diffs) > 0 {
		t.Errorf("the daemon's copies differ from the sources:\n  %s", strings.Join(diffs, "\n  "))
	}
}
