package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mcp-dev/mcp/tests/lab"
)

// env is one transfer's setup: the lab hosts, the file and where each
// receiver's copy goes.
type env struct {
	c       *config
	l       *lab.Lab
	snd     *lab.Host
	rcv     []*lab.Host
	src     string // the file
	size    int64
	dirs    []string // receiver i writes into dirs[i] ...
	copies  []string // ... the file copies[i]
	timeout time.Duration
}

// outcome is what a tool's run saw; the caller adds counters and checks
// the copies.
type outcome struct {
	start   time.Time   // the sender's start
	done    []time.Time // when receiver i had the whole file; zero: never
	sendCPU time.Duration
	recvCPU []time.Duration
	errs    []string
	notes   []string // not failures: what the run had to work around
}

func newOutcome(n int) *outcome {
	return &outcome{done: make([]time.Time, n), recvCPU: make([]time.Duration, n)}
}

// procOutcome is the outcome of a sender process and receiver processes
// that have all exited; done says when a receiver that exited cleanly had
// its copy.
func procOutcome(snd *proc, rs []*proc, done func(*proc) time.Time) *outcome {
	o := newOutcome(len(rs))
	o.start, o.sendCPU = snd.started, snd.cpu
	if !snd.ok() {
		o.errs = append(o.errs, "sender: "+snd.failure())
	}
	for i, p := range rs {
		o.recvCPU[i] = p.cpu
		if !p.ok() {
			o.errs = append(o.errs, fmt.Sprintf("receiver %d: %s", i, p.failure()))
			continue
		}
		o.done[i] = done(p)
	}
	return o
}

// tool is one contender. run transfers e.src to every receiver with the
// given parameters (from candidates, or fixed by the environment).
type tool struct {
	name string
	run  func(ctx context.Context, e *env, params []string) (*outcome, error)
}

var tools = map[string]tool{
	"mcp":     {"mcp", runMCP},
	"udpcast": {"udpcast", runUDPCast},
	"uftp":    {"uftp", runUFTP},
	"tcp":     {"tcp", runTCP},
}

// group is the lab's multicast address 239.213.<subnet>.n: every tool
// has its own, so a straggler of one cell cannot disturb the next.
func group(l *lab.Lab, n byte) netip.Addr {
	return netip.AddrFrom4([4]byte{239, 213, byte(l.Subnet), n})
}

// runMCP runs mcp send/receive through lab.Transfer. The sender gets
// --expect N, so it exits once every receiver has confirmed its verified
// copy instead of lingering; wall time is the last receiver's exit
// either way.
func runMCP(ctx context.Context, e *env, params []string) (*outcome, error) {
	n := len(e.rcv)
	tr := lab.Transfer{
		MCP: e.c.mcp, Sender: e.snd, Receivers: e.rcv, Dirs: e.dirs,
		Paths: []string{e.src},
		Group: netip.AddrPortFrom(group(e.l, 1), 7700),
		SendArgs: append(append([]string{"--expect", strconv.Itoa(n), "--timeout", e.timeout.String()}, params...),
			e.c.sendArgs...),
		RecvArgs: append([]string(nil), e.c.recvArgs...),
		Timeout:  e.timeout,
	}
	if d := os.Getenv("MCP_DUMP"); d != "" {
		// For looking into a cell, not part of the results: each
		// transfer's processes' stderr and JSON documents (lab.Transfer
		// LogDir) in a directory of their own.
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("MCP_DUMP: %w", err)
		}
		dir, err := os.MkdirTemp(d, "mcp-*")
		if err != nil {
			return nil, fmt.Errorf("MCP_DUMP: %w", err)
		}
		tr.LogDir = dir
	}
	res, err := tr.Run(ctx)
	if err != nil {
		return nil, err
	}
	o := newOutcome(n)
	o.start = res.Send.Started
	o.sendCPU = res.Send.UserCPU + res.Send.SysCPU
	if err := res.Send.Failure(); err != nil {
		o.errs = append(o.errs, "sender: "+oneLine(err.Error(), 400))
	}
	for i := range res.Recv {
		p := &res.Recv[i]
		o.recvCPU[i] = p.UserCPU + p.SysCPU
		if err := p.Failure(); err != nil {
			o.errs = append(o.errs, fmt.Sprintf("receiver %d: %s", i, oneLine(err.Error(), 400)))
			continue
		}
		o.done[i] = p.Exited
	}
	return o, nil
}

