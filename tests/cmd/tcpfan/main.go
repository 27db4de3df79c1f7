// Command tcpfan is the TCP fan-out baseline of tests/compare.sh: one
// server sends a file to each of N clients over its own TCP connection,
// all at once, as a script of scp or rsync jobs would.
//
//	tcpfan serve --listen 10.213.1.1:7900 --file big.bin --clients 8 [--timeout 2m]
//	tcpfan get --connect 10.213.1.1:7900 --out copy.bin [--timeout 2m]
//
// serve accepts --clients connections, writes the whole file to each
// (sendfile(2): the kernel copies from the page cache) and closes it,
// exits once every client has been served, and prints one JSON line
// {"clients", "bytes", "duration_s"}. get dials until the server answers
// (every 5 ms, so it may start first), reads to EOF into --out (splice(2)),
// and prints {"bytes", "duration_s"}; it exits 1 if the connection broke.
// Neither hashes nor fsyncs: the caller checks the copies.
//
// Exit status: 0 done, 1 failure, 2 usage.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpfan:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tcpfan serve --listen IP:PORT --file F --clients N [--timeout D]\n       tcpfan get --connect IP:PORT --out F [--timeout D]")
	os.Exit(2)
}

func parse(fs *flag.FlagSet, args []string) {
	fs.Usage = usage
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		usage()
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on, IP:PORT (required)")
	file := fs.String("file", "", "file to send (required)")
	clients := fs.Int("clients", 1, "connections to serve before exiting")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	parse(fs, args)
	if *listen == "" || *file == "" || *clients < 1 {
		usage()
	}
	if _, err := os.Stat(*file); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	deadline := time.Now().Add(*timeout)
	if err := ln.(*net.TCPListener).SetDeadline(deadline); err != nil {
		return err
	}
	start := time.Now()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
		errs  []error
	)
	for i := range *clients {
		c, err := ln.Accept()
		if err != nil {
			errs = append(errs, fmt.Errorf("accept %d of %d: %w", i+1, *clients, err))
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := sendFile(c, *file, deadline)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = append(errs, fmt.Errorf("to %v: %w", c.RemoteAddr(), err))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"clients": *clients, "bytes": total, "duration_s": time.Since(start).Seconds(),
	})
}

// sendFile writes name to c through its own file handle and closes c.
func sendFile(c net.Conn, name string, deadline time.Time) (int64, error) {
	defer c.Close()
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := io.Copy(c, f) // *net.TCPConn.ReadFrom: sendfile
	if err != nil {
		return n, err
	}
	return n, c.(*net.TCPConn).CloseWrite()
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	connect := fs.String("connect", "", "server address, IP:PORT (required)")
	out := fs.String("out", "", "where to write the copy (required)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	parse(fs, args)
	if *connect == "" || *out == "" {
		usage()
	}
	deadline := time.Now().Add(*timeout)
	var c net.Conn
	for {
		var err error
		c, err = net.DialTimeout("tcp", *connect, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dial %s: %w", *connect, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer c.Close()
	start := time.Now()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, c) // *os.File.ReadFrom: splice
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("after %d bytes from %s: %w", n, *connect, err)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"bytes": n, "duration_s": time.Since(start).Seconds()})
}
