// Package rmtptest holds test helpers for rmtp and the packages above it:
// a deterministic discrete-event simulation of a lossy multicast network
// that drives real engines without sockets, goroutines or sleeps, and
// in-memory object sources and stores.
//
// The simulation keeps one virtual clock. Each step jumps it to the
// earliest pending delivery or engine deadline, delivers what is due in
// time order, runs due timers and collects what the engines want to send.
// Loss, delay and drop predicates are seeded or deterministic, so a run is
// reproducible from its seed.
package rmtptest