// udpcast: receivers write to a file; the sender starts once all N have
// connected (--min-receivers; --rexmit-hello-interval 50 makes it check
// every 50 ms instead of every 2 s) and exits when every receiver has
// acked the last slice, which is when each receiver is counted done (a
// receiver prints "Transfer complete." only after lingering --exit-wait,
// 500 ms, in case the sender missed its last ACK).
//
// udpcast's handshake does not survive a lost connect reply: the sender
// counts the receiver in, the receiver never hears it and never joins
// the data group, and the sender waits for it forever. An attempt where
// a receiver has not connected 3 s after the transfer started is
// abandoned and run again (at most 3 attempts; noted in the cell).
func runUDPCast(ctx context.Context, e *env, params []string) (*outcome, error) {
	var notes []string
	for attempt := 1; ; attempt++ {
		o, hung, err := udpcastOnce(ctx, e, params)
		if err != nil {
			return nil, err
		}
		if !hung || attempt == 3 {
			o.notes = append(notes, o.notes...)
			return o, nil
		}
		notes = append(notes, fmt.Sprintf("attempt %d abandoned: a receiver never connected (lost connect reply)", attempt))
		for _, c := range e.copies {
			os.Remove(c)
		}
	}
}

func udpcastOnce(ctx context.Context, e *env, params []string) (o *outcome, hung bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := len(e.rcv)
	rdv, data := group(e.l, 2).String(), group(e.l, 3).String()
	common := []string{"--interface", "eth0", "--portbase", "9100", "--mcast-rdv-address", rdv, "--nokbd"}
	secs := strconv.Itoa(int(e.timeout.Seconds()))
	var rs []*proc
	for i, h := range e.rcv {
		p, err := startProc(ctx, h, "Connected as", "udp-receiver",
			append(append([]string{"--file", e.copies[i]}, common...), "--start-timeout", secs, "--receive-timeout", "30")...)
		if err != nil {
			cancel()
			waitAll(rs)
			return nil, false, err
		}
		rs = append(rs, p)
	}
	snd, err := startProc(ctx, e.snd, "Starting transfer", "udp-sender", append(append([]string{"--file", e.src}, common...),
		append([]string{"--mcast-data-address", data, "--min-receivers", strconv.Itoa(n), "--start-timeout", secs,
			"--rexmit-hello-interval", "50"}, params...)...)...)
	if err != nil {
		cancel()
		waitAll(rs)
		return nil, false, err
	}
wait:
	for {
		select {
		case <-snd.done:
			break wait
		case <-time.After(50 * time.Millisecond):
		}
		if st := snd.seen(); !st.IsZero() && time.Since(st) > 3*time.Second {
			for _, p := range rs {
				if p.seen().IsZero() {
					hung = true
				}
			}
			if hung {
				cancel()
				break wait
			}
		}
	}
	<-snd.done
	// A receiver the sender dropped never completes; do not wait for its
	// --receive-timeout.
	grace := time.AfterFunc(5*time.Second, cancel)
	waitAll(rs)
	grace.Stop()
	// udpcast's receivers are done when the sender has every ACK.
	o = procOutcome(snd, rs, func(*proc) time.Time {
		if snd.ok() {
			return snd.exited
		}
		return time.Time{}
	})
	return o, hung, nil
}

