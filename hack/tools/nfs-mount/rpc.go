package main

// The RPC transport (ONC RPC, RFC 5531, over TCP with record marking) that the NFS and MOUNT
// calls go through. It takes the place of go-nfs-client's rpc.Client, which fails a call after
// ~10 s without a connection and whose own reconnection races its timeouts, so that a mount
// stayed broken after the server restarted. Here a broken connection is closed and dialled
// again, one dial at a time, and every call it left unanswered is sent again on the new one;
// NFSv3 is stateless and ganesha's (VFS) file handles survive a restart, so nothing else needs
// rebuilding. How long a call waits for a server that is away is the mount's policy: hard waits
// until it is back, soft gives up with EIO. The library's XDR coder and Auth type are kept.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

const (
	backoffMin = 200 * time.Millisecond // a failed redial is tried again after this, doubling ...
	backoffMax = 2 * time.Second        // ... up to this: a restarted server is used within 2 s
	dialWait   = 5 * time.Second        // a connect that takes longer counts as failed
	maxRecord  = 4 << 20                // the largest reply taken: READ's is rsize (1 MiB) and some
)

// errStopped fails the calls that would have to wait for an absent server once the daemon ends.
var errStopped = fmt.Errorf("the NFS server is not reachable and the mount is ending: %w", syscall.EIO)

// xid numbers the calls. A re-sent call keeps its XID, so that a server that saw it before and
// still has it in its duplicate request cache (it did not restart) answers from the cache
// instead of running a non-idempotent call (REMOVE, RENAME, ...) a second time.
var xid atomic.Uint32

func init() { xid.Store(rand.Uint32()) }

// policy is the mount's patience with an absent server (options hard/soft, timeo, retrans).
type policy struct {
	soft     bool
	timeo    time.Duration // a connection silent this long is probed; silent twice as long, dropped
	giveUp   time.Duration // soft: a call fails with EIO when not answered within this
	stop     chan struct{} // closed when the daemon ends: from then on no call waits for a redial
	stopOnce sync.Once
}

func newPolicy(o options) *policy {
	p := &policy{soft: o.soft, timeo: time.Duration(o.timeo) * time.Second / 10, stop: make(chan struct{})}
	p.giveUp = p.timeo * time.Duration(o.retrans+1)
	return p
}

func (p *policy) shutdown() { p.stopOnce.Do(func() { close(p.stop) }) }

func (p *policy) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// who makes a call: the credential it carries, and the context of the FUSE request it serves
// (nil for the daemon's own calls). The kernel cancels that context (FUSE_INTERRUPT) when the
// process gets a signal; a call that waits for the server gives up (EINTR) only if the process
// is being killed, as with the kernel's client on a hard mount. Without this a killed process
// would stay in D state, since FUSE waits uninterruptibly for a request the daemon has taken.
type who struct {
	auth rpc.Auth
	ctx  context.Context
}

func (w who) interrupt() <-chan struct{} {
	if w.ctx == nil {
		return nil
	}
	return w.ctx.Done()
}

// dying tells whether the caller is being killed or has gone: SIGKILL pending (every fatal
// signal becomes one) or PF_EXITING, in the process flags, set.
func (w who) dying() bool {
	if w.ctx == nil {
		return false
	}
	caller, ok := fuse.FromContext(w.ctx)
	if !ok || caller.Pid == 0 {
		return false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", caller.Pid))
	stat, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/stat", caller.Pid))
	if err != nil || err2 != nil {
		return true // gone
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "SigPnd:"); ok {
			if n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64); n&(1<<(syscall.SIGKILL-1)) != 0 {
				return true
			}
		}
	}
	// After the command in parentheses: state ppid pgrp session tty_nr tpgid flags ...
	if i := bytes.LastIndexByte(stat, ')'); i > 0 {
		if f := strings.Fields(string(stat[i+1:])); len(f) > 6 {
			flags, _ := strconv.ParseUint(f[6], 10, 64)
			return flags&0x4 != 0 // PF_EXITING
		}
	}
	return false
}

// rpcClient is one RPC program (NFS or MOUNT) on the server: calls from any number of goroutines
// share one connection, matched to their replies by XID.
type rpcClient struct {
	name string // NFS or MOUNT, for the log
	ip   string
	port int // 0: the portmapper is asked at every dial
	prog uint32
	resv bool // bind a source port below 1024
	pol  *policy

	mu      sync.Mutex
	addr    string        // of the last connection, for the log
	cur     *rpcConn      // the connection for new calls; nil or dead when there is none
	dialing chan struct{} // while a redial runs (at most one): closed when it ends
	down    time.Time     // when the redial running started: since then the server is away
}

