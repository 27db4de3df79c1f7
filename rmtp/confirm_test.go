package rmtp_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// TestConfirmedExpect: a confirmed sender is done as soon as the expected
// receivers report, long before its linger would end; each receiver's
// first completion report is lost, and its repeat is counted once.
func TestConfirmedExpect(t *testing.T) {
	file := randBytes(21, 1<<20)
	w := newWorld(t, 21, 3, rmtp.SenderConfig{Mode: wire.ModeConfirmed, Expect: 3, Linger: 30 * time.Second}, file)
	firstLost := map[uint32]bool{}
	w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		if p.Type != wire.TypeStatus || p.Status.State != wire.StateComplete || to != w.sendNode {
			return false
		}
		if !firstLost[p.Source] {
			firstLost[p.Source] = true
			return true
		}
		return false
	}
	if err := w.sim.Run(func() bool { return w.sender.Done(w.sim.Now) }, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.check(t)
	took := w.sim.Now.Sub(epoch)
	st := w.sender.Stats()
	t.Logf("sender done after %v with %d completions heard", took, st.Completed)
	if len(firstLost) != 3 {
		t.Fatalf("%d receivers' first report dropped, want 3", len(firstLost))
	}
	if st.Completed != 3 || st.Failed != 0 {
		t.Errorf("completed %d, failed %d; want 3, 0", st.Completed, st.Failed)
	}
	if took > 5*time.Second {
		t.Errorf("the sender took %v; it should end on the reports, not the 30 s linger", took)
	}
	// Every repeat goes out, and none counts twice.
	if err := w.sim.Run(w.noneReporting, time.Second); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		w.sim.Step()
	}
	if st := w.sender.Stats(); st.Completed != 3 {
		t.Errorf("after the repeats: %d completions counted, want 3", st.Completed)
	}
}

// TestConfirmedWaits: expecting more receivers than there are, the sender
// goes on (TAILs, answering NAKs) past its linger; its caller ends it.
func TestConfirmedWaits(t *testing.T) {
	file := randBytes(22, 256<<10)
	w := newWorld(t, 22, 2, rmtp.SenderConfig{Mode: wire.ModeConfirmed, Expect: 3, Linger: 100 * time.Millisecond}, file)
	err := w.sim.Run(func() bool { return w.sender.Done(w.sim.Now) }, 20*time.Second)
	if err == nil {
		t.Fatalf("sender done with %d of 3 expected reports", w.sender.Stats().Completed)
	}
	if !strings.Contains(err.Error(), "not done after") {
		t.Fatalf("the simulation stopped for another reason: %v", err)
	}
	if st := w.sender.Stats(); st.ControlPackets < 100 {
		t.Errorf("%d control packets in 20 s: the sender stopped sending TAILs", st.ControlPackets)
	}
	if st := w.sender.Stats(); st.Completed != 2 {
		t.Errorf("completed %d, want 2 (the receivers there are)", st.Completed)
	}
	if !w.allDone() {
		t.Error("receivers not done")
	}
}

// TestConfirmedTailEndsRepeats: once a confirmed sender has every
// completion it expected, its last TAIL (TailConfirmed) reaches the
// receivers, and they stop repeating their completion reports at once
// instead of after completionRepeats more, statusGap apart. The
// confirmations of single reports (wire.StatusConfirm) are dropped here,
// so that only the TAIL or the repeats can end them.
func TestConfirmedTailEndsRepeats(t *testing.T) {
	for _, lose := range []bool{false, true} {
		file := randBytes(22, 1<<20)
		w := newWorld(t, 22, 3, rmtp.SenderConfig{Mode: wire.ModeConfirmed, Expect: 3, Linger: 30 * time.Second}, file)
		heard := 0
		w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
			if p.Type == wire.TypeStatus && p.Status.Flags&wire.StatusConfirm != 0 {
				return true
			}
			if p.Type == wire.TypeTail && p.Tail.Flags&wire.TailConfirmed != 0 {
				if p.Tail.Flags&wire.TailEnd == 0 {
					t.Errorf("TailConfirmed without TailEnd")
				}
				heard++
				return lose
			}
			return false
		}
		if err := w.sim.Run(func() bool { return w.sender.Done(w.sim.Now) }, time.Minute); err != nil {
			t.Fatal(err)
		}
		done := w.sim.Now
		w.sim.Refresh() // Done, called here, made the last TAIL due
		if err := w.sim.Run(w.noneReporting, time.Second); err != nil {
			t.Fatal(err)
		}
		w.check(t)
		took := w.sim.Now.Sub(done)
		t.Logf("lost %v: the TailConfirmed TAIL reached %d receivers; the last stopped reporting %v after the sender was done", lose, heard, took)
		switch {
		case heard != 3:
			t.Errorf("lost %v: the TailConfirmed TAIL went to %d receivers, want 3", lose, heard)
		case !lose && took >= 20*time.Millisecond:
			t.Errorf("receivers kept reporting %v after the sender's TailConfirmed, want less than the shortest repeat gap (20 ms)", took)
		case lose && took < 20*time.Millisecond:
			t.Errorf("with the TailConfirmed TAIL lost the receivers stopped after %v: their repeats are not what ended them", took)
		}
	}
}