// UFTP: a uftpd daemon per receiver (closed group: the sender lists
// their IDs with -H, so it starts as soon as all have registered instead
// of announcing for a fixed time), receiving into a temporary name (-t)
// renamed when the file is complete, which is when that receiver is
// done. The sender exits when every client has finished.
func runUFTP(ctx context.Context, e *env, params []string) (*outcome, error) {
	n := len(e.rcv)
	pub, priv := group(e.l, 4), group(e.l, 5)
	dctx, stopDaemons := context.WithCancel(ctx)
	defer stopDaemons()
	var ds []*proc
	var ids []string
	for i, h := range e.rcv {
		id := fmt.Sprintf("0x%08x", i+1)
		ids = append(ids, id)
		p, err := startProc(dctx, h, "", "uftpd", "-d", "-I", "eth0", "-M", pub.String(), "-p", "7800",
			"-D", e.dirs[i], "-t", "-U", id, "-q", "-x", "1", "-B", "8388608", "-c", "8388608")
		if err != nil {
			stopDaemons()
			waitAll(ds)
			return nil, err
		}
		ds = append(ds, p)
	}
	jctx, jcancel := context.WithTimeout(ctx, 10*time.Second)
	for i, h := range e.rcv {
		if err := h.WaitGroups(jctx, pub); err != nil {
			jcancel()
			stopDaemons()
			waitAll(ds)
			return nil, fmt.Errorf("uftpd %d never joined %v: %w (stderr: %s)", i, pub, err, oneLine(ds[i].stderr.String(), 300))
		}
	}
	jcancel()
	args := append([]string{"-I", "eth0", "-M", pub.String(), "-P", priv.String(), "-p", "7800",
		"-H", strings.Join(ids, ","), "-x", "1", "-B", "8388608"}, params...)
	snd, err := startProc(ctx, e.snd, "", "uftp", append(args, e.src)...)
	if err != nil {
		stopDaemons()
		waitAll(ds)
		return nil, err
	}
	o := newOutcome(n)
	o.start = snd.started
	// Poll for each final name; stop 2 s after the sender is gone.
	var senderGone time.Time
	for {
		all := true
		for i, c := range e.copies {
			if !o.done[i].IsZero() {
				continue
			}
			if fi, err := os.Stat(c); err == nil && fi.Size() == e.size {
				o.done[i] = time.Now()
			} else {
				all = false
			}
		}
		if senderGone.IsZero() {
			select {
			case <-snd.done:
				senderGone = time.Now()
			default:
			}
		}
		if (all && !senderGone.IsZero()) || (!senderGone.IsZero() && time.Since(senderGone) > 2*time.Second) || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	<-snd.done
	stopDaemons()
	waitAll(ds)
	o.sendCPU = snd.cpu
	if !snd.ok() {
		o.errs = append(o.errs, "sender: "+snd.failure())
	}
	for i, p := range ds {
		o.recvCPU[i] = p.cpu
		if o.done[i].IsZero() {
			o.errs = append(o.errs, fmt.Sprintf("receiver %d: no complete file: %s", i, oneLine(p.stderr.String(), 300)))
		}
	}
	return o, nil
}

// TCP fan-out: tcpfan get in every receiver (dialling until the server
// answers), then tcpfan serve in the sender, one connection per receiver.
func runTCP(ctx context.Context, e *env, params []string) (*outcome, error) {
	n := len(e.rcv)
	addr := netip.AddrPortFrom(e.snd.Addr, 7900).String()
	t := e.timeout.String()
	var rs []*proc
	for i, h := range e.rcv {
		p, err := startProc(ctx, h, "", e.c.tcpfan, "get", "--connect", addr, "--out", e.copies[i], "--timeout", t)
		if err != nil {
			waitAll(rs)
			return nil, err
		}
		rs = append(rs, p)
	}
	snd, err := startProc(ctx, e.snd, "", e.c.tcpfan, append([]string{"serve", "--listen", addr, "--file", e.src,
		"--clients", strconv.Itoa(n), "--timeout", t}, params...)...)
	if err != nil {
		waitAll(rs)
		return nil, err
	}
	waitAll(rs)
	<-snd.done
	return procOutcome(snd, rs, func(p *proc) time.Time { return p.exited }), nil
}
