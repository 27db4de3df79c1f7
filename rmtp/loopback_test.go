package rmtp

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLoopbackTransfer sends a file to two receivers over multicast on the
// loopback interface (never another interface) and compares the copies.
func TestLoopbackTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("uses real sockets")
	}
	src := t.TempDir()
	data := make([]byte, 5<<20+123)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(src, "f.bin"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	port := 20000 + uint16(rng.IntN(20000))
	group := netip.AddrPortFrom(netip.MustParseAddr("239.255.90.1"), port)
	net := NetConfig{Interface: "lo", Group: group, TTL: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dirs := []string{t.TempDir(), t.TempDir()}
	errs := make(chan error, len(dirs))
	for _, d := range dirs {
		go func() {
			rep, err := Receive(ctx, ReceiveOptions{Net: net, Dir: d})
			t.Logf("receiver: %+v", rep)
			errs <- err
		}()
	}
	time.Sleep(200 * time.Millisecond) // receivers join before the first packet; late joins are tested elsewhere
	rep, err := Send(ctx, SendOptions{Net: net, Paths: []string{filepath.Join(src, "f.bin")},
		Sender: SenderConfig{Linger: 500 * time.Millisecond, RateBitsPerSec: 400e6}})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	t.Logf("sender: %+v", rep)
	for range dirs {
		if err := <-errs; err != nil {
			t.Fatalf("receive: %v", err)
		}
	}
	for _, d := range dirs {
		got, err := os.ReadFile(filepath.Join(d, "f.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("copy in %s differs", d)
		}
	}
}
