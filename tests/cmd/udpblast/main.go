// Command udpblast is a plain UDP multicast blaster: the baseline that
// mcp's throughput is compared with in tests/bench.sh.
//
//	udpblast send --interface eth0 --group 239.1.2.3:9000 --rate 500M --count 100000 --size 1408
//	udpblast recv --interface eth0 --group 239.1.2.3:9000 --duration 5s
//
// send writes count datagrams of size bytes, paced at rate bits/s of UDP
// payload ("0" = as fast as possible), in batches of up to 64 with
// sendmmsg (golang.org/x/net/ipv4 WriteBatch), as mcp does, and prints a
// JSON summary. Each datagram starts with its sequence number (8 bytes,
// big endian). recv joins the group on the given interface only, reads
// with recvmmsg until --duration has passed, or until --idle passed
// without a datagram once one arrived, and prints
// {received, bytes, first_ns, last_ns, unique, max_seq, lost}
// (first_ns and last_ns are Unix nanoseconds of the first and last
// arrival; lost counts sequence numbers below max_seq never seen).
//
// Exit status: 0 done, 1 failure, 2 usage.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

const batch = 64

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	// The same scheduling as mcp send/receive (cmd/mcp oneProc), so the
	// baseline is not slowed by the Go scheduler where mcp is not.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	var err error
	switch os.Args[1] {
	case "send":
		err = send(os.Args[2:])
	case "recv":
		err = recv(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "udpblast:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: udpblast send --interface IF --group G:P [--rate R] --count N [--size B] [--ttl T]\n       udpblast recv --interface IF --group G:P [--duration D] [--idle D]")
	os.Exit(2)
}

type common struct {
	iface string
	group string
	ifi   *net.Interface
	gaddr netip.AddrPort
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.iface, "interface", "", "network interface name (required)")
	fs.StringVar(&c.group, "group", "", "multicast group IP:PORT (required)")
}

func (c *common) resolve(fs *flag.FlagSet) {
	if c.iface == "" || c.group == "" {
		fmt.Fprintln(os.Stderr, "udpblast: --interface and --group are required")
		fs.Usage()
		os.Exit(2)
	}
	g, err := netip.ParseAddrPort(c.group)
	if err != nil || !g.Addr().Is4() || !g.Addr().IsMulticast() {
		fmt.Fprintf(os.Stderr, "udpblast: --group %q: want an IPv4 multicast IP:PORT\n", c.group)
		os.Exit(2)
	}
	ifi, err := net.InterfaceByName(c.iface)
	if err != nil {
		fmt.Fprintf(os.Stderr, "udpblast: interface %q: %v\n", c.iface, err)
		os.Exit(2)
	}
	c.ifi, c.gaddr = ifi, g
}

// parseRate reads bits/s with an optional K, M or G suffix (powers of
// 1000).
func parseRate(s string) (float64, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1e9, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult, s = 1e3, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("rate %q: want a number of bits/s with an optional K, M or G suffix", s)
	}
	return v * mult, nil
}

type sendResult struct {
	Sent       uint64  `json:"sent"`
	Bytes      uint64  `json:"bytes"` // UDP payload bytes
	DurationNS int64   `json:"duration_ns"`
	RateBPS    float64 `json:"rate_bps"` // achieved, UDP payload bits/s
}

