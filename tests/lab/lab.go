// Package lab builds throw-away multicast networks out of Linux network
// namespaces for mcp's multi-process tests and benchmarks.
//
// A Lab is one bridge namespace holding a bridge (multicast snooping off,
// so every group is flooded to every port) and one namespace per host.
// Each host has one veth end named eth0 (MTU 1500 by default, address
// 10.213.N.(i+1)/24, a 224.0.0.0/4 route) whose peer is a port of the
// bridge. Both veth ends are created directly inside namespaces the lab
// owns (ip -n BRIDGE link add ... peer ... netns HOST): nothing is ever
// added to the namespace the tests run in, so traffic cannot leak onto the
// machine's real interfaces.
//
// Names are unique to the run: "mcpl-<pid>-<n>-br" and "mcpl-<pid>-<n>-h<i>".
// New sweeps namespaces left by dead processes (the pid in the name is not
// running) before building, Close kills every process in the lab's
// namespaces and deletes them, and a watchdog does the same shortly
// before a test's deadline, because a test that times out panics without
// running its cleanups.
//
// Each host's veth cuts UDP GSO buffers into datagrams as they leave it
// (segmentUDP), so loss and per-packet costs are those of a real wire.
// The bridge forwards as a switch does: where the br_netfilter module is
// loaded (it makes every bridged frame pass the bridge namespace's IP
// hooks, once per port a multicast frame is flooded to), the lab turns
// that off in its bridge namespace (Options.BridgeNetfilter keeps it).
//
// With Options.GRO each host's eth0 also coalesces what it receives, as a
// NIC's driver does (generic receive offload; a veth does it only when
// asked, in its NAPI mode), and the loss rules move from the hosts' input
// to the bridge, where they drop single frames before they are coalesced.
//
// Everything needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2,
// ethtool and, for SetLoss, nft.
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Prefix starts the name of every namespace a lab creates.
const Prefix = "mcpl-"

// ErrNoPrivilege is returned by Start when namespaces cannot be created:
// not root, or the kernel or container refuses.
var ErrNoPrivilege = errors.New("network namespaces unavailable")

// TB is the part of testing.TB that New uses.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Options configures a lab. Zero values mean the default.
type Options struct {
	// Hosts is the number of host namespaces. If zero, 2.
	Hosts int
	// MTU of every veth, in bytes. If zero, 1500.
	MTU int
	// Logf, if set, gets one line per lab created or closed.
	Logf func(format string, args ...any)
	// GRO makes every host's eth0 receive like a NIC: GRO on (veth NAPI
	// mode), so consecutive datagrams of one flow reach a socket that
	// asked for UDP_GRO (mcp --offload) as one buffer, and TCP segments
	// are merged as on any Linux host. The bridge ports stop passing TSO
	// buffers through (tso off: a veth hands frames to its peer's NAPI
	// only then), and SetLoss and SetTCPLoss drop on the bridge's forward
	// path to the host, frame by frame, instead of at the host's input,
	// where a coalesced buffer would be dropped whole. The loss then
	// comes before ShapeDown's token bucket on the same port (without GRO
	// after it): frames lost do not take shaped bandwidth. Start only.
	GRO bool
	// BridgeNetfilter keeps the kernel's default for bridged frames
	// (br_netfilter, where loaded, passes every frame the bridge forwards
	// through the bridge namespace's IPv4, IPv6 and ARP hooks, once per
	// port a multicast frame is flooded to). Off, the default, sets
	// net.bridge.bridge-nf-call-{iptables,ip6tables,arptables} to 0 in the
	// bridge namespace, so the bridge forwards as a switch does, without
	// the host firewall's per-frame work. Start only.
	BridgeNetfilter bool
}

// Lab is a bridge namespace and its hosts. Its methods are safe for
// concurrent use.
type Lab struct {
	// Name is the run-unique stem: "mcpl-<pid>-<n>".
	Name string
	// Subnet is N in the hosts' addresses 10.213.N.0/24.
	Subnet int
	// BridgeNS is the namespace of the bridge "br0".
	BridgeNS string
	// Hosts are the host namespaces, in order.
	Hosts []*Host

	logf func(string, ...any)
	gro  bool // Options.GRO

	mu     sync.Mutex
	nss    []string // every namespace created, bridge first
	cmds   []*exec.Cmd
	closed bool
}

// Host is one namespace with one interface, eth0, on the lab's bridge.
type Host struct {
	Lab   *Lab
	Index int
	// NS is the namespace name.
	NS string
	// Iface is the interface name inside NS: always "eth0".
	Iface string
	// Addr is eth0's IPv4 address.
	Addr netip.Addr
	// port is the bridge-side end of the host's (first) veth, in the
	// lab's bridge namespace.
	port string
}

