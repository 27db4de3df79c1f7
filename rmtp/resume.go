package rmtp

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"time"

	"github.com/mcp-dev/mcp/checkpoint"
	"github.com/mcp-dev/mcp/rmtp/wire"
)

// Receiver resume (DESIGN.md, "Checkpoints"). A receiver's driver saves
// Receiver.Checkpoint every so often, after making the data it names
// durable. When a restarted receiver adopts the same session, it asks
// ReceiverConfig.Resume for that record, takes the manifest from it (no
// need to receive object 0 again), reads every block the record names
// back from the store and keeps only those whose CRC-32C still matches,
// and NAKs the rest like any loss. A torn or foreign record is not
// trusted at all: once the manifest has come again from the network,
// whole files already on disk are checked against the manifest's SHA-256
// and kept only if they match.

// ResumableStore is a Store that can take up a session's files where an
// earlier run left them.
type ResumableStore interface {
	Store
	// PrepareResume is Prepare for a session taken up again: files of
	// objects not in place are kept, not truncated. committed says which
	// objects the checkpoint has in place under their final names; nil
	// means no checkpoint could be trusted, and the store then offers a
	// final file of the right size as in place, for the receiver to
	// verify.
	PrepareResume(session wire.SessionID, m *wire.Manifest, committed func(obj uint32) bool) error
	// InPlace reports whether object obj is read from its final name.
	InPlace(obj uint32) bool
	// Forget drops what the store holds for obj (it did not verify): its
	// next write starts a fresh temporary file.
	Forget(obj uint32) error
}

// Checkpoint returns a record of what the receiver has written: the
// session, its ANNOUNCE and manifest, and per object the blocks complete
// and their CRC-32C. Nil before the manifest is known. The caller makes
// the data durable (Sync) before saving the record.
func (r *Receiver) Checkpoint() *checkpoint.Record {
	if r.manifest == nil || r.manifestRaw == nil {
		return nil
	}
	rec := &checkpoint.Record{
		Kind:     checkpoint.KindReceiver,
		Session:  r.session,
		Announce: r.ann.Append(nil),
		Manifest: r.manifestRaw,
		Objects:  make([]checkpoint.Object, len(r.objs)),
	}
	for i := 1; i < len(r.objs); i++ {
		o := &r.objs[i]
		rec.Objects[i] = checkpoint.Object{
			Committed: o.committed,
			Blocks:    o.nblocks,
			Done:      append([]uint64(nil), o.done...),
			CRC:       append([]uint32(nil), o.crc...),
		}
	}
	return rec
}

// resume asks for the session's checkpoint right after the ANNOUNCE
// adopted the session.
func (r *Receiver) resume(now time.Time) {
	if r.cfg.Resume == nil || r.err != nil {
		return
	}
	rec, err := r.cfg.Resume(r.session)
	if err == nil && rec != nil {
		err = r.checkRecord(rec)
	}
	if err != nil {
		r.cfg.Logger.Warn("checkpoint not used: files on disk will be checked against the manifest, not trusted",
			"session", r.session, "err", err)
		r.verifyDisk = true
		return
	}
	if rec == nil {
		return
	}
	r.resumeRec = rec
	r.manifestBuf = bytes.Clone(rec.Manifest)
	o := &r.objs[0]
	for b := range o.nblocks {
		o.done[b>>6] |= 1 << (b & 63)
	}
	o.ndone = o.nblocks
	r.manifestDone(now)
}

// hasCheckpoint reports whether a checkpoint of session id exists: a
// receiver restarted with the same flags takes up its own session from a
// repair server's cache, though it would ignore other cached sessions.
func (r *Receiver) hasCheckpoint(id wire.SessionID) bool {
	if r.cfg.Resume == nil {
		return false
	}
	rec, err := r.cfg.Resume(id)
	return err == nil && rec != nil
}

// checkRecord checks that a checkpoint belongs to the session announced.
func (r *Receiver) checkRecord(rec *checkpoint.Record) error {
	switch {
	case rec.Kind != checkpoint.KindReceiver:
		return fmt.Errorf("checkpoint of kind %d, not a receiver's", rec.Kind)
	case rec.Session != r.session:
		return fmt.Errorf("checkpoint of session %x, not %s", rec.Session, r.session)
	case sha256.Sum256(rec.Manifest) != r.ann.ManifestHash:
		return fmt.Errorf("checkpoint's manifest does not match the announced SHA-256")
	case len(rec.Objects) != len(r.objs):
		return fmt.Errorf("checkpoint has %d objects, the session %d", len(rec.Objects), len(r.objs))
	}
	return nil
}

// prepare is Store.Prepare, or PrepareResume when the session is taken
// up again.
func (r *Receiver) prepare(m *wire.Manifest) error {
	rs, ok := r.store.(ResumableStore)
	if !ok || (r.resumeRec == nil && !r.verifyDisk) {
		return r.store.Prepare(r.session, m)
	}
	if r.resumeRec == nil {
		return rs.PrepareResume(r.session, m, nil)
	}
	rec := r.resumeRec
	return rs.PrepareResume(r.session, m, func(obj uint32) bool {
		return int(obj) < len(rec.Objects) && rec.Objects[obj].Committed
	})
}

