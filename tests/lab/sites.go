package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Link is one interface of a host in a multi-bridge lab.
type Link struct {
	// Name is the interface name inside the host's namespace: eth0,
	// eth1, ... in the order of SitesOptions.Hosts.
	Name string
	// Bridge is the index of the bridge it is a port of.
	Bridge int
	// Addr is its IPv4 address, 10.(213+Bridge).Subnet.(host index+1)/24.
	Addr netip.Addr
}

// SitesOptions configures a lab of several bridges: one per site, not
// connected to each other (no routing and no forwarding between them, so
// no multicast crosses from one to another).
type SitesOptions struct {
	// Bridges is the number of bridges, at least 1 and at most 8.
	Bridges int
	// Hosts lists, per host, the bridges it has an interface on, in
	// interface order: {{0}, {0, 1}, {1}} is a host on bridge 0, one on
	// both (eth0 on 0, eth1 on 1) and one on bridge 1.
	Hosts [][]int
	// MTU of every veth, in bytes. If zero, 1500.
	MTU int
	// Logf, if set, gets one line per lab created or closed.
	Logf func(format string, args ...any)
}

// Sites is a lab of several bridges, all in the lab's bridge namespace
// ("br0", "br1", ...). Host.Iface and Host.Addr are a host's first link.
type Sites struct {
	*Lab
	// Links[i] are the interfaces of Hosts[i].
	Links [][]Link
}

// Subnet returns bridge b's prefix, 10.(213+b).Subnet.0/24.
func (s *Sites) Subnet(b int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(213 + b), byte(s.Lab.Subnet), 0}), 24)
}

// Link returns host i's interface on bridge b, or false.
func (s *Sites) Link(i, b int) (Link, bool) {
	for _, l := range s.Links[i] {
		if l.Bridge == b {
			return l, true
		}
	}
	return Link{}, false
}

// NewSites builds a multi-bridge lab for a test, like New: it skips (or,
// with CI=true, fails) without privileges, and closes in tb.Cleanup and
// shortly before the test's deadline.
func NewSites(tb TB, opts SitesOptions) *Sites {
	tb.Helper()
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	s, err := StartSites(opts)
	if err == nil {
		tie(tb, s.Name, s.Close)
	} else {
		failStart(tb, err)
	}
	return s
}

// StartSites builds a multi-bridge lab. The caller must Close it.
func StartSites(opts SitesOptions) (*Sites, error) {
	if opts.Bridges < 1 || opts.Bridges > 8 {
		return nil, fmt.Errorf("Bridges %d out of range [1, 8]", opts.Bridges)
	}
	if len(opts.Hosts) < 1 || len(opts.Hosts) > 250 {
		return nil, fmt.Errorf("%d hosts out of range [1, 250]", len(opts.Hosts))
	}
	for i, bs := range opts.Hosts {
		if len(bs) == 0 {
			return nil, fmt.Errorf("host %d has no bridge", i)
		}
		seen := make(map[int]bool)
		for _, b := range bs {
			if b < 0 || b >= opts.Bridges || seen[b] {
				return nil, fmt.Errorf("host %d: bridge %d out of range or repeated", i, b)
			}
			seen[b] = true
		}
	}
	l, err := begin(&opts.MTU, opts.Logf)
	if err != nil {
		return nil, err
	}
	s := &Sites{Lab: l}
	if err := s.build(opts); err != nil {
		l.Close()
		return nil, err
	}
	var subnets []string
	for b := range opts.Bridges {
		subnets = append(subnets, s.Subnet(b).String())
	}
	l.logf("lab %s: bridge namespace %s, %d hosts on %d bridges (%s)", l.Name, l.BridgeNS, len(l.Hosts), opts.Bridges, strings.Join(subnets, ", "))
	return s, nil
}

func (s *Sites) build(opts SitesOptions) error {
	l := s.Lab
	br := l.BridgeNS
	mtu := strconv.Itoa(opts.MTU)
	if err := ipCmd("-n", br, "link", "set", "lo", "up"); err != nil {
		return err
	}
	for b := range opts.Bridges {
		name := fmt.Sprintf("br%d", b)
		steps := [][]string{
			{"-n", br, "link", "add", name, "mtu", mtu, "type", "bridge", "mcast_snooping", "0", "stp_state", "0"},
			{"-n", br, "link", "set", name, "up"},
		}
		for _, st := range steps {
			if err := ipCmd(st...); err != nil {
				return err
			}
		}
	}
	for i, bridges := range opts.Hosts {
		h := &Host{Lab: l, Index: i, NS: fmt.Sprintf("%s-h%d", l.Name, i)}
		if err := l.addNS(h.NS); err != nil {
			return err
		}
		if err := ipCmd("-n", h.NS, "link", "set", "lo", "up"); err != nil {
			return err
		}
		var links []Link
		for j, b := range bridges {
			p := s.Subnet(b).Addr().As4()
			p[3] = byte(i + 1)
			ln := Link{Name: fmt.Sprintf("eth%d", j), Bridge: b, Addr: netip.AddrFrom4(p)}
			port := fmt.Sprintf("p%db%d", i, b) // inside the bridge namespace
			steps := [][]string{
				// Both ends are born inside lab namespaces: never in ours.
				{"-n", br, "link", "add", port, "mtu", mtu, "type", "veth", "peer", "name", ln.Name, "mtu", mtu, "netns", h.NS},
				{"-n", br, "link", "set", port, "master", fmt.Sprintf("br%d", b)},
				{"-n", br, "link", "set", port, "up"},
				{"-n", h.NS, "addr", "add", ln.Addr.String() + "/24", "dev", ln.Name},
				{"-n", h.NS, "link", "set", ln.Name, "up"},
			}
			for _, st := range steps {
				if err := ipCmd(st...); err != nil {
					return err
				}
			}
			if err := segmentUDP(h.NS, ln.Name); err != nil {
				return err
			}
			if j == 0 {
				h.port = port
			}
			links = append(links, ln)
		}
		// Multicast leaves by the first link unless a socket names its
		// interface (mcp always does).
		if err := ipCmd("-n", h.NS, "route", "add", "224.0.0.0/4", "dev", links[0].Name); err != nil {
			return err
		}
		h.Iface, h.Addr = links[0].Name, links[0].Addr
		l.Hosts = append(l.Hosts, h)
		s.Links = append(s.Links, links)
	}
	return nil
}

// HasGroupOn is HasGroup for interface dev of the host.
func (h *Host) HasGroupOn(dev string, group netip.Addr) (bool, error) {
	hh := *h
	hh.Iface = dev
	return hh.HasGroup(group)
}

// WaitGroupsOn is WaitGroups for interface dev of the host.
func (h *Host) WaitGroupsOn(ctx context.Context, dev string, groups ...netip.Addr) error {
	hh := *h
	hh.Iface = dev
	return hh.WaitGroups(ctx, groups...)
}