var counter atomic.Int32

// New builds a lab for a test and registers its Close with tb.Cleanup.
// Without privileges it skips the test with a one-line reason, or fails
// it when the environment variable CI is "true". If tb has a Deadline
// (like *testing.T), the lab is also torn down 5 seconds before it.
func New(tb TB, opts Options) *Lab {
	tb.Helper()
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	l, err := Start(opts)
	if err == nil {
		tie(tb, l.Name, l.Close)
	} else {
		failStart(tb, err)
	}
	return l
}

// failStart ends a test whose lab could not be built: a skip with the
// reason without privileges (a failure when CI is "true"), else a failure.
func failStart(tb TB, err error) {
	tb.Helper()
	if errors.Is(err, ErrNoPrivilege) && os.Getenv("CI") != "true" {
		tb.Skipf("lab: %v", err)
	}
	tb.Fatalf("lab: %v", err)
}

// tie closes a lab in tb.Cleanup and, if tb has a Deadline (like
// *testing.T), 5 seconds before it.
func tie(tb TB, name string, close func() error) {
	tb.Cleanup(func() {
		if err := close(); err != nil {
			tb.Logf("lab: %v", err)
		}
	})
	if d, ok := tb.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			timer := time.AfterFunc(time.Until(dl)-5*time.Second, func() {
				fmt.Fprintf(os.Stderr, "lab %s: test deadline near, tearing down\n", name)
				close()
			})
			tb.Cleanup(func() { timer.Stop() })
		}
	}
}

// begin checks the MTU (0: 1500) and the privileges a lab needs, sweeps
// labs of dead processes, and makes a new lab's name, subnet and bridge
// namespace; Start and StartSites build the rest.
func begin(mtu *int, logf func(string, ...any)) (*Lab, error) {
	if *mtu == 0 {
		*mtu = 1500
	}
	if *mtu < 576 || *mtu > 65535 {
		return nil, fmt.Errorf("MTU %d out of range [576, 65535]", *mtu)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root (run as root to use network namespaces)", ErrNoPrivilege)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("%w: iproute2 (ip) not found", ErrNoPrivilege)
	}
	if _, err := exec.LookPath("ethtool"); err != nil {
		return nil, fmt.Errorf("%w: ethtool not found (apt-get install ethtool; the lab turns off UDP segmentation offload on its veths)", ErrNoPrivilege)
	}
	Sweep(false)

	pid := os.Getpid()
	n := int(counter.Add(1))
	l := &Lab{
		Name:   fmt.Sprintf("%s%d-%d", Prefix, pid, n),
		Subnet: 1 + (pid*7+n)%250,
		logf:   logf,
	}
	if l.logf == nil {
		l.logf = func(string, ...any) {}
	}
	l.BridgeNS = l.Name + "-br"
	if err := l.addNS(l.BridgeNS); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoPrivilege, err)
	}
	return l, nil
}

// Start builds a lab. The caller must Close it. Errors wrapping
// ErrNoPrivilege mean the machine cannot run labs at all.
func Start(opts Options) (*Lab, error) {
	if opts.Hosts == 0 {
		opts.Hosts = 2
	}
	if opts.Hosts < 1 || opts.Hosts > 250 {
		return nil, fmt.Errorf("Hosts %d out of range [1, 250]", opts.Hosts)
	}
	l, err := begin(&opts.MTU, opts.Logf)
	if err != nil {
		return nil, err
	}
	l.gro = opts.GRO
	err = l.build(opts)
	if err != nil {
		l.Close()
		return nil, err
	}
	l.logf("lab %s: bridge namespace %s, %d hosts on 10.213.%d.0/24", l.Name, l.BridgeNS, len(l.Hosts), l.Subnet)
	return l, nil
}

