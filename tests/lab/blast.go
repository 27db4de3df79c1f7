package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// BlastSend is what "udpblast send" prints.
type BlastSend struct {
	Sent       uint64  `json:"sent"`
	Bytes      uint64  `json:"bytes"`
	DurationNS int64   `json:"duration_ns"`
	RateBPS    float64 `json:"rate_bps"`
	// CPU is the process's user+system CPU time (not in the JSON).
	CPU time.Duration `json:"-"`
}

// BlastRecv is what "udpblast recv" prints.
type BlastRecv struct {
	Received uint64 `json:"received"`
	Bytes    uint64 `json:"bytes"`
	FirstNS  int64  `json:"first_ns"`
	LastNS   int64  `json:"last_ns"`
	Unique   uint64 `json:"unique"`
	MaxSeq   int64  `json:"max_seq"`
	Lost     uint64 `json:"lost"`
	// CPU is the process's user+system CPU time (not in the JSON).
	CPU time.Duration `json:"-"`
}

// BlastResult is one udpblast trial.
type BlastResult struct {
	Send BlastSend
	Recv []BlastRecv
	// SendEndNS is when the sender process exited, Unix nanoseconds.
	SendEndNS int64
}

// ReceivedCounts lists the distinct datagrams each receiver got.
func (r *BlastResult) ReceivedCounts() []uint64 {
	out := make([]uint64, len(r.Recv))
	for i, x := range r.Recv {
		out[i] = x.Unique
	}
	return out
}

// WorstDrain is the longest a receiver went on reading after the sender
// finished: a receiver that cannot keep up drains its socket buffer late.
func (r *BlastResult) WorstDrain() time.Duration {
	var worst time.Duration
	for _, x := range r.Recv {
		worst = max(worst, time.Duration(x.LastNS-r.SendEndNS))
	}
	return worst
}

// WorstLoss is the largest fraction of sent datagrams a receiver missed.
func (r *BlastResult) WorstLoss() float64 {
	worst := 0.0
	for _, x := range r.Recv {
		worst = max(worst, 1-float64(x.Unique)/float64(r.Send.Sent))
	}
	return worst
}

// Blast runs one udpblast trial: receivers on every host of to, count
// datagrams of size bytes from from at rateBPS bits/s of payload (0:
// unpaced). Receivers stop 500 ms after their last datagram.
func Blast(ctx context.Context, bin string, from *Host, to []*Host, group string, rateBPS float64, count, size int) (*BlastResult, error) {
	g, err := netip.ParseAddrPort(group)
	if err != nil {
		return nil, err
	}
	// Bound every receiver: the send's expected time plus margin.
	expect := time.Duration(float64(count*size*8) / max(rateBPS, 1e8) * float64(time.Second))
	dur := (expect + 5*time.Second).String()
	res := &BlastResult{Recv: make([]BlastRecv, len(to))}
	errs := make([]error, len(to))
	var wg sync.WaitGroup
	for i, h := range to {
		var out, stderr bytes.Buffer
		cmd := h.Cmd(ctx, bin, "recv", "--interface", h.Iface, "--group", group, "--duration", dur, "--idle", "500ms")
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("udpblast recv in %s: %v: %s", h.NS, err, stderr.Bytes())
				return
			}
			if err := json.Unmarshal(out.Bytes(), &res.Recv[i]); err != nil {
				errs[i] = fmt.Errorf("udpblast recv in %s: %v: %q", h.NS, err, out.Bytes())
			}
			res.Recv[i].CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}()
	}
	joinCtx, joinCancel := context.WithTimeout(ctx, 10*time.Second)
	defer joinCancel()
	for _, h := range to {
		if err := h.WaitGroups(joinCtx, g.Addr()); err != nil {
			wg.Wait()
			return nil, err
		}
	}
	cmd := from.Cmd(ctx, bin, "send", "--interface", from.Iface, "--group", group,
		"--rate", strconv.FormatFloat(rateBPS, 'f', 0, 64), "--count", strconv.Itoa(count), "--size", strconv.Itoa(size))
	out, err := cmd.Output()
	res.SendEndNS = time.Now().UnixNano()
	if cmd.ProcessState != nil {
		res.Send.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		wg.Wait()
		return nil, fmt.Errorf("udpblast send in %s: %w", from.NS, err)
	}
	if err := json.Unmarshal(out, &res.Send); err != nil {
		wg.Wait()
		return nil, fmt.Errorf("udpblast send: %v: %q", err, out)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}
