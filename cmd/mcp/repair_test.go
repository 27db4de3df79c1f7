package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRepairCommand runs "mcp repair" on the loopback interface with a
// receiver that names it (--repair IP:PORT) and one that finds it from
// its ADVERTs (--repair auto), sends a file with --expect 2, scrapes the
// server's metrics, and stops it the way SIGINT does.
func TestRepairCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("uses multicast on the loopback interface")
	}
	group := loopbackGroup(t)
	region := strings.Replace(group, "239.255.78.1", "239.255.78.2", 1)
	metrics := freePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var rout, rerr bytes.Buffer
	repaired := make(chan int, 1)
	go func() {
		repaired <- run(ctx, []string{"repair", "--interface", "lo", "--ttl", "0", "--group", group, "--serve", region,
			"--cache-dir", t.TempDir(), "--metrics", metrics, "--json"}, &rout, &rerr)
	}()
	src, data := writeTestFile(t, 2<<20+5)
	dirs := []string{t.TempDir(), t.TempDir()}
	named := startReceive(t, "--interface", "lo", "--ttl", "0", "--group", group, "--dir", dirs[0], "--repair", region, "--json")
	auto := startReceive(t, "--interface", "lo", "--ttl", "0", "--group", group, "--dir", dirs[1], "--repair", "auto", "--json")
	// --repair auto listens 1.5 s after the first ADVERT (one a second).
	time.Sleep(3 * time.Second)
	stdout, stderr, code := execute(t, 30*time.Second, "send", "--interface", "lo", "--group", group, "--ttl", "0",
		"--expect", "2", "--timeout", "20s", "--state-dir", "none", "--json", src)
	if code != exitOK {
		t.Fatalf("send: exit code %d, stderr:\n%s", code, stderr)
	}
	for i, done := range []<-chan cmdResult{named, auto} {
		if r := waitReceive(t, done); r.code != exitOK {
			t.Fatalf("receiver %d: exit code %d, stderr:\n%s", i, r.code, r.stderr)
		}
		got, err := os.ReadFile(filepath.Join(dirs[i], "payload.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("receiver %d: copy differs (%v)", i, err)
		}
	}
	var sum struct {
		Report struct {
			Stats struct {
				Regions []struct {
					Server, Region   string
					Complete, Failed uint64
				} `json:"regions"`
			} `json:"stats"`
		} `json:"report"`
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("send summary: %v\n%s", err, stdout)
	}
	regions := sum.Report.Stats.Regions
	t.Logf("sender's regions: %+v", regions)
	if len(regions) != 1 || regions[0].Server == "" || regions[0].Region != region || regions[0].Complete != 2 {
		t.Errorf("regions %+v: want both receivers counted through the repair server of %s", regions, region)
	}
	var m string
	waitFor(t, 5*time.Second, "the repair server's metrics to count two receivers", func() bool {
		m = scrape(t, metrics)
		return strings.Contains(m, `mcp_repair_receivers_total{result="complete"} 2`)
	})
	for _, want := range []string{"mcp_repair_sessions_total 1", "mcp_repair_naks_heard_total", "mcp_repair_naks_forwarded_total",
		"mcp_repair_naks_suppressed_total", "mcp_repair_repair_packets_total", "mcp_repair_cache_bytes", "mcp_repair_packets_total"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cancel()
	select {
	case code := <-repaired:
		if code != exitOK {
			t.Fatalf("repair stopped with exit code %d, want 0; stderr:\n%s", code, rerr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("repair did not stop")
	}
	var doc struct {
		Event string
		OK    bool
		Stats struct {
			SessionsTotal     uint64 `json:"sessions_total"`
			ReceiversComplete uint64 `json:"receivers_complete"`
		}
	}
	rl := strings.Split(strings.TrimSpace(rout.String()), "\n")
	var events []string
	for _, l := range rl {
		var e struct{ Event, Time, Session string }
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Time == "" {
			t.Errorf("repair --json line %q: %v (want JSON with time and event)", l, err)
		}
		events = append(events, e.Event)
	}
	if got := strings.Join(events, " "); got != "session_caching session_cached summary" {
		t.Errorf("repair events %q, want session_caching session_cached summary", got)
	}
	if err := json.Unmarshal([]byte(rl[len(rl)-1]), &doc); err != nil || doc.Event != "summary" || !doc.OK ||
		doc.Stats.SessionsTotal != 1 || doc.Stats.ReceiversComplete != 2 {
		t.Errorf("repair summary %+v (%v), want ok with 1 session and 2 receivers:\n%s", doc, err, rout.String())
	}
}
