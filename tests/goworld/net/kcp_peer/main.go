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
//	kcp_peer lockstep-client -udp host:port -room R -id P [-inputs 10] [-gap 1s] [-heartbeat 0s] [-hold 0s]
//	    Plays a lockstep room the way lockstepserver's Go example client does
//	    (../shared/LOCKSTEP.md §13): kcp-go's default session settings (§2.2: nodelay 0,
//	    interval 100 ms, windows 32/32, message mode, no ACK no-delay), no FEC, no crypt.
//	    Sends Connect, JoinRoom, Ready and then the inputs, one per gap, then closes
//	    (-hold: after the last gap, keep reading that much longer, sending nothing).
//	    Prints "MSG <id> <hex body>" per packet received and, for frame messages,
//	    "FRAME <frameID> <playerID>:<sid>,..." per FrameData. Exits 1 if Connect is refused.
//	    stderr gets "+<ms> ..." timing lines for sends and receives.
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
	"strings"
	"sync"
	"sync/atomic"
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

// -- lockstep-client: the lockstep protocol as lockstepserver's Go example client speaks it ------

// Message ids (LOCKSTEP.md §4).
const (
	lsConnect   = 1
	lsHeartbeat = 2
	lsJoinRoom  = 10
	lsReady     = 30
	lsFrame     = 50
	lsInput     = 60
	lsMaxBody   = 1024 // the Go client's reader refuses longer bodies ("data max")
)

// lsPacket frames one packet: u16 big-endian body length, u8 id, body (§3).
func lsPacket(id byte, body []byte) []byte {
	out := make([]byte, 3, 3+len(body))
	binary.BigEndian.PutUint16(out, uint16(len(body)))
	out[2] = id
	return append(out, body...)
}

// pbVarintField appends one proto2 varint field (wire type 0).
func pbVarintField(out []byte, field int, v uint64) []byte {
	out = binary.AppendUvarint(out, uint64(field)<<3)
	return binary.AppendUvarint(out, v)
}

// pbField is one decoded field: num, wire type, and its varint value or its bytes.
type pbField struct {
	num   int
	wire  int
	value uint64
	bytes []byte
}

// pbFields splits a protobuf message into its fields (all wire types skipped correctly).
func pbFields(b []byte) ([]pbField, error) {
	var fields []pbField
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, fmt.Errorf("bad key")
		}
		b = b[n:]
		f := pbField{num: int(key >> 3), wire: int(key & 7)}
		switch f.wire {
		case 0:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, fmt.Errorf("bad varint in field %d", f.num)
			}
			f.value, b = v, b[n:]
		case 1, 5:
			size := 8
			if f.wire == 5 {
				size = 4
			}
			if len(b) < size {
				return nil, fmt.Errorf("short fixed field %d", f.num)
			}
			f.bytes, b = b[:size], b[size:]
		case 2:
			size, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < size {
				return nil, fmt.Errorf("bad length in field %d", f.num)
			}
			f.bytes, b = b[n:n+int(size)], b[n+int(size):]
		default:
			return nil, fmt.Errorf("wire type %d in field %d", f.wire, f.num)
		}
		fields = append(fields, f)
	}
	return fields, nil
}

// lsFrameLines decodes S2C_FrameMsg{1: repeated FrameData{1: frameID, 2: repeated
// InputData{1: id, 2: sid, ...}}} into one "FRAME <frameID> <player>:<sid>,..." line each.
func lsFrameLines(body []byte) ([]string, error) {
	msg, err := pbFields(body)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, f := range msg {
		if f.num != 1 || f.wire != 2 {
			continue
		}
		frame, err := pbFields(f.bytes)
		if err != nil {
			return nil, err
		}
		var frameID uint64
		var inputs []string
		for _, g := range frame {
			switch {
			case g.num == 1 && g.wire == 0:
				frameID = g.value
			case g.num == 2 && g.wire == 2:
				input, err := pbFields(g.bytes)
				if err != nil {
					return nil, err
				}
				var player uint64
				var sid int32
				for _, h := range input {
					if h.wire != 0 {
						continue
					}
					switch h.num {
					case 1:
						player = h.value
					case 2:
						sid = int32(h.value) // int32: a negative value is a 10-byte varint
					}
				}
				inputs = append(inputs, fmt.Sprintf("%d:%d", player, sid))
			}
		}
		line := fmt.Sprintf("FRAME %d", frameID)
		if len(inputs) > 0 {
			line += " " + strings.Join(inputs, ",")
		}
		lines = append(lines, line)
	}
	return lines, nil
}

// lsClient prints whole lines (stdout: protocol, stderr: timings) from several goroutines.
type lsClient struct {
	mu      sync.Mutex
	s       *kcp.UDPSession
	start   time.Time
	closing atomic.Bool
}

func (c *lsClient) out(lines ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, line := range lines {
		fmt.Println(line)
	}
}

