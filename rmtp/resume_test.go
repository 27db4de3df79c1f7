package rmtp_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/rmtp"
	"github.com/mcp-dev/mcp/rmtp/rmtptest"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// resumeWorld runs a sender and one receiver writing into dir with a
// FileStore; crash() cuts the receiver off, and restart() starts another
// receiver on the same dir whose Resume returns rec, err.
type resumeWorld struct {
	t     *testing.T
	sim   *rmtptest.Sim
	s     *rmtp.Sender
	dir   string
	r     *rmtp.Receiver
	node  *rmtptest.Node
	dead  map[*rmtptest.Node]bool
	file  []byte
	heard map[*rmtptest.Node]int // DATA packets delivered
}

func newResumeWorld(t *testing.T, file []byte) *resumeWorld {
	t.Helper()
	w := &resumeWorld{t: t, sim: rmtptest.NewSim(epoch), dir: filepath.Join(t.TempDir(), "dst"), file: file,
		dead: map[*rmtptest.Node]bool{}, heard: map[*rmtptest.Node]int{}}
	m, src := rmtptest.Manifest(1408, 64, file)
	s, err := rmtp.NewSender(rmtp.SenderConfig{DataGroup: dataGroup, RateBitsPerSec: 20e6, FixedRate: true,
		GRTT: 2 * time.Millisecond, Mode: wire.ModeReliable, Linger: 5 * time.Second}, m, src, epoch)
	if err != nil {
		t.Fatal(err)
	}
	w.s = s
	w.sim.Add(rmtptest.SenderEndpoint{Sender: s}, ctlGroup)
	w.sim.Drop = func(from, to *rmtptest.Node, p *wire.Packet) bool {
		if w.dead[to] || w.dead[from] {
			return true
		}
		if p.Type == wire.TypeData {
			w.heard[to]++
		}
		return false
	}
	return w
}

func (w *resumeWorld) start(resume func(wire.SessionID) (*checkpoint.Record, error)) {
	w.t.Helper()
	store, err := rmtp.NewFileStore(w.dir)
	if err != nil {
		w.t.Fatal(err)
	}
	r, err := rmtp.NewReceiver(rmtp.ReceiverConfig{ControlGroup: ctlGroup, Rand: rand.New(rand.NewPCG(5, uint64(len(w.dead)))), Resume: resume}, store)
	if err != nil {
		w.t.Fatal(err)
	}
	w.r = r
	w.node = w.sim.Add(rmtptest.ReceiverEndpoint{Receiver: r}, dataGroup, ctlGroup)
}

// runUntil steps the simulation until cond holds.
func (w *resumeWorld) runUntil(cond func() bool) {
	w.t.Helper()
	if err := w.sim.Run(cond, time.Minute); err != nil {
		w.t.Fatal(err)
	}
}

// crash cuts the current receiver off the network (as SIGKILL would: no
// more packets in or out, nothing cleaned up).
func (w *resumeWorld) crash() { w.dead[w.node] = true }

func (w *resumeWorld) finish() {
	w.t.Helper()
	w.runUntil(func() bool { return w.r.Done() || w.r.Err() != nil })
	if err := w.r.Err(); err != nil {
		w.t.Fatalf("restarted receiver: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(w.dir, "f0"))
	if err != nil || !bytes.Equal(got, w.file) {
		w.t.Fatalf("copy after resume differs (err %v)", err)
	}
}

// TestResumeKeepsCheckpointedBlocks: a receiver that crashed at about 60%
// and is restarted with its checkpoint keeps every block whose bytes still
// match (one block is corrupted on disk after the crash and is fetched
// again), and receives only about the missing part.
func TestResumeKeepsCheckpointedBlocks(t *testing.T) {
	file := randBytes(31, 4<<20) // 47 blocks
	w := newResumeWorld(t, file)
	w.start(nil)
	w.runUntil(func() bool { d, tot := w.r.Progress(); return tot > 0 && d >= tot*6/10 })
	rec := w.r.Checkpoint()
	before := w.r.Stats().BytesDone
	w.crash()
	// Corrupt the first block on disk: the checkpoint's CRC must catch it.
	matches, _ := filepath.Glob(filepath.Join(w.dir, ".mcp-*-1.part"))
	if len(matches) != 1 {
		t.Fatalf("temporary files %v, want one", matches)
	}
	f, err := os.OpenFile(matches[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0xfe}, 100)
	f.Close()

	w.start(func(id wire.SessionID) (*checkpoint.Record, error) { return rec, nil })
	w.finish()
	st := w.r.Stats()
	missing := uint64(len(file)) - st.ResumedBytes
	got := uint64(w.heard[w.node]) * 1408
	t.Logf("crashed with %d of %d bytes; resumed %d blocks (%d bytes), %d bad; DATA heard after restart %d bytes for %d missing (%.2fx)",
		before, len(file), st.ResumedBlocks, st.ResumedBytes, st.ResumeBadBlocks, got, missing, float64(got)/float64(missing))
	if st.ResumeBadBlocks != 1 {
		t.Errorf("bad blocks %d, want 1 (the one corrupted on disk)", st.ResumeBadBlocks)
	}
	if st.ResumedBytes+64*1408 < before {
		t.Errorf("resumed %d bytes, want about the %d checkpointed (less one block)", st.ResumedBytes, before)
	}
	if float64(got) > 1.1*float64(missing)+10*1408 {
		t.Errorf("heard %d bytes of DATA after the restart for %d missing; want at most 1.1x", got, missing)
	}
}

// TestResumeTornCheckpoint: a checkpoint that fails to load is not
// trusted; the restarted receiver verifies what is on disk against the
// manifest (a partial file does not verify) and ends byte-exact.
func TestResumeTornCheckpoint(t *testing.T) {
	file := randBytes(32, 2<<20)
	w := newResumeWorld(t, file)
	w.start(nil)
	w.runUntil(func() bool { d, tot := w.r.Progress(); return tot > 0 && d >= tot/2 })
	w.crash()
	torn := errors.New("checkpoint corrupt: checksum mismatch")
	w.start(func(wire.SessionID) (*checkpoint.Record, error) { return nil, torn })
	w.finish()
	if st := w.r.Stats(); st.ResumedBlocks != 0 {
		t.Errorf("resumed %d blocks from a torn checkpoint, want 0", st.ResumedBlocks)
	}
}

// TestResumeCompleteInPlace: a receiver that crashed after its file was in
// place, restarted with that checkpoint, verifies it and is done without
// receiving it again.
func TestResumeCompleteInPlace(t *testing.T) {
	file := randBytes(33, 1<<20)
	w := newResumeWorld(t, file)
	w.start(nil)
	w.runUntil(func() bool { return w.r.Done() })
	rec := w.r.Checkpoint()
	w.crash()
	w.start(func(wire.SessionID) (*checkpoint.Record, error) { return rec, nil })
	w.finish()
	if st := w.r.Stats(); st.ResumedBytes != uint64(len(file)) || st.DataPackets != 0 {
		t.Errorf("resumed %d bytes and took %d data packets; want the whole file from disk and none", st.ResumedBytes, st.DataPackets)
	}
}
