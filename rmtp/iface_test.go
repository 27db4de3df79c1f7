package rmtp

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestResolveInterfaceLoopback(t *testing.T) {
	for _, arg := range []string{"lo", "127.0.0.1"} {
		t.Run(arg, func(t *testing.T) {
			ifi, addr, err := ResolveInterface(arg)
			if err != nil {
				t.Fatalf("ResolveInterface(%q): %v", arg, err)
			}
			if ifi.Name != "lo" {
				t.Errorf("got interface %q, want lo", ifi.Name)
			}
			if want := netip.MustParseAddr("127.0.0.1"); addr != want {
				t.Errorf("got address %v, want %v", addr, want)
			}
			if got := MTU(ifi); got <= 0 {
				t.Errorf("MTU(lo) = %d, want > 0", got)
			}
		})
	}
}

func TestResolveInterfaceBogus(t *testing.T) {
	for _, arg := range []string{"mcp-bogus0", "192.0.2.254", ""} {
		t.Run(arg, func(t *testing.T) {
			ifi, _, err := ResolveInterface(arg)
			if err == nil {
				t.Fatalf("ResolveInterface(%q) = %q, want an error", arg, ifi.Name)
			}
			// The error must list what exists, loopback included.
			if !strings.Contains(err.Error(), "lo") {
				t.Errorf("error %q does not list the available interfaces", err)
			}
			t.Log(err)
		})
	}
}

func TestMTUNil(t *testing.T) {
	if got := MTU(nil); got != 0 {
		t.Errorf("MTU(nil) = %d, want 0", got)
	}
}

// TestResolveInterfaceErrors checks the messages over a fixed interface
// list, independent of the host.
func TestResolveInterfaceErrors(t *testing.T) {
	ifaces := []net.Interface{
		{Index: 1, Name: "lo", MTU: 65536, Flags: net.FlagUp | net.FlagLoopback},
		{Index: 2, Name: "eth0", MTU: 1400, Flags: net.FlagUp | net.FlagMulticast},
		{Index: 3, Name: "x", MTU: 1500, Flags: net.FlagUp},
		{Index: 4, Name: "down0", MTU: 1500},
		{Index: 5, Name: "broken", MTU: 1500, Flags: net.FlagUp},
	}
	addrs := map[string][]netip.Addr{
		"lo":    {netip.MustParseAddr("127.0.0.1")},
		"eth0":  {netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")},
		"down0": {netip.MustParseAddr("198.51.100.1")},
	}
	addrsOf := func(ifi *net.Interface) ([]netip.Addr, error) {
		if ifi.Name == "broken" {
			return nil, errors.New("netlink says no")
		}
		return addrs[ifi.Name], nil
	}
	tests := []struct {
		name, arg string
		wantIf    string // "" if an error is wanted
		wantAddr  string
		wantErr   string
	}{
		{name: "by name", arg: "eth0", wantIf: "eth0", wantAddr: "192.0.2.2"},
		{name: "by first address", arg: "192.0.2.2", wantIf: "eth0", wantAddr: "192.0.2.2"},
		{name: "by second address", arg: "192.0.2.3", wantIf: "eth0", wantAddr: "192.0.2.3"},
		{name: "by mapped address", arg: "::ffff:127.0.0.1", wantIf: "lo", wantAddr: "127.0.0.1"},
		{name: "unknown name", arg: "eth9",
			wantErr: `interface "eth9" not found (available: lo, eth0, x, down0, broken)`},
		{name: "no IPv4", arg: "x",
			wantErr: `interface "x" has no IPv4 address`},
		{name: "empty", arg: "",
			wantErr: `no interface given: pass --interface (available: lo, eth0, x, down0, broken)`},
		{name: "unknown address", arg: "10.9.9.9",
			wantErr: `no interface has address 10.9.9.9 (available: lo 127.0.0.1, eth0 192.0.2.2 192.0.2.3, x (no IPv4), down0 198.51.100.1, broken (addresses unknown))`},
		{name: "IPv6 address", arg: "fd00::2",
			wantErr: `address fd00::2 is not IPv4`},
		{name: "down", arg: "down0",
			wantErr: `interface "down0" is down`},
		{name: "addresses fail", arg: "broken",
			wantErr: `list addresses of interface "broken": netlink says no`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ifi, addr, err := resolveInterface(tt.arg, ifaces, addrsOf)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("got interface %v, want error %q", ifi, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("got error %q, want it to start with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %s", err, tt.wantIf)
			}
			if ifi.Name != tt.wantIf || addr.String() != tt.wantAddr {
				t.Errorf("got %s %v, want %s %s", ifi.Name, addr, tt.wantIf, tt.wantAddr)
			}
		})
	}
}