func send(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	var c common
	c.register(fs)
	rateStr := fs.String("rate", "0", "payload bits/s, K/M/G suffixes; 0 = unpaced")
	count := fs.Uint64("count", 0, "datagrams to send (required, at most 1e9)")
	size := fs.Int("size", 1408, "UDP payload bytes per datagram (8..65000)")
	ttl := fs.Int("ttl", 1, "multicast TTL")
	fs.Parse(args)
	c.resolve(fs)
	rate, err := parseRate(*rateStr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "udpblast:", err)
		os.Exit(2)
	}
	if *count == 0 || *count > 1e9 || *size < 8 || *size > 65000 {
		fmt.Fprintln(os.Stderr, "udpblast: --count must be in [1, 1e9] and --size in [8, 65000]")
		os.Exit(2)
	}

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return err
	}
	defer conn.Close()
	p := ipv4.NewPacketConn(conn)
	if err := p.SetMulticastInterface(c.ifi); err != nil {
		return fmt.Errorf("multicast interface %s: %w", c.ifi.Name, err)
	}
	if err := p.SetMulticastTTL(*ttl); err != nil {
		return err
	}
	if err := p.SetMulticastLoopback(false); err != nil {
		return err
	}
	dst := net.UDPAddrFromAddrPort(c.gaddr)
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i] = ipv4.Message{Buffers: [][]byte{make([]byte, *size)}, Addr: dst}
	}

	// Packet n is due at start + n*perPacket; send every packet due, at
	// most a batch at a time, then sleep until the next one is due.
	var perPacket time.Duration
	if rate > 0 {
		perPacket = time.Duration(float64(*size*8) / rate * float64(time.Second))
	}
	start := time.Now()
	var seq uint64
	for seq < *count {
		n := uint64(batch)
		if perPacket > 0 {
			due := uint64(time.Since(start)/perPacket) + 1
			if due <= seq {
				time.Sleep(time.Duration(seq)*perPacket - time.Since(start))
				continue
			}
			n = min(n, due-seq)
		}
		n = min(n, *count-seq)
		for i := range n {
			binary.BigEndian.PutUint64(msgs[i].Buffers[0], seq+i)
		}
		sent := 0
		for sent < int(n) {
			k, err := p.WriteBatch(msgs[sent:n], 0)
			if err != nil {
				if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) {
					// Dropped locally: counted as sent, as a switch would.
					k = max(k, 1)
				} else {
					return fmt.Errorf("send: %w", err)
				}
			}
			sent += k
		}
		seq += n
	}
	d := time.Since(start)
	res := sendResult{Sent: seq, Bytes: seq * uint64(*size), DurationNS: d.Nanoseconds()}
	res.RateBPS = float64(res.Bytes*8) / d.Seconds()
	return json.NewEncoder(os.Stdout).Encode(res)
}

type recvResult struct {
	Received uint64 `json:"received"`
	Bytes    uint64 `json:"bytes"`
	FirstNS  int64  `json:"first_ns"`
	LastNS   int64  `json:"last_ns"`
	Unique   uint64 `json:"unique"`
	MaxSeq   int64  `json:"max_seq"` // -1 if nothing arrived
	Lost     uint64 `json:"lost"`    // MaxSeq+1-Unique
}

// maxTracked bounds the sequence numbers recv tracks for loss (16 MiB of
// bitmap).
const maxTracked = 1 << 27

func recv(args []string) error {
	fs := flag.NewFlagSet("recv", flag.ExitOnError)
	var c common
	c.register(fs)
	duration := fs.Duration("duration", 10*time.Second, "stop after this long")
	idle := fs.Duration("idle", 500*time.Millisecond, "stop after this long without a datagram once one arrived")
	rbuf := fs.Int("rbuf", 32<<20, "socket receive buffer, bytes (SO_RCVBUFFORCE when root)")
	fs.Parse(args)
	c.resolve(fs)
	if *duration <= 0 || *duration > time.Hour {
		fmt.Fprintln(os.Stderr, "udpblast: --duration must be in (0, 1h]")
		os.Exit(2)
	}

	// Bound to the group address: only that group's datagrams arrive.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			if serr != nil {
				return
			}
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, *rbuf) != nil {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, *rbuf)
			}
		})
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", c.gaddr.String())
	if err != nil {
		return err
	}
	defer pc.Close()
	p := ipv4.NewPacketConn(pc)
	if err := p.JoinGroup(c.ifi, &net.UDPAddr{IP: c.gaddr.Addr().AsSlice()}); err != nil {
		return fmt.Errorf("join %v on %s: %w", c.gaddr.Addr(), c.ifi.Name, err)
	}

	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i] = ipv4.Message{Buffers: [][]byte{make([]byte, 65536)}}
	}
	res := recvResult{MaxSeq: -1}
	var seen []uint64
	end := time.Now().Add(*duration)
	for {
		now := time.Now()
		dl := end
		if res.Received > 0 {
			if i := time.Unix(0, res.LastNS).Add(*idle); i.Before(dl) {
				dl = i
			}
		}
		if !now.Before(dl) {
			break
		}
		p.SetReadDeadline(dl)
		n, err := p.ReadBatch(msgs, 0)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		t := time.Now().UnixNano()
		if res.Received == 0 {
			res.FirstNS = t
		}
		res.LastNS = t
		for _, m := range msgs[:n] {
			res.Received++
			res.Bytes += uint64(m.N)
			if m.N < 8 {
				continue
			}
			s := binary.BigEndian.Uint64(m.Buffers[0])
			if s >= maxTracked {
				continue
			}
			w := int(s / 64)
			for len(seen) <= w {
				seen = append(seen, 0)
			}
			if seen[w]&(1<<(s%64)) == 0 {
				seen[w] |= 1 << (s % 64)
				res.Unique++
			}
			res.MaxSeq = max(res.MaxSeq, int64(s))
		}
	}
	if res.MaxSeq >= 0 {
		res.Lost = uint64(res.MaxSeq+1) - res.Unique
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
