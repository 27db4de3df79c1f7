package rmtp

import (
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/rmtp/wire"
)

// This file holds what the repair tree needs of a Receiver: a repair
// server (package repairtree) runs one per session to fill its cache and
// reads back what it holds, and a receiver started with --repair auto
// picks its repair server from ADVERTs.

// HaveBlock reports whether block blk of object obj is complete: written
// to the store (object 0, the manifest: known and checked).
func (r *Receiver) HaveBlock(obj, blk uint32) bool {
	if obj == 0 {
		return r.manifest != nil
	}
	if !r.known(obj) {
		return false
	}
	o := &r.objs[obj]
	return blk < o.nblocks && o.isDone(blk)
}

// Announce returns the session's ANNOUNCE body as first heard.
func (r *Receiver) Announce() wire.Announce { return r.ann }

// ObjectSizes returns the size of every object once the manifest is known
// (index 0 is the manifest), else nil.
func (r *Receiver) ObjectSizes() []uint64 {
	if r.manifest == nil {
		return nil
	}
	sizes := make([]uint64, len(r.objs))
	for i := range r.objs {
		sizes[i] = r.objs[i].size
	}
	return sizes
}

// ManifestBytes returns the manifest's encoding once it is known and
// checked, else nil. The caller must not modify it.
func (r *Receiver) ManifestBytes() []byte { return r.manifestRaw }

// GRTT returns the group round-trip time the sender advertises.
func (r *Receiver) GRTT() time.Duration { return r.grtt }

// SetControlGroup changes where NAKs and STATUS go from now on.
func (r *Receiver) SetControlGroup(g netip.AddrPort) { r.cfg.ControlGroup = g }

// ControlGroup returns where NAKs and STATUS go.
func (r *Receiver) ControlGroup() netip.AddrPort { return r.cfg.ControlGroup }

// autoRepairWait is how long after the first ADVERT a receiver with
// AutoRepair goes on listening before it picks: repair servers advertise
// every second (repairtree.DefaultAdvertInterval), so every server on the
// segment has been heard by then.
const autoRepairWait = 1500 * time.Millisecond

type advertHeard struct {
	from   netip.AddrPort
	source uint32
	ad     wire.Advert
}

// better reports whether a is the better repair server: one on the
// receiver's own subnet first (a repair server should sit near its
// receivers), then the deepest in the tree (closest to the leaves, so
// repairs travel least), then the lowest address, so every receiver of a
// site picks the same one.
func (a advertHeard) better(b advertHeard, local netip.Prefix) bool {
	al, bl := local.IsValid() && local.Contains(a.from.Addr()), local.IsValid() && local.Contains(b.from.Addr())
	if al != bl {
		return al
	}
	if a.ad.Depth != b.ad.Depth {
		return a.ad.Depth > b.ad.Depth
	}
	return a.from.Addr().Less(b.from.Addr())
}

func (r *Receiver) noteAdvert(now time.Time, from netip.AddrPort, source uint32, ad *wire.Advert) {
	r.stats.AdvertsHeard++
	if !r.cfg.AutoRepair || r.repairChosen || !ad.Region.IsValid() || !ad.Region.Addr().IsMulticast() {
		return
	}
	h := advertHeard{from: from, source: source, ad: *ad}
	if !r.repairHeard {
		r.repairHeard, r.repairBest = true, h
		r.repairPickAt = now.Add(autoRepairWait)
		return
	}
	if h.better(r.repairBest, r.cfg.LocalPrefix) {
		r.repairBest = h
	}
}

// pickRepair settles the choice of repair server once the wait is over.
func (r *Receiver) pickRepair(now time.Time) {
	if !r.repairHeard || r.repairChosen || now.Before(r.repairPickAt) {
		return
	}
	r.repairChosen = true
	g := r.repairBest.ad.Region
	r.cfg.ControlGroup = netip.AddrPortFrom(g.Addr(), g.Port()+1)
	r.cfg.Logger.Info("repair server chosen", "region", g, "peer", r.repairBest.from, "depth", r.repairBest.ad.Depth)
}

// RepairServer returns the region group of the repair server picked with
// AutoRepair, once picked: the driver then joins it to hear repairs.
func (r *Receiver) RepairServer() (netip.AddrPort, bool) {
	if !r.repairChosen {
		return netip.AddrPort{}, false
	}
	return r.repairBest.ad.Region, true
}