// open dials the first connection; unlike a redial it fails at once, so mount can say why.
func (t *rpcClient) open() error {
	c, err := t.dial()
	if err == nil {
		t.mu.Lock()
		t.cur = c
		t.mu.Unlock()
	}
	return err
}

// away tells whether the server is known to be unreachable: its connection broke, and no new
// one is up yet.
func (t *rpcClient) away() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.down.IsZero() || t.cur != nil && t.cur.isDead()
}

func (t *rpcClient) where() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr
}

// close drops the connection; a later call dials a new one.
func (t *rpcClient) close() {
	t.mu.Lock()
	c := t.cur
	t.cur = nil
	t.mu.Unlock()
	if c != nil {
		c.quiet.Store(true)
		c.fail(errors.New("closed"))
	}
}

func (t *rpcClient) dial() (*rpcConn, error) {
	port := t.port
	if port == 0 {
		var err error
		if port, err = getport(net.JoinHostPort(t.ip, "111"), t.prog); err != nil {
			return nil, err
		}
	}
	addr := net.JoinHostPort(t.ip, strconv.Itoa(port))
	nc, err := dialTCP(addr, t.resv)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.addr = addr
	t.mu.Unlock()
	c := &rpcConn{t: t, nc: nc, pending: map[uint32]chan []byte{}, dead: make(chan struct{})}
	c.heard.Store(time.Now().UnixNano())
	go c.receive()
	return c, nil
}

// dialTCP connects with a timeout (the library dialled without one), from a port below 1024
// when resv is set, for servers that insist on it (ganesha does not, by default).
func dialTCP(addr string, resv bool) (net.Conn, error) {
	d := net.Dialer{Timeout: dialWait}
	for try := 0; ; try++ {
		if resv {
			d.LocalAddr = &net.TCPAddr{Port: 600 + rand.IntN(424)}
		}
		nc, err := d.Dial("tcp", addr)
		if err != nil && resv && errors.Is(err, syscall.EADDRINUSE) && try < 50 {
			continue // that port is taken: another one
		}
		return nc, err
	}
}

