package rmtp_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcp-dev/mcp/rmtp"
)

// TestSessionLimits: a session that declares more than the receiver's
// limits is refused, with a message naming the limit, before the store
// sees its manifest or any byte; within the limits it completes.
func TestSessionLimits(t *testing.T) {
	a, b := randBytes(31, 100_000), randBytes(32, 50_000)
	tests := []struct {
		name  string
		rcfg  rmtp.ReceiverConfig
		files [][]byte
		want  string // in the error; "" = must complete
	}{
		{"within limits", rmtp.ReceiverConfig{MaxFiles: 3, MaxBytes: 150_000, MaxManifestBytes: 4096}, [][]byte{a, b, nil}, ""},
		{"manifest too big", rmtp.ReceiverConfig{MaxManifestBytes: 64}, [][]byte{a}, "raise --max-manifest"},
		{"too many files (from ANNOUNCE)", rmtp.ReceiverConfig{MaxFiles: 1}, [][]byte{a, b}, "2 non-empty files, more than the limit of 1"},
		{"too many files (empty ones count)", rmtp.ReceiverConfig{MaxFiles: 1}, [][]byte{a, nil}, "2 files, more than the limit of 1"},
		{"too many bytes", rmtp.ReceiverConfig{MaxBytes: 120_000}, [][]byte{a, b}, "150000 bytes of files, more than the limit of 120000"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorldR(t, uint64(40+i), 1, rmtp.SenderConfig{}, tt.rcfg, tt.files...)
			if err := w.sim.Run(w.allDone, time.Minute); err != nil {
				t.Fatal(err)
			}
			err := w.receivers[0].Err()
			st := w.stores[0]
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				w.check(t)
				return
			}
			if !errors.Is(err, rmtp.ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrRefused saying %q", err, tt.want)
			}
			if st.M != nil || st.Writes != 0 {
				t.Errorf("the store saw the session (manifest %v, %d writes) before it was refused", st.M != nil, st.Writes)
			}
		})
	}
}