func (c *lsClient) logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(os.Stderr, "+%dms %s\n", time.Since(c.start).Milliseconds(), fmt.Sprintf(format, args...))
}

func (c *lsClient) send(name string, id byte, body []byte) error {
	c.logf("send %s", name)
	_, err := c.s.Write(lsPacket(id, body)) // one Write per packet: never interleaved
	return err
}

// read reads packets exactly as the Go client does (header, then exactly the body) until the
// session closes or a body is over the limit, which ends reading for good.
func (c *lsClient) read() {
	header := make([]byte, 3)
	for {
		if _, err := io.ReadFull(c.s, header); err != nil {
			if !c.closing.Load() {
				c.out("READERR " + err.Error())
			}
			return
		}
		size := int(binary.BigEndian.Uint16(header))
		id := header[2]
		if size > lsMaxBody {
			c.out(fmt.Sprintf("READERR data max: body of %d bytes (id %d)", size, id))
			return
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(c.s, body); err != nil {
			if !c.closing.Load() {
				c.out("READERR " + err.Error())
			}
			return
		}
		c.logf("recv %d (%d bytes)", id, size)
		lines := []string{strings.TrimSuffix(fmt.Sprintf("MSG %d %x", id, body), " ")}
		switch id {
		case lsConnect:
			code := uint64(0)
			fields, err := pbFields(body)
			if err != nil {
				c.out(append(lines, "BADMSG "+err.Error())...)
				os.Exit(1)
			}
			for _, f := range fields {
				if f.num == 1 && f.wire == 0 {
					code = f.value
				}
			}
			if code != 0 { // the Go client panics here
				c.out(append(lines, fmt.Sprintf("CONNECT REFUSED %d", code))...)
				os.Exit(1)
			}
		case lsFrame:
			frames, err := lsFrameLines(body)
			if err != nil {
				lines = append(lines, "BADFRAME "+err.Error())
			}
			lines = append(lines, frames...)
		}
		c.out(lines...)
	}
}

func runLockstepClient(udp string, room, id uint64, inputs int, gap, heartbeat, hold time.Duration) error {
	s, err := kcp.DialWithOptions(udp, nil, 0, 0)
	if err != nil {
		return err
	}
	// Deliberately no Set* calls: the example client keeps kcp-go's defaults.
	c := &lsClient{s: s, start: time.Now()}
	defer func() {
		c.closing.Store(true)
		s.Close()
		c.logf("closed")
	}()
	go c.read()
	if heartbeat > 0 {
		go func() {
			for range time.Tick(heartbeat) {
				if c.closing.Load() || c.send("Heartbeat", lsHeartbeat, nil) != nil {
					return
				}
			}
		}()
	}
	connect := pbVarintField(pbVarintField(nil, 1, id), 2, room)
	if err := c.send("Connect", lsConnect, connect); err != nil {
		return err
	}
	time.Sleep(gap)
	if err := c.send("JoinRoom", lsJoinRoom, nil); err != nil {
		return err
	}
	time.Sleep(gap)
	if err := c.send("Ready", lsReady, nil); err != nil {
		return err
	}
	time.Sleep(gap)
	for i := 0; i < inputs; i++ {
		input := pbVarintField(nil, 1, uint64(i)) // C2S_InputMsg{sid: i}
		if err := c.send(fmt.Sprintf("Input %d", i), lsInput, input); err != nil {
			return err
		}
		time.Sleep(gap)
	}
	time.Sleep(hold)
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kcp_peer server|client|lockstep-client [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "server: UDP address to listen on")
	addr := fs.String("addr", "", "client: server address")
	n := fs.Int("n", 200, "client: number of messages")
	size := fs.Int("size", 2000, "client: maximum message payload size")
	ds := fs.Int("ds", 10, "FEC data shards (0: no FEC)")
	ps := fs.Int("ps", 3, "FEC parity shards (0: no FEC)")
	udp := fs.String("udp", "127.0.0.1:10086", "lockstep-client: server KCP address")
	room := fs.Uint64("room", 1, "lockstep-client: room (battle) id")
	id := fs.Uint64("id", 1, "lockstep-client: player id")
	inputs := fs.Int("inputs", 10, "lockstep-client: number of inputs (sid 0..n-1)")
	gap := fs.Duration("gap", time.Second, "lockstep-client: pause after each message sent")
	heartbeat := fs.Duration("heartbeat", 0, "lockstep-client: Heartbeat period (0: never, like the Go client)")
	hold := fs.Duration("hold", 0, "lockstep-client: read on this long after the last gap, sending nothing")
	fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(*listen, *ds, *ps)
	case "client":
		err = runClient(*addr, *n, *size, *ds, *ps)
	case "lockstep-client":
		err = runLockstepClient(*udp, *room, *id, *inputs, *gap, *heartbeat, *hold)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kcp_peer:", err)
		os.Exit(1)
	}
}