func (l *Lab) build(opts Options) error {
	br := l.BridgeNS
	mtu := strconv.Itoa(opts.MTU)
	steps := [][]string{
		{"-n", br, "link", "set", "lo", "up"},
		{"-n", br, "link", "add", "br0", "mtu", mtu, "type", "bridge", "mcast_snooping", "0", "stp_state", "0"},
		{"-n", br, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	if !opts.BridgeNetfilter {
		if err := switchLike(br); err != nil {
			return err
		}
	}
	for i := range opts.Hosts {
		h := &Host{
			Lab:   l,
			Index: i,
			NS:    fmt.Sprintf("%s-h%d", l.Name, i),
			Iface: "eth0",
			Addr:  netip.AddrFrom4([4]byte{10, 213, byte(l.Subnet), byte(i + 1)}),
		}
		if err := l.addNS(h.NS); err != nil {
			return err
		}
		port := fmt.Sprintf("p%d", i) // inside the bridge namespace: short and unique there
		h.port = port
		steps := [][]string{
			// Both ends are born inside lab namespaces: never in ours.
			{"-n", br, "link", "add", port, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", h.NS},
			{"-n", br, "link", "set", port, "master", "br0"},
			{"-n", br, "link", "set", port, "up"},
			{"-n", h.NS, "link", "set", "lo", "up"},
			{"-n", h.NS, "addr", "add", h.Addr.String() + "/24", "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
			{"-n", h.NS, "route", "add", "224.0.0.0/4", "dev", "eth0"},
		}
		for _, s := range steps {
			if err := ipCmd(s...); err != nil {
				return err
			}
		}
		if err := segmentUDP(h.NS, "eth0"); err != nil {
			return err
		}
		if opts.GRO {
			if err := ethtoolSet(h.NS, "eth0", "gro", "on"); err != nil {
				return err
			}
			if err := ethtoolSet(br, port, "tso", "off"); err != nil {
				return err
			}
		}
		l.Hosts = append(l.Hosts, h)
	}
	return nil
}

// switchLike stops br_netfilter from passing the frames the bridge in
// namespace ns forwards through that namespace's IP and ARP hooks
// (Options.BridgeNetfilter). Without the br_netfilter module the sysctls
// do not exist and there is nothing to turn off.
func switchLike(ns string) error {
	for _, f := range []string{"iptables", "ip6tables", "arptables"} {
		path := "/proc/sys/net/bridge/bridge-nf-call-" + f
		out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", "[ ! -e "+path+" ] || echo 0 > "+path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("turning off %s in %s: %v: %s", path, ns, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// segmentUDP turns off UDP segmentation offload on a host's veth, so that
// a GSO buffer a sender hands the kernel (mcp --offload) is cut into
// datagrams as it leaves the host, as a NIC puts single frames on a
// wire. Otherwise the bridge, the other hosts' netfilter and sockets see
// the whole buffer as one packet: SetLoss would drop runs of datagrams
// instead of single ones, and receivers would be spared the per-datagram
// cost they pay on a real network.
func segmentUDP(ns, dev string) error { return ethtoolOff(ns, dev, "tx-udp-segmentation") }

// ethtoolOff turns off an offload feature of device dev in namespace ns.
func ethtoolOff(ns, dev, feature string) error { return ethtoolSet(ns, dev, feature, "off") }

// ethtoolSet turns an offload feature of device dev in namespace ns on or
// off.
func ethtoolSet(ns, dev, feature, onOff string) error {
	out, err := exec.Command("ip", "netns", "exec", ns, "ethtool", "-K", dev, feature, onOff).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ethtool -K %s %s %s in %s: %v: %s", dev, feature, onOff, ns, err, bytes.TrimSpace(out))
	}
	return nil
}

func (l *Lab) addNS(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab closed")
	}
	if err := ipCmd("netns", "add", name); err != nil {
		return err
	}
	l.nss = append(l.nss, name)
	return nil
}

// Cmd returns a command that runs name with args inside the host's
// namespace (through "ip netns exec"). The process gets its own process
// group, is killed with SIGKILL when ctx ends or the lab closes, and is
// sent SIGKILL if the calling process dies. Stdout and stderr are the
// caller's to set.
func (h *Host) Cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = 5 * time.Second
	h.Lab.mu.Lock()
	h.Lab.cmds = append(h.Lab.cmds, cmd)
	h.Lab.mu.Unlock()
	return cmd
}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return cmd.Process.Kill()
	}
	return nil
}

// lossTable is the nftables table SetLoss owns in a host namespace.
const lossTable = "mcplab_loss"

// SetLoss makes the host drop each UDP datagram it receives with
// probability permille/1000, independently (nftables numgen random in the
// input hook, so only this host's copies are lost; with Options.GRO on
// the bridge's forward path to the host). 0 removes the rule.
func (h *Host) SetLoss(permille int) error { return h.setLoss(lossTable, "udp", permille) }

// setLoss installs (or, at 0, removes) table's random drop of protocol
// proto (udp, tcp) on the host's input, or with Options.GRO on frames the
// bridge forwards to the host's port.
func (h *Host) setLoss(table, proto string, permille int) error {
	if permille < 0 || permille > 1000 {
		return fmt.Errorf("loss %d‰ out of range [0, 1000]", permille)
	}
	r := h.lossRule(table)
	// "add" then "delete" empties any previous table in the same
	// transaction (nft 1.0.6 has no "destroy").
	script := fmt.Sprintf("add table %[1]s %[2]s\ndelete table %[1]s %[2]s\n", r.family, r.table)
	if permille > 0 {
		script += fmt.Sprintf(`table %s %s {
	chain %s {
		type filter hook %s priority 0; policy accept;
		%smeta l4proto %s numgen random mod 1000 < %d counter drop
	}
}
`, r.family, r.table, r.hook, r.hook, r.match, proto, permille)
	}
	return nftScript(r.ns, script)
}

// lossRule says where the host's copy of a loss table lives: in its own
// namespace on input, or with Options.GRO in the bridge namespace on the
// forward path to its port (match selects the port there).
type lossRule struct{ ns, family, table, hook, match string }

func (h *Host) lossRule(table string) lossRule {
	if h.Lab.gro {
		return lossRule{h.Lab.BridgeNS, "bridge", table + "_" + h.port, "forward", fmt.Sprintf("oifname %q ", h.port)}
	}
	return lossRule{h.NS, "inet", table, "input", ""}
}

// nftScript runs an nft script in namespace ns.
func nftScript(ns, script string) error {
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// Dropped returns how many datagrams SetLoss's rule dropped so far (0 if
// no rule is installed).
func (h *Host) Dropped() (uint64, error) {
	r := h.lossRule(lossTable)
	out, err := exec.Command("ip", "netns", "exec", r.ns, "nft", "list", "table", r.family, r.table).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("No such file")) {
			return 0, nil
		}
		return 0, fmt.Errorf("nft in %s: %v: %s", r.ns, err, bytes.TrimSpace(out))
	}
	f := strings.Fields(string(out))
	for i := 0; i+2 < len(f); i++ {
		if f[i] == "counter" && f[i+1] == "packets" {
			return strconv.ParseUint(f[i+2], 10, 64)
		}
	}
	return 0, nil
}

