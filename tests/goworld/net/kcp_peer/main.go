// Command kcp_peer is a test tool for tests/goworld/net/test_kcp.py (not project code).
//
// It speaks kcp-go v5 with the session settings GoWorld's gate and Go bot use:
// FEC 10+3 (or none), no crypt, SetNoDelay(1, 10, 2, 1), stream mode, write delay,
// ACK no-delay.
//
//	kcp_peer server -listen 127.0.0.1:0 [-ds 10 -ps 3]
//	    Prints "LISTEN <addr>" and echoes every byte of every session until stdin closes.
//	kcp_peer client -addr host:port -n 200 -size 2000 [-ds 10 -ps 3]
//	    Sends n length-prefixed messages (u32 LE length + deterministic payload), reads
//	    the echo, checks every byte, prints "OK <bytes>" and exits 0 (exit 1 on error).
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

func configure(s *kcp.UDPSession) {
	s.SetNoDelay(1, 10, 2, 1)
	s.SetStreamMode(true)
	s.SetWriteDelay(true)
	s.SetACKNoDelay(true)
}

func message(i int, size int) []byte {
	r := rand.New(rand.NewSource(int64(i) + 1))
	n := 1 + r.Intn(size)
	msg := make([]byte, 4+n)
	binary.LittleEndian.PutUint32(msg, uint32(n))
	r.Read(msg[4:])
	return msg
}

func runServer(listen string, ds, ps int) error {
	l, err := kcp.ListenWithOptions(listen, nil, ds, ps)
	if err != nil {
		return err
	}
	fmt.Printf("LISTEN %s\n", l.Addr().String())
	go func() {
		io.Copy(io.Discard, os.Stdin) // the test closes stdin (or kills us) to stop
		os.Exit(0)
	}()
	for {
		s, err := l.AcceptKCP()
		if err != nil {
			return err
		}
		configure(s)
		go func() {
			defer s.Close()
			io.Copy(s, s)
		}()
	}
}

func runClient(addr string, n, size, ds, ps int) error {
	s, err := kcp.DialWithOptions(addr, nil, ds, ps)
	if err != nil {
		return err
	}
	defer s.Close()
	configure(s)
	s.SetReadBuffer(64 * 1024)
	s.SetWriteBuffer(64 * 1024)
	s.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(s, 16384)
		for i := 0; i < n; i++ {
			if _, err := w.Write(message(i, size)); err != nil {
				errc <- err
				return
			}
		}
		errc <- w.Flush()
	}()
	r := bufio.NewReader(s)
	total := 0
	for i := 0; i < n; i++ {
		want := message(i, size)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(r, got); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("message %d differs", i)
		}
		total += len(got)
	}
	if err := <-errc; err != nil {
		return err
	}
	fmt.Printf("OK %d\n", total)
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kcp_peer server|client [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "server: UDP address to listen on")
	addr := fs.String("addr", "", "client: server address")
	n := fs.Int("n", 200, "client: number of messages")
	size := fs.Int("size", 2000, "client: maximum message payload size")
	ds := fs.Int("ds", 10, "FEC data shards (0: no FEC)")
	ps := fs.Int("ps", 3, "FEC parity shards (0: no FEC)")
	fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(*listen, *ds, *ps)
	case "client":
		err = runClient(*addr, *n, *size, *ds, *ps)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kcp_peer:", err)
		os.Exit(1)
	}
}
