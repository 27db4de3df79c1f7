package rmtp

import (
	"testing"
	"time"
)

// TestLossReportQuietForTwoPeers: under rate auto and policy leave a
// receiver keeps its loss report to itself only once two peers have
// reported as much within the interval (the sender tells shared loss by
// a second receiver's report, autorate.go); under policy wait one
// peer's report is enough.
func TestLossReportQuietForTwoPeers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name       string
		wait       bool
		afterOne   uint64 // reports sent after one peer's report
		afterTwo   uint64 // and after a second peer's
		afterAgain uint64 // and after the first peer's again, past the interval
	}{
		{"auto, leave", false, 1, 1, 2},
		{"auto, wait", true, 0, 0, 0},
	} {
		r, err := NewReceiver(ReceiverConfig{ControlGroup: testFrom}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.auto, r.wait, r.lossHello = true, tc.wait, true
		r.heardLoss(t0, 7, 300)
		r.reportLoss(t0.Add(10*time.Millisecond), 200)
		if got := r.stats.LossReportsSent; got != tc.afterOne {
			t.Errorf("%s: %d reports after one peer's report of more loss, want %d", tc.name, got, tc.afterOne)
		}
		r.heardLoss(t0.Add(20*time.Millisecond), 8, 300)
		r.reportLoss(t0.Add(30*time.Millisecond), 200)
		if got := r.stats.LossReportsSent; got != tc.afterTwo {
			t.Errorf("%s: %d reports after two peers' reports of more loss, want %d", tc.name, got, tc.afterTwo)
		}
		at := t0.Add(20*time.Millisecond + lossInterval + time.Millisecond)
		r.heardLoss(at, 7, 300)
		r.reportLoss(at.Add(10*time.Millisecond), 200)
		if got := r.stats.LossReportsSent; got != tc.afterAgain {
			t.Errorf("%s: %d reports after one peer's report in the next interval, want %d", tc.name, got, tc.afterAgain)
		}
	}
}
