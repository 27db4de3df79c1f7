// Package rmtp is mcp's protocol: the sender and receiver engines, NAK
// slotting and damping, repair, pacing, the GRTT estimate, the batched
// multicast sockets, the file store, and the drivers Send and Receive that
// run the engines over real sockets.
//
// The engines (Sender, Receiver) are plain state machines: their methods
// take the current time and one input, queue what to send, and report
// when they next need a call. They start no goroutines, read no clock and
// touch no socket, so rmtp/rmtptest drives them deterministically. The
// drivers own the sockets: one goroutine runs the engine, reader
// goroutines hand it batches of datagrams, and every packet is decoded by
// package wire before the engine sees it.
//
// It does not own the wire format (rmtp/wire), Reed-Solomon coding (fec),
// the CLI (cmd/mcp), the repair server (repairtree) or the checkpoint
// format (checkpoint). Keys are here: keys.go (the key file), seal.go (sealing and opening packets),
// nakguard.go (per-source NAK limits).
//
// Protocol rules and where they come from (DESIGN.md, "Reliability"):
//
//   - A block is due once first-pass DATA of a later block, or a TAIL
//     naming a later position, shows the sender has moved past it.
//   - NAK slots are drawn from a truncated exponential over BackoffFactor
//     GRTTs with lambda = ln(GroupSizeEstimate)+1 (RFC 5740 section
//     5.5.1). A receiver that hears a peer's NAK asking for at least as
//     many symbols of a block cancels its own; either way it waits a
//     hold-off before asking again.
//   - The sender gathers NAKs per block for one slot window (the XTP
//     bucket) and answers the largest need with parity symbols never sent
//     before for that block; once parity is exhausted (k+parity <= 256)
//     it retransmits the source symbols the NAK masks name.
//   - Repairs share the rate with new data, taking at most RepairShare of
//     it while new data waits.
//
// Decisions taken where the design is silent, and why:
//
//   - Blocks are 128 source symbols by default (DefaultK; --fec-k). The
//     parity a group needs per block is the worst receiver's loss in it,
//     which over more symbols lies closer to the mean: at 5% loss to 8
//     receivers k = 64 costs 1.098x the file in a simulation of the NAK
//     rounds and k = 128 1.084x (measured, headers included: 1.120x and
//     1.106x), and the 5% cells ran 4-12% faster. The cost is the rebuild
//     of a block that lost much (fec: e×e elimination on vector rows;
//     20% lost at k = 128 is 148 µs a block) and that a block rebuilt
//     from parity alone needs all 128 parity symbols, after which
//     source symbols are retransmitted.
//   - Feedback (NAK, STATUS) goes to the data group's address on port+1,
//     so the sender never reads its own data stream back and receivers read
//     peers' NAKs on a socket of their own.
//   - --interface is required: on a multi-homed host there is no safe
//     default, and the wrong one sends a fleet's data onto the wrong LAN.
//   - The NAK slot window is 6 GRTTs and the group-size estimate 1000
//     (RFC 5740 suggests 4): measured in simulation, 100 receivers losing
//     the same symbol let 2.0 NAKs through on average instead of 3.9.
//   - A receiver's hold-off doubles while its NAKs for a block go
//     unanswered (at most 4x, and at most MaxHoldoff: 40 GRTTs, at most 10 s); the sender
//     lingers at least twice that, so nobody is left asking a sender that
//     has gone. After the first pass (TAIL with TailEnd) it no longer
//     doubles, except at a receiver that left the pass under policy
//     leave: the sender then sends only repairs, and the doubled wait
//     held up the last blocks.
//   - A NAK asks for exactly what a block misses, except while the
//     receiver's window of incomplete blocks is more than half full
//     (MarginFill) during the first pass: then it asks for a margin on
//     top (repairMargin, at its first-pass loss), so the repair
//     completes the block in one round about 19 times in 20. A second
//     round costs hold-offs during which new data keeps arriving, and a
//     full window drops it whole; with room in the window the margin
//     would only add bytes. Damping compares a peer's need with the one
//     this receiver would send, margin included.
//   - Receivers keep (up to 4 MiB of) packets heard before the first
//     ANNOUNCE and replay them, and the first three ANNOUNCEs go out 2 ms
//     apart, so one lost ANNOUNCE does not cost the start of the stream.
//   - STATUS echoes the sender's timestamp with the time it was held,
//     stamped when sent, so finishing a file (fsync, rename) is not taken
//     for network delay.
//   - The data socket reader waits 1 ms after a short batch, so recvmmsg
//     returns many packets per wakeup; the feedback socket is read at once.
//     A receiver's data and repair-region sockets are polled outside the
//     Go runtime's poller (polled.go): in its epoll set every datagram
//     that arrived during that wait woke a runtime thread, in the
//     sender's context on one host (11% of the lab's CPU at 8 receivers).
//   - System calls that never block (recvmmsg and sendmmsg with
//     MSG_DONTWAIT, SO_MEMINFO) and a receiver's block writes, which its
//     engine waits for anyway, are made raw (unix.RawSyscall6, mmsgCall,
//     store.go's pwrite): through syscall.Syscall each long one let the
//     runtime's monitor hand the processor to a thread that, with
//     GOMAXPROCS=1, found nothing to do (polled.go, "Raw system calls":
//     the monitor was 6.9% of a receiver's CPU in the lab, 1.9% after).
//   - Files are written whole-block at a time into a preallocated
//     temporary file in their final directory, hashed in order as blocks
//     complete, fsynced and renamed only after the SHA-256 matches; all
//     file operations go through an os.Root on the destination. Modes are
//     masked to 0777. Symlinks and special files are not sent.
//   - The sender hashes every file before its first packet (the session
//     ID comes from the manifest, which holds the hashes), and with
//     SendOptions.HashCacheDir keeps the hash of each file of 8 MiB or
//     more, used again while the file's inode, size, mtime and ctime are
//     unchanged (hashcache.go; mcp send keeps it in --state-dir/sha256).
//   - The pacer holds 20 ms of tokens: a sender sharing its cores with
//     receivers is often descheduled for several milliseconds, and a
//     smaller bucket lost most of the rate in the namespace lab.
//   - --rate is a cap, not a promise. Receivers sample their data
//     socket every 5 ms (SO_MEMINFO: queue fill and kernel drops) and,
//     when it overflows or is over 25% full and growing, multicast a
//     STATUS with StatusCongested; a peer that hears one stays quiet for
//     max(GRTT, 10 ms). The sender cuts its rate to 85% for a queue that
//     is only filling and to 75% for one that overflowed (StatusWindow,
//     below), at most once per 20 ms + 2 GRTT, and climbs back by 25% of
//     the cap per second, never below cap/64 (ratectl.go). Loss on the
//     network does not slow it down: that is repaired, not paced.
//     Without this, receivers that
//     cannot keep up NAK what their own sockets dropped, the repairs add
//     load, and the group collapses. SenderConfig.FixedRate turns it off.
//   - A receiver in the first pass whose window of incomplete blocks is
//     over 75% full (windowCongestFill) reports congestion the same way,
//     with StatusWindow, which only a peer's StatusWindow report keeps
//     quiet and which the sender answers with the 75% cut. A block
//     that finds the window full spills: its source symbols are written
//     to their place in the file and read back when it gets room
//     (Receiver.spill), so it needs only its missing symbols repaired;
//     only parity for such a block is dropped (window_full). One
//     that left the first pass (policy leave) does not. The window is 48
//     MiB by default (DefaultWindowBytes).
//   - The sender's socket has IP_RECVERR or IPV6_RECVERR
//     (SocketConfig.LocalDrops): a datagram its own interface queue
//     drops fails with ENOBUFS, counts as sent and lost. The first drop
//     starts a sample; after 128 more datagrams and 2 ms the sender
//     cuts its rate to what the queue took (the lower of the rate it
//     took over the episode of drops, across earlier cuts, or over the
//     sample if the episode began later, and the share of the sample's
//     datagrams not dropped), to 0.85 at least; the next sample may cut
//     again at once if the rate is still over what the queue took, and
//     otherwise only 20 ms after the last cut (Sender.NoteLocalDrops):
//     that loss is the sender's, the same at
//     every receiver, and under policy leave every receiver left the
//     first pass for it. It remembers the rate of that drop (CUBIC's
//     last-loss window): within 10% under it the rate climbs slowly,
//     and 10% past it without a drop it is forgotten (localCeilBand).
//     The pacer starts with 64 packets' worth of tokens, not its 20 ms
//     burst, so the start does not overflow the queue by itself.
//   - The driver writes at most 4 batches before it reads feedback again,
//     and measures its sleep from the clock after writing: a CPU-bound
//     sender that wrote until its pacer ran dry read no NAK for seconds,
//     which the GRTT estimate took for a 1.2 s round trip.
//   - Confirmed mode (SenderConfig.Expect) ends the sender when Expect
//     receivers have reported, not on linger. A receiver sends its
//     completion report up to three times, 4 GRTTs (20-250 ms) apart;
//     the sender counts a source once. When it has all Expect, its last
//     TAIL carries TailConfirmed, and receivers that are complete stop
//     repeating and exit then (121 ms after completing in the lab before,
//     4 ms with it).
//   - The node a receiver reports to (the sender, on the data group, or
//     the repair server of its region, on the region group) confirms
//     every completion report it hears, a repeat too: a STATUS with
//     wire.StatusConfirm naming the receiver's source ID in Complete. The
//     receiver named stops repeating and exits. Without it, receivers
//     that finished while the sender still waited for others (a slow
//     receiver, or anonymous receivers) waited out their repeats: in the
//     lab's one-slow-receiver case (8 receivers on two cores, GRTT 25-50
//     ms) the seven healthy ones exited 100-200 ms after their copies
//     were in place, and 2-5 ms with the confirmation. Receivers before
//     it drop the confirmation as malformed (an unknown flag) and repeat
//     as before.
//   - The GRTT estimate moves each interval (50-500 ms, at least 3
//     samples) to the interval's 75th percentile, at most doubling, down
//     by a quarter of the gap (grtt.go): a peak-hold estimate followed
//     the echoes of descheduled processes and stretched every NAK timer.
//   - Slow receivers (slowpolicy.go), SenderConfig.SlowPolicy: leave (the
//     default) lets a receiver that loses LeaveLoss (10%) of the first
//     pass over 3 intervals in a row (or twice that over two; a single
//     burst over 10% or 20% no longer counts) put its repairs off until the
//     pass ends and then be repaired
//     at what its path took; wait paces the session to the slowest
//     receiver's reported loss, starting slow. The loss reported is the
//     loss over the receiver's floor (lossmodel.go): loss that a lower
//     rate does not cure (a bad link) is repaired, never paced, so one
//     host with 30% random loss no longer drags the group down.
//   - Rate auto (--rate auto, SenderConfig.AutoRate; ratectl.go,
//     autorate.go): no cap but a ceiling (10 Gbit/s, or auto:R). The
//     sender starts at 10 Mbit/s, slow-starts 1.5x per 150 ms, cuts on
//     loss over the receivers' floors by at least 15% (TCP on the same
//     link halves), climbs 5% of its rate per second after a cut, 10%/s
//     faster for every second without one, and never past 1.5x what it
//     managed to send. Under leave a receiver that alone reports loss (2
//     reports in a row, nobody else within 2 s, at least 2 receivers
//     known: each says it is there with a first report) is not paced to;
//     the first report of such a run is not acted on, the next decides
//     (another receiver's: shared, cut; the same one's: ignored), and a
//     receiver keeps quiet for two peers' reports, not one.
//     It leaves the first pass as the rate climbs past its path (3
//     intervals over LeaveLoss above its floor while the rate did not
//     fall).
//   - --rate counts each packet's IP, UDP and Ethernet headers and FCS
//     (WireOverhead), so that --rate 1G fits a 1 Gbit/s link.
//   - The design makes proactive parity optional; mcp send sends it by
//     default in reliable and confirmed modes, chosen per block
//     (SenderConfig.ProactiveAuto, proactive.go): the 10% quantile of the
//     group's worst loss per block, learnt from the NAKs, none without
//     loss. The group pays for its worst receiver's loss per block
//     anyway; sent with the block, most receivers complete it without a
//     NAK round (8 receivers at 5%: half the NAKs, the same symbols, the
//     lab's 1% and 5% cells 5-14% faster). ANNOUNCE's Proactive keeps
//     parity indices 0..31 for it, so repairs start above them; the
//     library's zero SenderConfig sends none.
//
// Security decisions (issue 5; README "Security" has the threat model):
//
//   - With NetConfig.Key every packet is sealed with AES-256-GCM (header
//     and auth block authenticated, body encrypted) under a key derived
//     per sealer with HKDF-SHA256 from the pre-shared key and a random
//     16-byte salt; the nonce is a 64-bit counter. Nonces cannot repeat:
//     see seal.go. AES-GCM rather than ChaCha20-Poly1305 because these
//     hosts have AES-NI (0.40 us per 1400-byte packet, PERF-NOTES.md).
//   - The driver opens packets on the engine goroutine, before decoding,
//     so drops are counted with the engine's counters: "unexpected_auth"
//     (keyed packet, no key here), "unauthenticated" (unkeyed packet, key
//     here), "auth_failed", "stale" (sent time more than ClockSkew, 10 s
//     by default, from ours), "replay" (a counter seen before, or more
//     than 1024 behind the newest from its sender). One warning per
//     session and source, at most 64 in all.
//   - Keyed packets are 48 bytes longer; Send derives the symbol size
//     with KeyedSymbolSizeFor (1344 bytes at MTU 1500, 1280 at 1400).
//   - The sender limits NAKs per source address (2000/s, burst 4000;
//     nakguard.go) before its engine sees them. Repairs take at most
//     RepairShare (--repair-share, 0.5) of the rate while new data waits;
//     after the first pass they may take the whole rate, as nothing else
//     is waiting and the linger ends the session once NAKs stop.
//   - The file store checks every manifest path against what exists in
//     the destination before creating anything, and refuses any path
//     through a symbolic link, even one inside the destination (two names
//     for one directory would let one entry overwrite another).
//   - Lifecycle events (events.go) come from the receiver engine at the
//     steps it logs at Info (session announced, manifest known, file
//     verified or failed, session complete or failed), through
//     ReceiverConfig.Events, with stable type and reason names; callers
//     never parse logs. Send reports only the start (the result is its
//     return value); counters reach metrics through Stats snapshots every
//     ~100 ms, never by reading an engine from another goroutine.
//   - ReceiveDaemon (daemon.go) shares one data and one feedback socket
//     among one Receiver per session, routed by session ID, rather than
//     one Receive (and two sockets, and a kernel copy of every packet)
//     per session. At most MaxSessions (4) run at once; a session
//     announced while full is skipped and logged, and taken late if still
//     announced when a slot frees. Completed session IDs (the last 65,536)
//     are never received again in a run; failed ones are retried after
//     RetryAfter (30 s), so a sender still announcing a session that is
//     refused does not cause a retry five times a second. Stopping ends
//     sessions in flight with nothing partial in place; with a StateDir
//     each keeps its checkpoint and temporaries, as Receive does, and is
//     resumed when it is taken again.
//   - IPv6 groups use the same UDPConn over golang.org/x/net/ipv6
//     (udp6.go): both packages' Message is x/net's socket.Message, so the
//     batched write path is shared; reads are raw recvmmsg into IPv6
//     sockaddrs (no allocation per datagram). The interface needs no
//     IPv4 address, the kernel picks the source, and the symbol size
//     allows for the 40-byte header. Repair servers and relays stay IPv4.
//   - The Repairer (repairer.go) is the sender's NAK aggregation and
//     repair logic as a value of its own, so a repair server (package
//     repairtree) answers its region by exactly the sender's rules.
//   - Repair servers report their region's completions as one STATUS with
//     the aggregate flag, which replaces that server's previous counts
//     (completions.go); a source is counted once whatever it repeats.
//   - Relay (relay.go): a relay's ADVERT to the sender's --relay-listen
//     address subscribes it for 5 s; the sender copies every data-group
//     packet to each subscriber (at most 16), announces at once to a new
//     one, and holds its first data 400 ms (SenderConfig.StartDelay) so
//     relays that were waiting get the whole stream.
//   - Receiver checkpoints (resume.go, checkpointing.go) carry a CRC-32C
//     per block; on resume every block is read back and kept only if it
//     matches. The data fsync runs off the engine goroutine, then the
//     record is saved atomically; a failed receive worth resuming keeps
//     its hidden .part files and checkpoint, a refused or corrupt one
//     removes them. A torn record is never trusted: only whole files whose
//     SHA-256 matches the manifest are kept then.
//   - A sender saves only its position (every 100 ms; no data to make
//     durable). A resumed sender (--resume) starts at that block with the
//     next epoch, whose repairs start half way up the parity range: the
//     parity indexes the crashed run used are not remembered, and the
//     receivers may hold some of them.
//   - UDP GSO and GRO (gso.go) are on by default (NetConfig.Offload, mcp
//     --offload=false turns them off): GSO cuts the sender's CPU per
//     datagram 3-4x; GRO helps a receiver where its NIC or driver
//     coalesces, and turns itself off after a probe where nothing
//     coalesces (the extra copy then costs ~10% of a receiver's CPU).
//     GRO is only on the data socket: on feedback sockets it
//     read a few small datagrams per call, the sender read NAKs late, and
//     its GRTT estimate (and every NAK timer) grew tenfold under loss.
//     The namespace lab (tests/lab) cuts GSO buffers into datagrams as
//     they leave the sender's veth, as a NIC does, so its loss is per
//     datagram like a wire's.
package rmtp