// HasGroup reports whether some socket in the host joined group on eth0
// (as "ip maddr" shows it): a way to wait for a receiver to be ready
// without sleeping a fixed time.
func (h *Host) HasGroup(group netip.Addr) (bool, error) {
	out, err := exec.Command("ip", "-n", h.NS, "maddr", "show", "dev", h.Iface).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("ip maddr in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
	}
	want := group.String()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "inet" || f[0] == "inet6") && f[1] == want {
			return true, nil
		}
	}
	return false, nil
}

// WaitGroups polls until the host has joined every group, or ctx ends.
func (h *Host) WaitGroups(ctx context.Context, groups ...netip.Addr) error {
	for {
		all := true
		for _, g := range groups {
			ok, err := h.HasGroup(g)
			if err != nil {
				return err
			}
			all = all && ok
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %s did not join %v: %w", h.NS, groups, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close kills every process in the lab's namespaces (those started with
// Cmd and any other) and deletes the namespaces. It is idempotent.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	cmds, nss := l.cmds, l.nss
	l.mu.Unlock()

	for _, c := range cmds {
		if c.Process != nil {
			killGroup(c)
		}
	}
	var errs []error
	// Hosts first, the bridge last: deleting a host takes its veth pair
	// with it.
	for i := len(nss) - 1; i >= 0; i-- {
		if err := deleteNS(nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.logf("lab %s: closed (%d namespaces deleted)", l.Name, len(nss)-len(errs))
	return errors.Join(errs...)
}

// deleteNS kills what runs in ns, waits for it to go, and deletes ns.
func deleteNS(ns string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := nsPIDs(ns)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			break // delete anyway: the namespace goes when they do
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := ipCmd("netns", "delete", ns); err != nil {
		return err
	}
	return nil
}

func nsPIDs(ns string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil && p > 1 && p != os.Getpid() {
			pids = append(pids, p)
		}
	}
	return pids
}

// Namespaces lists existing namespaces whose name starts with Prefix.
func Namespaces() []string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], Prefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// Sweep deletes namespaces left over by labs whose process is gone (the
// pid in the name is not running), killing what runs in them. With all it
// also deletes this process's own labs' namespaces, which must be closed
// already. It returns the names deleted.
func Sweep(all bool) []string {
	var swept []string
	for _, ns := range Namespaces() {
		rest := strings.TrimPrefix(ns, Prefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil {
			continue // not ours
		}
		alive := syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM)
		if alive && !(all && pid == os.Getpid()) {
			continue
		}
		if deleteNS(ns) == nil {
			swept = append(swept, ns)
		}
	}
	return swept
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
