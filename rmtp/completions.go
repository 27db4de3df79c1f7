package rmtp

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// RegionCount is how many receivers of one region reported. Server is the
// repair server's source ID in hex ("" for receivers that report to this
// node directly) and Region the group it serves, when its ADVERT was
// heard.
type RegionCount struct {
	Server   string `json:"server"`
	Region   string `json:"region,omitempty"`
	Complete uint64 `json:"complete"`
	Failed   uint64 `json:"failed"`
}

// maxReporters bounds the sources a Completions table remembers, so
// forged reports from random source IDs cost memory only up to a limit.
const maxReporters = 1 << 20

type report struct {
	complete, failed uint32
	aggregate        bool
}

// Completions counts completion reports (STATUS) by source, once each: a
// receiver counts as one complete or failed receiver, whatever how often
// it repeats its report; a repair server's aggregate report
// (wire.StatusAggregate) counts every receiver below it and replaces its
// previous one (DESIGN.md, "STATUS ... aggregated up the tree"). The
// sender keeps one for the whole tree, every repair server one for its
// region.
type Completions struct {
	bySource map[uint32]report
	regions  map[uint32]netip.AddrPort
	complete uint64
	failed   uint64
}

// Note records a STATUS from source and reports whether the totals
// changed. Progress and congestion reports of a receiver change nothing.
func (c *Completions) Note(source uint32, st *wire.Status) bool {
	if c.bySource == nil {
		c.bySource = make(map[uint32]report)
	}
	var r report
	switch {
	case st.Flags&wire.StatusConfirm != 0:
		return false // a confirmation of a report, not one
	case st.Flags&wire.StatusAggregate != 0:
		r = report{complete: st.Complete, failed: st.Failed, aggregate: true}
	case st.State == wire.StateComplete:
		r = report{complete: 1}
	case st.State == wire.StateFailed:
		r = report{failed: 1}
	default:
		return false
	}
	prev, seen := c.bySource[source]
	if seen && prev == r {
		return false
	}
	if !seen && len(c.bySource) >= maxReporters {
		return false
	}
	c.bySource[source] = r
	c.complete += uint64(r.complete) - uint64(prev.complete)
	c.failed += uint64(r.failed) - uint64(prev.failed)
	return true
}

// SetRegion records which region a repair server serves (from its ADVERT).
func (c *Completions) SetRegion(source uint32, region netip.AddrPort) {
	if c.regions == nil {
		c.regions = make(map[uint32]netip.AddrPort)
	}
	if _, ok := c.regions[source]; ok || len(c.regions) < maxReporters {
		c.regions[source] = region
	}
}

// Totals returns the receivers that reported complete and failed.
func (c *Completions) Totals() (complete, failed uint64) { return c.complete, c.failed }

// Regions returns the counts per region: receivers that report here
// directly first (Server ""), then each repair server by source ID.
func (c *Completions) Regions() []RegionCount {
	var direct RegionCount
	var out []RegionCount
	for src, r := range c.bySource {
		if !r.aggregate {
			direct.Complete += uint64(r.complete)
			direct.Failed += uint64(r.failed)
			continue
		}
		rc := RegionCount{Server: fmt.Sprintf("%08x", src), Complete: uint64(r.complete), Failed: uint64(r.failed)}
		if g, ok := c.regions[src]; ok {
			rc.Region = g.String()
		}
		out = append(out, rc)
	}
	slices.SortFunc(out, func(a, b RegionCount) int { return cmp.Compare(a.Server, b.Server) })
	if direct.Complete+direct.Failed > 0 || len(out) == 0 {
		out = append([]RegionCount{direct}, out...)
	}
	return out
}
