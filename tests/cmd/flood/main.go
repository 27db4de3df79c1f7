// Command flood sends hostile traffic to an mcp group, for the flood test
// in tests/security_test.go:
//
//	flood --interface eth0 --group 239.213.5.1:7700 --pps 50000 --duration 10s
//
// It sends --pps packets per second for --duration (and never more than
// --pps × --duration packets), in equal thirds: random garbage (random
// length and bytes, to both ports), well-formed unkeyed NAKs (to the
// feedback port, PORT+1) and well-formed unkeyed DATA packets (to the data
// port). NAKs and DATA name random session IDs unless --session names
// one, and random objects and blocks. It sends only to the group given,
// which must be a multicast address, with TTL 1 on the one interface
// named: the test runs it inside a network namespace of its own lab.
// It prints {sent, duration_ns} as JSON.
//
// Exit status: 0 done, 1 failure, 2 usage.
package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

const batch = 64

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "flood: "+format+"\n", args...)
	os.Exit(2)
}

func run() error {
	iface := flag.String("interface", "", "network interface name (required)")
	group := flag.String("group", "", "the mcp data group IP:PORT (required; NAKs go to PORT+1)")
	pps := flag.Int("pps", 50000, "packets per second, 1..1000000")
	dur := flag.Duration("duration", 10*time.Second, "how long to send, at most 1m")
	session := flag.String("session", "", "session ID in hex for the NAK and DATA packets (default: random per packet)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	g, err := netip.ParseAddrPort(*group)
	if err != nil || !g.Addr().Is4() || !g.Addr().IsMulticast() || g.Port() == 0 || g.Port() == 65535 {
		usage("--group %q: want an IPv4 multicast IP:PORT", *group)
	}
	if *pps < 1 || *pps > 1e6 || *dur <= 0 || *dur > time.Minute {
		usage("--pps must be in [1, 1e6] and --duration in (0, 1m]")
	}
	var sid *wire.SessionID
	if *session != "" {
		b, err := hex.DecodeString(*session)
		if err != nil || len(b) != 8 {
			usage("--session %q: want 16 hex digits", *session)
		}
		sid = (*wire.SessionID)(b)
	}
	ifi, err := net.InterfaceByName(*iface)
	if err != nil {
		usage("interface %q: %v", *iface, err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return err
	}
	defer conn.Close()
	p := ipv4.NewPacketConn(conn)
	if err := p.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("multicast interface %s: %w", ifi.Name, err)
	}
	if err := p.SetMulticastTTL(1); err != nil {
		return err
	}
	if err := p.SetMulticastLoopback(false); err != nil {
		return err
	}
	data := net.UDPAddrFromAddrPort(g)
	feedback := net.UDPAddrFromAddrPort(netip.AddrPortFrom(g.Addr(), g.Port()+1))

	rng := rand.New(rand.NewPCG(*seed, 0x466c6f6f64))
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 0, 1500)}
	}
	var pkt wire.Packet
	mask := make([]byte, 8)
	fill := func(m *ipv4.Message, n uint64) {
		b := m.Buffers[0][:0]
		var s wire.SessionID
		if sid != nil {
			s = *sid
		} else {
			for i := range s {
				s[i] = byte(rng.Uint32())
			}
		}
		pkt.Header = wire.Header{Session: s, Source: rng.Uint32()}
		switch n % 3 {
		case 0: // garbage, to either port
			b = b[:1+rng.IntN(1400)]
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			m.Addr = data
			if rng.IntN(2) == 0 {
				m.Addr = feedback
			}
		case 1: // a NAK for a random block
			pkt.Type = wire.TypeNAK
			for i := range mask {
				mask[i] = byte(rng.Uint32())
			}
			pkt.NAK.Entries = append(pkt.NAK.Entries[:0], wire.NAKEntry{Object: rng.Uint32N(4), Block: rng.Uint32N(1024), Need: uint16(1 + rng.IntN(64)), Mask: mask})
			b = pkt.Append(b)
			m.Addr = feedback
		case 2: // a DATA packet of a random symbol
			pkt.Type = wire.TypeData
			pkt.Data = wire.Data{Object: rng.Uint32N(4), Block: rng.Uint32N(1024), Symbol: uint16(rng.IntN(64)), Payload: garbage[:1024]}
			b = pkt.Append(b)
			m.Addr = data
		}
		m.Buffers[0] = b
	}

	total := uint64(*pps) * uint64(*dur/time.Millisecond) / 1000
	perPacket := time.Second / time.Duration(*pps)
	start := time.Now()
	var sent uint64
	for sent < total && time.Since(start) < *dur+time.Second {
		due := min(uint64(time.Since(start)/perPacket)+1, total)
		if due <= sent {
			time.Sleep(time.Duration(sent)*perPacket - time.Since(start))
			continue
		}
		n := min(uint64(batch), due-sent)
		for i := range n {
			fill(&msgs[i], sent+i)
		}
		done := 0
		for done < int(n) {
			k, err := p.WriteBatch(msgs[done:n], 0)
			if err != nil {
				if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ECONNREFUSED) {
					k = max(k, 1) // dropped locally: counted as sent
				} else {
					return fmt.Errorf("send: %w", err)
				}
			}
			done += k
		}
		sent += n
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		Sent       uint64 `json:"sent"`
		DurationNS int64  `json:"duration_ns"`
	}{sent, int64(time.Since(start))})
}

var garbage = func() []byte {
	b := make([]byte, 1024)
	for i := range b {
		b[i] = byte(i * 131)
	}
	return b
}()