// restore marks what survived the crash as done, once the objects are
// laid out: blocks the checkpoint names whose bytes read back with the
// same CRC-32C, or, without a trusted checkpoint, whole files whose
// SHA-256 matches the manifest. Objects found complete are committed.
func (r *Receiver) restore() {
	rs, ok := r.store.(ResumableStore)
	if !ok || (r.resumeRec == nil && !r.verifyDisk) {
		return
	}
	rec := r.resumeRec
	buf := r.getBlock()
	defer func() { r.blockPool = append(r.blockPool, buf) }()
	entries := FileObjects(r.manifest)
	for obj := uint32(1); int(obj) < len(r.objs); obj++ {
		o := &r.objs[obj]
		var co *checkpoint.Object
		if rec != nil {
			if co = &rec.Objects[obj]; co.Blocks != o.nblocks {
				r.cfg.Logger.Warn("checkpoint object has another layout; receiving it again", "session", r.session, "object", obj)
				r.forget(rs, obj)
				continue
			}
			if co.DoneCount() == 0 {
				continue
			}
		}
		o.hash = sha256.New()
		for blk := range o.nblocks {
			if co != nil && !co.IsDone(blk) {
				continue
			}
			n := r.lay.blockBytes(o.size, blk)
			if err := r.store.ReadAt(obj, buf[:n], int64(r.lay.blockOffset(blk))); err != nil {
				if co != nil {
					r.stats.ResumeBadBlocks++
				}
				break // a short file: the rest is not there either
			}
			crc := checkpoint.CRC(buf[:n])
			if co != nil && crc != co.CRC[blk] {
				r.stats.ResumeBadBlocks++
				continue
			}
			o.done[blk>>6] |= 1 << (blk & 63)
			o.crc[blk] = crc
			o.ndone++
			r.stats.BytesDone += uint64(n)
			r.stats.ResumedBlocks++
			r.stats.ResumedBytes += uint64(n)
			if blk == o.hashNext {
				o.hash.Write(buf[:n])
				o.hashNext++
			}
		}
		if co == nil {
			// Only whole files whose SHA-256 matches count.
			var sum [32]byte
			if o.ndone == o.nblocks {
				o.hash.Sum(sum[:0])
			}
			if o.ndone != o.nblocks || sum != r.manifest.Entries[entries[obj-1]].SHA256 {
				r.forget(rs, obj)
				continue
			}
		}
		if o.ndone != o.nblocks {
			continue
		}
		if rs.InPlace(obj) && co != nil {
			// In place and every block matched its checksum.
			o.hash = nil
			o.committed = true
			r.committed++
			continue
		}
		r.commit(obj) // checks the SHA-256; in place ones are then kept
		if r.err != nil {
			return
		}
	}
	if r.stats.ResumedBlocks > 0 || r.stats.ResumeBadBlocks > 0 {
		r.cfg.Logger.Info("resumed from checkpoint", "session", r.session, "blocks", r.stats.ResumedBlocks,
			"bytes", r.stats.ResumedBytes, "bad_blocks", r.stats.ResumeBadBlocks, "verified_whole_files", rec == nil)
	}
	r.checkDone()
}

// forget clears what restore counted of an object, and the store's copy.
func (r *Receiver) forget(rs ResumableStore, obj uint32) {
	o := &r.objs[obj]
	for blk := range o.nblocks {
		if o.isDone(blk) {
			n := uint64(r.lay.blockBytes(o.size, blk))
			r.stats.BytesDone -= n
			r.stats.ResumedBlocks--
			r.stats.ResumedBytes -= n
		}
	}
	clear(o.done)
	o.ndone, o.hashNext, o.hash = 0, 0, nil
	if err := rs.Forget(obj); err != nil {
		r.fail(err)
	}
}

// Restore takes up a session from a checkpoint at once, without waiting
// for an ANNOUNCE: a repair server restarted after the sender left still
// has every session it cached. It fails if the record cannot be used.
func (r *Receiver) Restore(now time.Time, rec *checkpoint.Record) error {
	if r.haveSession {
		return fmt.Errorf("receiver: restore: a session is already adopted")
	}
	var p wire.Packet
	if err := p.Announce.Parse(rec.Announce); err != nil {
		return fmt.Errorf("checkpoint's ANNOUNCE: %w", err)
	}
	p.Type, p.Session = wire.TypeAnnounce, rec.Session
	resume := r.cfg.Resume
	r.cfg.Resume = func(wire.SessionID) (*checkpoint.Record, error) { return rec, nil }
	r.HandlePacket(now, netip.AddrPort{}, &p)
	r.cfg.Resume = resume
	switch {
	case r.err != nil:
		return r.err
	case r.resumeRec == nil:
		return fmt.Errorf("checkpoint of session %x was not taken up", rec.Session)
	}
	return nil
}