// TestCompletionConfirmed: the sender confirms each completion report it
// counts (wire.StatusConfirm), so a receiver that finishes while the
// sender still waits for others (here one losing 30% of the stream, which
// finishes long after) stops repeating its report and is free to exit
// at once, not completionRepeats statusGaps later. With the confirmations
// lost, the repeats still go out.
func TestCompletionConfirmed(t *testing.T) {
	for _, lose := range []bool{false, true} {
		file := randBytes(23, 2<<20)
		w := newWorld(t, 23, 3, rmtp.SenderConfig{Mode: wire.ModeConfirmed, Expect: 3, Linger: 30 * time.Second}, file)
		reports := map[int]int{} // completion reports by node (receiver i is node i+1)
		rng := rand.New(rand.NewPCG(23, 1))
		w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
			switch {
			case p.Type == wire.TypeStatus && p.Status.Flags&wire.StatusConfirm != 0:
				return lose
			case p.Type == wire.TypeStatus && p.Status.State == wire.StateComplete && to == w.sendNode:
				reports[from.ID]++
			case p.Type == wire.TypeData && to.ID == 1:
				return rng.Float64() < 0.3
			}
			return false
		}
		done := make([]time.Duration, 3)
		quiet := make([]time.Duration, 3)
		err := w.sim.Run(func() bool {
			w.noteDone(done)
			for i, r := range w.receivers {
				if done[i] != 0 && quiet[i] == 0 && !r.Reporting() {
					quiet[i] = w.sim.Now.Sub(epoch)
				}
			}
			return w.sender.Done(w.sim.Now)
		}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		w.check(t)
		for i := 1; i < 3; i++ {
			r := w.receivers[i]
			src := i + 1
			t.Logf("lost %v: receiver %d done at %v, quiet %v later, %d completion reports, confirmed %v; the lossy one done at %v",
				lose, i, done[i], quiet[i]-done[i], reports[src], r.Stats().CompletionConfirmed, done[0])
			if done[i] >= done[0] {
				t.Fatalf("receiver %d finished at %v, not before the lossy one (%v): the test needs it to finish first", i, done[i], done[0])
			}
			switch {
			case !lose && (reports[src] != 1 || !r.Stats().CompletionConfirmed || quiet[i]-done[i] >= 20*time.Millisecond):
				t.Errorf("receiver %d: %d reports, confirmed %v, quiet %v after done; want 1, true, under 20 ms (the shortest repeat gap)",
					i, reports[src], r.Stats().CompletionConfirmed, quiet[i]-done[i])
			case lose && (reports[src] != 3 || r.Stats().CompletionConfirmed):
				t.Errorf("confirmations lost: receiver %d sent %d reports, confirmed %v; want 3, false", i, reports[src], r.Stats().CompletionConfirmed)
			}
		}
		if st := w.sender.Stats(); st.Completed != 3 || st.ConfirmsSent == 0 {
			t.Errorf("sender: %d completed, %d confirmations sent; want 3 and some", st.Completed, st.ConfirmsSent)
		}
	}
}

// noneReporting reports whether every receiver has stopped repeating its
// completion report.
func (w *world) noneReporting() bool {
	for _, r := range w.receivers {
		if r.Reporting() {
			return false
		}
	}
	return true
}
