package rmtp

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ResolveInterface finds the network interface to send and receive
// multicast on. nameOrAddr is an interface name ("lo", "eth0") or one of
// its IPv4 addresses ("127.0.0.1"). It returns the interface and an IPv4
// address on it: the first one when a name was given, the given one when an
// address was given.
//
// Errors say what to do and list what exists, for example
// `interface "eth9" not found (available: lo, eth0)`.
func ResolveInterface(nameOrAddr string) (*net.Interface, netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("list network interfaces: %w", err)
	}
	return resolveInterface(nameOrAddr, ifaces, interfaceIPv4s)
}

// MTU returns the interface's MTU in bytes, as the kernel reported it when
// ifi was looked up, or 0 if ifi is nil. The largest IPv4 UDP payload that
// is not fragmented is MTU-28 (20 bytes of IPv4 header, 8 of UDP).
func MTU(ifi *net.Interface) int {
	if ifi == nil {
		return 0
	}
	return ifi.MTU
}

// resolveInterface is ResolveInterface over a given interface list, so
// tests can check the error messages without depending on the host.
// addrsOf returns an interface's IPv4 addresses in kernel order.
func resolveInterface(nameOrAddr string, ifaces []net.Interface, addrsOf func(*net.Interface) ([]netip.Addr, error)) (*net.Interface, netip.Addr, error) {
	if nameOrAddr == "" {
		return nil, netip.Addr{}, fmt.Errorf("no interface given: pass --interface (available: %s)", interfaceNames(ifaces))
	}

	if want, err := netip.ParseAddr(nameOrAddr); err == nil {
		want = want.Unmap()
		if !want.Is4() {
			return nil, netip.Addr{}, fmt.Errorf("address %s is not IPv4: pass an interface name or one of its IPv4 addresses (available: %s)", want, interfaceAddrs(ifaces, addrsOf))
		}
		for i := range ifaces {
			ifi := &ifaces[i]
			addrs, err := addrsOf(ifi)
			if err != nil {
				continue // the error message lists it as "addresses unknown"
			}
			for _, a := range addrs {
				if a == want {
					if err := checkUp(ifi); err != nil {
						return nil, netip.Addr{}, err
					}
					return ifi, want, nil
				}
			}
		}
		return nil, netip.Addr{}, fmt.Errorf("no interface has address %s (available: %s)", want, interfaceAddrs(ifaces, addrsOf))
	}

	for i := range ifaces {
		ifi := &ifaces[i]
		if ifi.Name != nameOrAddr {
			continue
		}
		addrs, err := addrsOf(ifi)
		if err != nil {
			return nil, netip.Addr{}, fmt.Errorf("list addresses of interface %q: %w", ifi.Name, err)
		}
		if len(addrs) == 0 {
			return nil, netip.Addr{}, fmt.Errorf("interface %q has no IPv4 address: add one (ip addr add ... dev %s) or pick another (available: %s)", ifi.Name, ifi.Name, interfaceAddrs(ifaces, addrsOf))
		}
		if err := checkUp(ifi); err != nil {
			return nil, netip.Addr{}, err
		}
		return ifi, addrs[0], nil
	}
	return nil, netip.Addr{}, fmt.Errorf("interface %q not found (available: %s)", nameOrAddr, interfaceNames(ifaces))
}

// checkUp reports a down interface early: sending on it would fail later
// with a less helpful error.
func checkUp(ifi *net.Interface) error {
	if ifi.Flags&net.FlagUp == 0 {
		return fmt.Errorf("interface %q is down: bring it up (ip link set %s up) or pick another", ifi.Name, ifi.Name)
	}
	return nil
}

// interfaceIPv4s returns ifi's IPv4 addresses in the order the kernel
// lists them.
func interfaceIPv4s(ifi *net.Interface) ([]netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		default:
			continue
		}
		if addr, ok := netip.AddrFromSlice(ip); ok && addr.Unmap().Is4() {
			out = append(out, addr.Unmap())
		}
	}
	return out, nil
}

// interfaceNames lists interface names for error messages: "lo, eth0".
func interfaceNames(ifaces []net.Interface) string {
	if len(ifaces) == 0 {
		return "none"
	}
	names := make([]string, len(ifaces))
	for i := range ifaces {
		names[i] = ifaces[i].Name
	}
	return strings.Join(names, ", ")
}

// interfaceAddrs lists interfaces with their IPv4 addresses for error
// messages: "lo 127.0.0.1, eth0 192.0.2.2, ifb0 (no IPv4)".
func interfaceAddrs(ifaces []net.Interface, addrsOf func(*net.Interface) ([]netip.Addr, error)) string {
	if len(ifaces) == 0 {
		return "none"
	}
	var b strings.Builder
	for i := range ifaces {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ifaces[i].Name)
		addrs, err := addrsOf(&ifaces[i])
		switch {
		case err != nil:
			b.WriteString(" (addresses unknown)")
		case len(addrs) == 0:
			b.WriteString(" (no IPv4)")
		default:
			for _, a := range addrs {
				b.WriteByte(' ')
				b.WriteString(a.String())
			}
		}
	}
	return b.String()
}
