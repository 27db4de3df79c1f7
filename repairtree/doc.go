// Package repairtree is mcp's repair server (DESIGN.md, "Repair tree"):
// it joins upstream as a receiver, caches every object of every session
// to disk, serves a region group, answers its region's NAKs from the
// cache with fresh parity or retransmission, NAKs upstream only for what
// it lacks itself (once for the whole region), rolls its region's
// completion reports up into one STATUS, and in relay mode re-multicasts
// the stream into a region the data group does not reach.
//
// It owns caching, region state and aggregation. The wire format, NAK
// slotting and damping, the repair rules (rmtp.Repairer), pacing and the
// socket driver are rmtp's and are reused, not copied: the server's
// upstream side is an rmtp.Receiver per session, its region side an
// rmtp.Repairer per session.
//
// Addresses. A group G:P always has its feedback (NAK, STATUS, ADVERT)
// on G:P+1, as in rmtp. A server with --serve R:Q multicasts repairs (and
// the ANNOUNCE and TAIL of sessions whose sender has gone) to R:Q, and
// hears its receivers' NAKs and reports on R:Q+1. Its --upstream U:V is
// the data group (default) or a parent server's region group: it hears
// repairs on U:V and NAKs to U:V+1, where sibling servers hear it and
// stay quiet (damping). With --relay, --upstream is the unicast address
// of a parent that accepts relay subscribers: the whole stream arrives
// over that link and is re-multicast to R:Q, whose receivers use R:Q as
// their data group.
//
// Decisions taken where the design is silent, and why:
//
//   - A server ADVERTs every second on the data group's feedback address
//     (where receivers with --repair auto listen), on its upstream
//     feedback (where its parent learns its region, for per-region
//     counts) and on its own region's feedback (where servers below learn
//     their depth). A server below whose ADVERT (on this server's region
//     feedback) has its depth wrong started after this server's last
//     ADVERT or lost it: this one then ADVERTs within 100 ms, not at the
//     next period (childAdvert). In relay mode the ADVERT sent to the
//     parent's unicast address is also the subscription, renewed every
//     second.
//   - A receiver with --repair auto picks, 1.5 s after the first ADVERT,
//     the server on its own subnet, then the deepest, then the lowest
//     address, so receivers of one site agree (rmtp/receiver_tree.go).
//   - Region NAKs for blocks the server lacks are counted (naks_lacking)
//     and not forwarded: the server's own receiver has detected the same
//     loss and NAKs upstream once for the whole region; the receivers ask
//     again after their hold-off and are then answered from the cache.
//   - The server's upstream receiver never reports its own completion:
//     it is no end receiver. Its region's counts go upstream as one
//     STATUS with the aggregate flag, repeated three times, each time
//     they change.
//   - Congestion reports from the region are not forwarded: a slow
//     receiver behind a repair server finishes from the cache and does
//     not slow the sender for everyone else (DESIGN.md, "Rate and slow
//     receivers": the default policy).
//   - Once a session's upstream has been silent for a second, the server
//     announces it in its region every second (ANNOUNCE and an
//     end-of-stream TAIL), so receivers that join after the sender left
//     learn of it and NAK everything from the cache.
//   - Caches are files named by object number under the cache directory,
//     never by manifest paths. A session is forgotten, and its cache
//     removed, an hour after the last packet or NAK for it (SessionTTL).
//   - Every second the checkpoint of each session whose cache grew is
//     saved beside it (persist.go), objects fsynced first. A restarted
//     server reads every block its checkpoints name back, keeps those
//     whose CRC-32C matches, serves them at once and announces the
//     sessions in its region; a session folder without a usable
//     checkpoint is removed, never served.
package repairtree
