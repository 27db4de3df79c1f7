package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the program run inside the namespaces: with
// LAB_HELPER set, TestMain runs that helper instead of the tests.
func TestMain(m *testing.M) {
	if h := os.Getenv("LAB_HELPER"); h != "" {
		if err := helper(h, os.Args[len(os.Args)-2:]); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper runs "send GROUP COUNT" or "recv GROUP COUNT" on eth0.
func helper(mode string, args []string) error {
	group := netip.MustParseAddrPort(args[0])
	count, _ := strconv.Atoi(args[1])
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	switch mode {
	case "send":
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(group))
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range count {
			if _, err := c.Write([]byte(strconv.Itoa(i))); err != nil {
				return err
			}
			if i%50 == 49 {
				time.Sleep(time.Millisecond) // stay far below any queue limit
			}
		}
	case "recv":
		c, err := net.ListenMulticastUDP("udp4", ifi, net.UDPAddrFromAddrPort(group))
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Println("joined")
		got := 0
		buf := make([]byte, 2048)
		for got < count {
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				break
			}
			got++
		}
		fmt.Println(got)
	}
	return nil
}

func TestLab(t *testing.T) {
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) { testLab(t, gro) })
	}
}

// testLab builds a lab of 3 hosts, checks its namespaces and offloads,
// multicasts from host 0 with half of host 2's copies dropped, and checks
// that Close removes everything.
func testLab(t *testing.T, gro bool) {
	l := New(t, Options{Hosts: 3, GRO: gro})
	if got := len(l.Hosts); got != 3 {
		t.Fatalf("got %d hosts, want 3", got)
	}
	for _, ns := range append([]string{l.BridgeNS}, l.Hosts[0].NS, l.Hosts[2].NS) {
		if !slices.Contains(Namespaces(), ns) {
			t.Fatalf("namespace %s missing from %v", ns, Namespaces())
		}
	}
	out, err := exec.Command("ip", "netns", "exec", l.Hosts[1].NS, "ethtool", "-k", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("ethtool -k: %v: %s", err, out)
	}
	for _, want := range []string{"tx-udp-segmentation: off", fmt.Sprintf("generic-receive-offload: %s", map[bool]string{false: "off", true: "on"}[gro])} {
		if !strings.Contains(string(out), want) {
			t.Errorf("host 1 eth0: want %q in ethtool -k:\n%s", want, out)
		}
	}
	if err := l.Hosts[2].SetLoss(500); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	group := netip.MustParseAddrPort("239.213.0.1:9999")
	const count = 2000
	outs := make([]*strings.Builder, 2)
	var waits []func() error
	for i, h := range l.Hosts[1:] {
		cmd := h.Cmd(ctx, os.Args[0], "recv", group.String(), strconv.Itoa(count))
		cmd.Env = append(os.Environ(), "LAB_HELPER=recv")
		outs[i] = new(strings.Builder)
		cmd.Stdout, cmd.Stderr = outs[i], os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waits = append(waits, cmd.Wait)
		if err := h.WaitGroups(ctx, group.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	send := l.Hosts[0].Cmd(ctx, os.Args[0], "send", group.String(), strconv.Itoa(count))
	send.Env = append(os.Environ(), "LAB_HELPER=send")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	for i, w := range waits {
		if err := w(); err != nil {
			t.Fatalf("receiver %d: %v", i+1, err)
		}
	}
	got := make([]int, 2)
	for i, o := range outs {
		f := strings.Fields(o.String())
		got[i], _ = strconv.Atoi(f[len(f)-1])
	}
	dropped, err := l.Hosts[2].Dropped()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("received %v of %d; host 2 dropped %d", got, count, dropped)
	if got[0] != count {
		t.Errorf("host 1 got %d datagrams, want %d (no loss)", got[0], count)
	}
	if got[1] < count*4/10 || got[1] > count*6/10 || uint64(got[1])+dropped != count {
		t.Errorf("host 2 got %d datagrams and dropped %d, want about half of %d, summing to it", got[1], dropped, count)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ns := range Namespaces() {
		if strings.HasPrefix(ns, l.Name+"-") {
			t.Errorf("namespace %s left after Close", ns)
		}
	}
}