// getport asks the portmapper at addr for prog's version 3 over TCP (PMAPPROC_GETPORT).
func getport(addr string, prog uint32) (int, error) {
	nc, err := dialTCP(addr, false)
	if err != nil {
		return 0, fmt.Errorf("portmapper: %w", err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(dialWait))
	args := struct{ Prog, Vers, Prot, Port uint32 }{prog, 3, 6, 0}
	msg, id, err := encodeCall(100000, 2, 3, rpc.AuthNull, args)
	if err == nil {
		_, err = nc.Write(msg)
	}
	var body []byte
	if err == nil {
		body, err = readRecord(bufio.NewReader(nc))
	}
	var r *bytes.Reader
	if err == nil && (len(body) < 4 || binary.BigEndian.Uint32(body) != id) {
		err = errors.New("reply does not match the call")
	} else if err == nil {
		r, err = parseReply(body[4:])
	}
	var p uint32
	if err == nil {
		p, err = xdr.ReadUint32(r)
	}
	if err != nil || p == 0 {
		return 0, fmt.Errorf("portmapper has no TCP port for program %d v3 (%v)", prog, err)
	}
	return int(p), nil
}

// encodeCall returns the record (with its record mark) for a call, and its XID.
func encodeCall(prog, vers, proc uint32, cred rpc.Auth, args any) ([]byte, uint32, error) {
	id := xid.Add(1)
	msg := struct {
		Xid, Type, Rpcvers, Prog, Vers, Proc uint32
		Cred, Verf                           rpc.Auth
		Args                                 any
	}{id, 0, 2, prog, vers, proc, cred, rpc.AuthNull, args}
	var b bytes.Buffer
	b.Write(make([]byte, 4))
	if err := xdr.Write(&b, msg); err != nil {
		return nil, 0, err
	}
	out := b.Bytes()
	binary.BigEndian.PutUint32(out, uint32(len(out)-4)|1<<31) // one fragment, the last
	return out, id, nil
}

// readRecord reads one record, joining its fragments.
func readRecord(r io.Reader) ([]byte, error) {
	var rec []byte
	for {
		var mark [4]byte
		if _, err := io.ReadFull(r, mark[:]); err != nil {
			return nil, err
		}
		m := binary.BigEndian.Uint32(mark[:])
		n := int(m &^ (1 << 31))
		if len(rec)+n > maxRecord {
			return nil, fmt.Errorf("RPC record of over %d bytes", maxRecord)
		}
		rec = append(rec, make([]byte, n)...)
		if _, err := io.ReadFull(r, rec[len(rec)-n:]); err != nil {
			return nil, err
		}
		if m&(1<<31) != 0 {
			return rec, nil
		}
	}
}

// parseReply checks a reply's header (after the XID) and returns the reader at its results.
func parseReply(b []byte) (*bytes.Reader, error) {
	r := bytes.NewReader(b)
	var h struct{ Type, Stat uint32 }
	if err := xdr.Read(r, &h); err != nil || h.Type != 1 {
		return nil, fmt.Errorf("not an RPC reply (%v)", err)
	}
	if h.Stat != 0 { // MSG_DENIED
		why, _ := xdr.ReadUint32(r)
		if why == 1 {
			st, _ := xdr.ReadUint32(r)
			return nil, fmt.Errorf("rpc: authentication refused (auth_stat %d)", st)
		}
		return nil, errors.New("rpc: RPC version mismatch")
	}
	var flavor uint32
	verf, err := []byte(nil), xdr.Read(r, &flavor)
	if err == nil {
		verf, err = xdr.ReadOpaque(r)
	}
	if err == nil {
		_, err = r.Seek(int64(-len(verf)&3), io.SeekCurrent) // the opaque's padding
	}
	var st uint32
	if err == nil {
		st, err = xdr.ReadUint32(r)
	}
	if err != nil {
		return nil, fmt.Errorf("rpc: short reply: %w", err)
	}
	if st != 0 {
		names := []string{1: "PROG_UNAVAIL", 2: "PROG_MISMATCH", 3: "PROC_UNAVAIL", 4: "GARBAGE_ARGS", 5: "SYSTEM_ERR"}
		if int(st) < len(names) {
			return nil, fmt.Errorf("rpc: %s", names[st])
		}
		return nil, fmt.Errorf("rpc: accept_stat %d", st)
	}
	return r, nil
}

// call sends one call of version 3 of the program and waits for its reply, across as many
// connections as it takes. resent tells whether it went out more than once, so that it may have
// run already (the reply was lost), for the callers of non-idempotent procedures.
func (t *rpcClient) call(w who, proc uint32, args any) (r *bytes.Reader, resent bool, err error) {
	msg, id, err := encodeCall(t.prog, 3, proc, w.auth, args)
	if err != nil {
		return nil, false, err
	}
	p := patience{who: w, intr: w.interrupt(), tick: time.NewTicker(time.Second)}
	defer p.tick.Stop()
	if t.pol.soft {
		tm := time.NewTimer(t.pol.giveUp)
		defer tm.Stop()
		p.deadline = tm.C
	}
	for tries := 0; ; tries++ {
		c, err := t.conn(&p)
		if err != nil {
			return nil, tries > 0, err
		}
		body, err := c.roundTrip(id, msg, &p)
		if err == errBroken {
			continue // sent again on the next connection
		} else if err != nil {
			return nil, tries > 0, err
		}
		r, err := parseReply(body)
		return r, tries > 0, err
	}
}

// patience is what ends one call's wait for the server short of an answer: its soft deadline,
// and its caller being killed (checked at the kernel's interrupt and every second).
type patience struct {
	who
	deadline <-chan time.Time // nil (never) on a hard mount
	intr     <-chan struct{}
	tick     *time.Ticker
}

// check is run at an interrupt or a tick: an error when the call must end.
func (p *patience) check(interrupted bool) error {
	if interrupted {
		p.intr = nil // an interrupt comes once; a caller that is not dying waits on
	}
	if p.dying() {
		return syscall.EINTR
	}
	return nil
}

var errSoftTimeout = fmt.Errorf("no answer from the NFS server within timeo*(retrans+1) on a soft mount: %w", syscall.EIO)

// conn returns a live connection, waiting while one is being dialled (and starting that if
// nobody has). Once the daemon ends, one last dial is made and its failure fails the call. On a
// soft mount whose server has been away for longer than a call may wait, calls fail at once:
// else each of the several requests a system call can make would wait that long in turn.
func (t *rpcClient) conn(p *patience) (*rpcConn, error) {
	for {
		t.mu.Lock()
		if c := t.cur; c != nil && !c.isDead() {
			t.mu.Unlock()
			return c, nil
		} else if t.dialing == nil {
			var lost time.Time // zero: the connection was closed on purpose, nothing to log
			if c != nil {
				lost = c.failed
			}
			t.dialing, t.down = make(chan struct{}), time.Now()
			go t.redial(t.dialing, lost)
		}
		dialing, down := t.dialing, t.down
		t.mu.Unlock()
		if t.pol.soft && !down.IsZero() && time.Since(down) > t.pol.giveUp {
			return nil, errSoftTimeout
		}
		select {
		case <-dialing:
			t.mu.Lock()
			c := t.cur
			t.mu.Unlock()
			if (c == nil || c.isDead()) && t.pol.stopped() {
				return nil, errStopped
			}
		case <-p.deadline:
			return nil, errSoftTimeout
		case <-p.intr:
			if err := p.check(true); err != nil {
				return nil, err
			}
		case <-p.tick.C:
			if err := p.check(false); err != nil {
				return nil, err
			}
		}
	}
}

// redial dials until it succeeds: at once, then after backoffMin, doubling up to backoffMax.
// Once the daemon ends it stops after one more try. lost is when the old connection broke.
func (t *rpcClient) redial(done chan struct{}, lost time.Time) {
	delay := backoffMin
	var c *rpcConn
	for try := 1; ; try++ {
		var err error
		if c, err = t.dial(); err == nil || t.pol.stopped() {
			break
		}
		if try == 1 {
			logf("%s %s: cannot reconnect (%v); retrying every %v at most", t.name, t.where(), unwrapOp(err), backoffMax)
		}
		select {
		case <-time.After(delay):
		case <-t.pol.stop:
		}
		delay = min(2*delay, backoffMax)
	}
	t.mu.Lock()
	if c != nil {
		t.cur = c
	}
	t.dialing, t.down = nil, time.Time{}
	t.mu.Unlock()
	close(done)
	if c != nil && !lost.IsZero() {
		logf("%s %s: reconnected, %.1fs after the connection broke", t.name, t.where(), time.Since(lost).Seconds())
	}
}

// rpcConn is one TCP connection. It is never reused once broken: calls move to a new one.
type rpcConn struct {
	t       *rpcClient
	nc      net.Conn
	wmu     sync.Mutex // one record written at a time
	mu      sync.Mutex // guards pending
	pending map[uint32]chan []byte
	heard   atomic.Int64 // when the last reply came (UnixNano)
	dead    chan struct{}
	once    sync.Once
	failed  time.Time   // when it broke; set before dead is closed
	quiet   atomic.Bool // closed on purpose: nothing to log
}

var errBroken = errors.New("connection broken")

func (c *rpcConn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// fail closes the connection for good; the calls waiting on it notice dead and move on.
func (c *rpcConn) fail(err error) {
	c.once.Do(func() {
		if !c.quiet.Load() {
			logf("%s %s: connection lost (%v); calls wait for a new one", c.t.name, c.nc.RemoteAddr(), err)
		}
		c.failed = time.Now()
		c.nc.Close()
		close(c.dead)
	})
}

// receive hands each reply to the call waiting for its XID, until the connection breaks.
func (c *rpcConn) receive() {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		rec, err := readRecord(r)
		if err == nil && len(rec) < 4 {
			err = errors.New("short RPC record")
		}
		if err != nil {
			c.fail(err)
			return
		}
		c.heard.Store(time.Now().UnixNano())
		id := binary.BigEndian.Uint32(rec)
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil { // else a probe's reply, or one whose caller gave up
			ch <- rec[4:]
		}
	}
}

func (c *rpcConn) send(msg []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// A server that stopped reading must not block the writers for ever.
	c.nc.SetWriteDeadline(time.Now().Add(max(2*c.t.pol.timeo, dialWait)))
	_, err := c.nc.Write(msg)
	return err
}

// roundTrip sends msg and waits for its reply. A connection on which nothing at all arrived
// for timeo is probed with a NULL call, and dropped when that goes unanswered for another timeo:
// a server that is merely slow with this call still answers the probe. errBroken: send again.
func (c *rpcConn) roundTrip(id uint32, msg []byte, p *patience) ([]byte, error) {
	reply := make(chan []byte, 1)
	c.mu.Lock()
	c.pending[id] = reply
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.send(msg); err != nil {
		c.fail(err)
		return nil, errBroken
	}
	since, probed := time.Now(), false // waiting since; a probe has gone out since then
	for {
		select {
		case body := <-reply:
			return body, nil
		case <-c.dead:
			return nil, errBroken
		case <-p.deadline:
			return nil, errSoftTimeout
		case <-p.intr:
			if err := p.check(true); err != nil {
				return nil, err
			}
		case <-p.tick.C:
			if err := p.check(false); err != nil {
				return nil, err
			}
			switch {
			case time.Unix(0, c.heard.Load()).After(since):
				since, probed = time.Now(), false // the connection lives
			case time.Since(since) < c.t.pol.timeo:
			case !probed:
				ping, _, _ := encodeCall(c.t.prog, 3, 0, rpc.AuthNull, struct{}{}) // NULL
				if err := c.send(ping); err != nil {
					c.fail(err)
					return nil, errBroken
				}
				since, probed = time.Now(), true
			default:
				c.fail(fmt.Errorf("no reply for %v", 2*c.t.pol.timeo))
				return nil, errBroken
			}
		}
	}
}
