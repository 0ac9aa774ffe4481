package main

// The NFSv3 side: MOUNT and NFS procedures addressed by file handle, on the RPC transport of
// rpc.go and go-nfs-client's XDR coder and protocol types. The library's own Target API is path
// based (it walks from the export root for every call and caches listings), which does not fit
// FUSE, where the kernel hands us inodes; so each procedure the file system needs is one small
// function here.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

const (
	procFsstat  = 18 // not among the library's constants
	procLink    = 15
	stableFile  = 2 // WRITE stable_how FILE_SYNC: on stable storage when the reply comes
	maxTransfer = 1 << 20
	badCookie   = 10003 // NFS3ERR_BAD_COOKIE: a READDIR cookie the server no longer knows
	jukebox     = 10008 // NFS3ERR_JUKEBOX: the server asks to retry later
)

// nfsError is an NFS3ERR_* / MNT3ERR_* status; most share the number of the errno they mean.
type nfsError uint32

var statusErrno = map[nfsError]syscall.Errno{63: syscall.ENAMETOOLONG, 66: syscall.ENOTEMPTY,
	69: syscall.EDQUOT, 70: syscall.ESTALE, 71: syscall.EREMOTE, 10001: syscall.ESTALE,
	10004: syscall.EOPNOTSUPP, 10005: syscall.EINVAL, 10007: syscall.EINVAL, jukebox: syscall.EAGAIN}

func (e nfsError) Errno() syscall.Errno {
	if n, ok := statusErrno[e]; ok {
		return n
	}
	if e < 100 {
		return syscall.Errno(e)
	}
	return syscall.EIO
}

func (e nfsError) Error() string { return e.Errno().Error() }

// resentError is a status that answered a call sent more than once: the first may have run.
type resentError struct{ nfsError }

func (e resentError) Unwrap() error { return e.nfsError }

// resentWith tells whether err is status e answering a call that had been sent before.
func resentWith(err error, e syscall.Errno) bool {
	var re resentError
	return errors.As(err, &re) && re.Errno() == e
}

// errno turns any error from this file into what the FUSE caller sees: an NFS status its errno,
// a transport failure EIO (soft mounts, or the daemon ending), a killed caller EINTR.
func errno(err error) syscall.Errno {
	var ne nfsError
	var en syscall.Errno
	if err == nil {
		return 0
	} else if errors.As(err, &ne) {
		return ne.Errno()
	} else if errors.As(err, &en) && en == syscall.EINTR {
		return en
	}
	logf("rpc error: %v", err)
	if errors.As(err, &en) {
		return en
	}
	return syscall.EIO
}

type client struct {
	nfs, mnt     *rpcClient
	dirpath      string // the path MNT granted (the export, or the whole path when allowed)
	rsize, wsize uint32
	rootCred     who                       // the daemon's own calls: as root, interrupted by nothing
	rootAttr     atomic.Pointer[nfs.Fattr] // the export root's last attributes (see Getattr)
	lastStat     atomic.Pointer[fsstat]    // the last FSSTAT answer (see Statfs)
	creds        sync.Map                  // credKey -> credEntry
	stores       atomic.Int64
}

// call runs an NFS procedure: it checks the status, retries while the server says JUKEBOX, and
// decodes the result into res when given; the reader is returned for what follows res. A status
// that answers a call sent more than once (after a connection broke) comes as a resentError.
func (c *client) call(cred who, proc uint32, args, res any) (io.Reader, error) {
	if debug {
		defer func(t time.Time) { logf("nfs proc %d: %v", proc, time.Since(t)) }(time.Now())
	}
	for try := 0; ; try++ {
		r, resent, err := c.nfs.call(cred, proc, args)
		if err != nil {
			return nil, err
		}
		st, err := xdr.ReadUint32(r)
		if err != nil {
			return nil, err
		}
		if st == jukebox && try < 50 {
			time.Sleep(100 * time.Millisecond)
			continue
		} else if st != 0 && resent {
			return nil, resentError{nfsError(st)}
		} else if st != 0 {
			return nil, nfsError(st)
		}
		if res != nil {
			err = xdr.Read(r, res)
		}
		return r, err
	}
}

// mount asks MOUNT for path. ganesha grants any directory below an export, but refuses a missing
// one with ACCES; other servers grant only export roots. So on refusal mount the longest export
// that is a prefix of path and LOOKUP the rest, which also names the missing part precisely.
func (c *client) mount(path string) ([]byte, error) {
	fh, err := c.mnt1(path)
	if err == nil {
		return fh, nil
	}
	exports, xerr := c.exports()
	best := ""
	for _, e := range exports {
		if (path == e || strings.HasPrefix(path, strings.TrimSuffix(e, "/")+"/")) && len(e) > len(best) {
			best = e
		}
	}
	if xerr != nil || best == "" || best == path {
		return nil, fmt.Errorf("MOUNT refused %s: %w (exports: %s)", path, err, strings.Join(exports, " "))
	}
	if fh, err = c.mnt1(best); err != nil {
		return nil, fmt.Errorf("MOUNT refused export %s: %w", best, err)
	}
	walked := best
	for _, name := range strings.Split(strings.Trim(path[len(best):], "/"), "/") {
		walked += "/" + name
		var a *nfs.Fattr
		if fh, a, err = c.lookup(c.rootCred, fh, name); err == nil && a.Type != nfs.NF3Dir {
			err = syscall.ENOTDIR
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", walked, err)
		}
	}
	return fh, nil
}

func (c *client) mnt1(path string) ([]byte, error) {
	r, _, err := c.mnt.call(c.rootCred, nfs.MountProc3MNT, path)
	if err != nil {
		return nil, err
	}
	if st, err := xdr.ReadUint32(r); err != nil {
		return nil, err
	} else if st != 0 {
		return nil, nfsError(st)
	}
	c.dirpath = path
	return xdr.ReadOpaque(r)
}

// exports lists the server's export paths (MOUNT EXPORT: a list of paths, each with groups).
func (c *client) exports() ([]string, error) {
	r, _, err := c.mnt.call(who{auth: rpc.AuthNull}, nfs.MountProc3Export, struct{}{})
	var out []string
	for more := true; err == nil; {
		if err = xdr.Read(r, &more); err != nil || !more {
			break
		}
		var dir string
		err = xdr.Read(r, &dir)
		out = append(out, dir)
		for err == nil {
			var g string
			if err = xdr.Read(r, &more); err != nil || !more {
				break
			}
			err = xdr.Read(r, &g)
		}
	}
	return out, err
}

// unmount tells MOUNT the export is no longer used, if it can (the mount is gone either way).
func (c *client) unmount() { c.mnt.call(c.rootCred, nfs.MountProc3UMNT, c.dirpath) }

// authUnix is AUTH_SYS with the supplementary groups (the library's type carries one at most).
type authUnix struct {
	Stamp    uint32
	Machine  string
	Uid, Gid uint32
	Gids     []uint32
}

func makeAuth(uid, gid uint32, gids []uint32) rpc.Auth {
	var b bytes.Buffer
	host, _ := os.Hostname()
	xdr.Write(&b, authUnix{uint32(time.Now().Unix()), host, uid, gid, gids})
	return rpc.Auth{Flavor: 1, Body: b.Bytes()}
}

type credKey struct{ pid, uid, gid uint32 }
type credEntry struct {
	auth rpc.Auth
	made time.Time
}

// cred is the caller's identity for the server: each RPC carries the uid, gid and groups of the
// process that caused it, as the kernel's NFS client does, so the server's permission checks and
// new files' owners are right for every pod user. Groups come from /proc, cached for a second.
// Requests the kernel makes on its own (pid 0) go as root. The request's context comes along
// (see who).
func (c *client) cred(ctx context.Context) who {
	caller, ok := fuse.FromContext(ctx)
	if !ok || caller.Pid == 0 {
		return who{c.rootCred.auth, ctx}
	}
	k := credKey{caller.Pid, caller.Uid, caller.Gid}
	if e, ok := c.creds.Load(k); ok && time.Since(e.(credEntry).made) < time.Second {
		return who{e.(credEntry).auth, ctx}
	}
	var gids []uint32
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", caller.Pid)); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if f, ok := strings.CutPrefix(line, "Groups:"); ok {
				for _, g := range strings.Fields(f) {
					if n, err := strconv.ParseUint(g, 10, 32); err == nil && len(gids) < 16 {
						gids = append(gids, uint32(n))
					}
				}
			}
		}
	}
	a := makeAuth(caller.Uid, caller.Gid, gids)
	c.creds.Store(k, credEntry{a, time.Now()})
	if c.stores.Add(1)%1024 == 0 { // forget the processes that have gone
		c.creds.Range(func(k, e any) bool {
			if time.Since(e.(credEntry).made) > time.Second {
				c.creds.Delete(k)
			}
			return true
		})
	}
	return who{a, ctx}
}

// ---- NFSv3 procedures (RFC 1813), one per function, by file handle ----
//
// A call is sent again when its connection broke before the reply came, so it may run twice.
// Most procedures do the same the second time. For the ones that do not, a server that kept
// running answers the second from its duplicate request cache; one that restarted has lost
// that cache and runs it again, which fails: REMOVE, RMDIR and RENAME with ENOENT, MKDIR with
// EEXIST. Those statuses on a re-sent call mean the first one did it, and are taken as success
// (what the cache would have answered). An O_EXCL create, sent as a GUARDED CREATE, answered
// EEXIST is passed on: whether the file existed before cannot be told. (The kernel's client
// sends those as EXCLUSIVE CREATEs, whose verifier makes a re-sent one succeed, at the cost of
// a SETATTR after each.)

type diropRes struct { // CREATE, MKDIR and SYMLINK all answer this
	FH   nfs.PostOpFH3
	Attr nfs.PostOpAttr
	Wcc  nfs.WccData
}

func (c *client) getattr(cred who, fh []byte) (*nfs.Fattr, error) {
	var a nfs.Fattr
	_, err := c.call(cred, nfs.NFSProc3GetAttr, fh, &a)
	return &a, err
}

func (c *client) setattr(cred who, fh []byte, s nfs.Sattr3) (*nfs.Fattr, error) {
	args := struct {
		FH    []byte
		Attr  nfs.Sattr3
		Guard bool // no ctime guard
	}{fh, s, false}
	var wcc nfs.WccData
	if _, err := c.call(cred, nfs.NFSProc3SetAttr, args, &wcc); err != nil {
		return nil, err
	}
	return c.postOp(cred, fh, wcc.After)
}

// postOp returns the attributes a reply carried, or fetches them when the server left them out.
func (c *client) postOp(cred who, fh []byte, a nfs.PostOpAttr) (*nfs.Fattr, error) {
	if a.IsSet {
		return &a.Attr, nil
	}
	return c.getattr(cred, fh)
}

func (c *client) lookup(cred who, dir []byte, name string) ([]byte, *nfs.Fattr, error) {
	var res struct {
		FH            []byte
		Attr, DirAttr nfs.PostOpAttr
	}
	if _, err := c.call(cred, nfs.NFSProc3Lookup, nfs.Diropargs3{FH: dir, Filename: name}, &res); err != nil {
		return nil, nil, err
	}
	a, err := c.postOp(cred, res.FH, res.Attr)
	return res.FH, a, err
}

// created completes CREATE/MKDIR/SYMLINK replies, whose handle and attributes are optional.
func (c *client) created(cred who, dir []byte, name string, res *diropRes) ([]byte, *nfs.Fattr, error) {
	if !res.FH.IsSet {
		return c.lookup(cred, dir, name)
	}
	a, err := c.postOp(cred, res.FH.FH, res.Attr)
	return res.FH.FH, a, err
}

func (c *client) create(cred who, dir []byte, name string, mode uint32, excl bool) ([]byte, *nfs.Fattr, error) {
	how := uint32(0) // UNCHECKED; GUARDED (1) fails if the name exists
	if excl {
		how = 1
	}
	args := struct {
		Where nfs.Diropargs3
		How   uint32
		Attr  nfs.Sattr3
	}{nfs.Diropargs3{FH: dir, Filename: name}, how, nfs.Sattr3{Mode: nfs.SetMode{SetIt: true, Mode: mode & 07777}}}
	var res diropRes
	if _, err := c.call(cred, nfs.NFSProc3Create, args, &res); err != nil {
		return nil, nil, err
	}
	return c.created(cred, dir, name, &res)
}

func (c *client) mkdir(cred who, dir []byte, name string, mode uint32) ([]byte, *nfs.Fattr, error) {
	args := struct {
		Where nfs.Diropargs3
		Attr  nfs.Sattr3
	}{nfs.Diropargs3{FH: dir, Filename: name}, nfs.Sattr3{Mode: nfs.SetMode{SetIt: true, Mode: mode & 07777}}}
	var res diropRes
	if _, err := c.call(cred, nfs.NFSProc3Mkdir, args, &res); resentWith(err, syscall.EEXIST) {
		if fh, a, err := c.lookup(cred, dir, name); err == nil && a.Type == nfs.NF3Dir {
			return fh, a, nil // made by the first MKDIR, whose reply was lost
		}
		return nil, nil, err
	} else if err != nil {
		return nil, nil, err
	}
	return c.created(cred, dir, name, &res)
}

func (c *client) symlink(cred who, dir []byte, name, target string) ([]byte, *nfs.Fattr, error) {
	args := struct {
		Where  nfs.Diropargs3
		Attr   nfs.Sattr3
		Target string
	}{nfs.Diropargs3{FH: dir, Filename: name}, nfs.Sattr3{}, target}
	var res diropRes
	if _, err := c.call(cred, nfs.NFSProc3Symlink, args, &res); err != nil {
		return nil, nil, err
	}
	return c.created(cred, dir, name, &res)
}

// access asks which of the ACCESS3_* rights in want the credential has on fh.
func (c *client) access(cred who, fh []byte, want uint32) (uint32, error) {
	args := struct {
		FH   []byte
		Want uint32
	}{fh, want}
	var res struct {
		Attr nfs.PostOpAttr
		Got  uint32
	}
	_, err := c.call(cred, nfs.NFSProc3Access, args, &res)
	return res.Got, err
}

func (c *client) readlink(cred who, fh []byte) (string, error) {
	var res struct {
		Attr   nfs.PostOpAttr
		Target string
	}
	_, err := c.call(cred, nfs.NFSProc3Readlink, fh, &res)
	return res.Target, err
}

func (c *client) link(cred who, fh, dir []byte, name string) (*nfs.Fattr, error) {
	args := struct {
		FH   []byte
		Link nfs.Diropargs3
	}{fh, nfs.Diropargs3{FH: dir, Filename: name}}
	var res nfs.PostOpAttr
	if _, err := c.call(cred, procLink, args, &res); err != nil {
		return nil, err
	}
	return c.postOp(cred, fh, res)
}

func (c *client) remove(cred who, proc uint32, dir []byte, name string) error {
	_, err := c.call(cred, proc, nfs.Diropargs3{FH: dir, Filename: name}, nil)
	if resentWith(err, syscall.ENOENT) {
		return nil // removed by the first call, whose reply was lost
	}
	return err
}

func (c *client) rename(cred who, from []byte, fromName string, to []byte, toName string) error {
	args := struct{ From, To nfs.Diropargs3 }{nfs.Diropargs3{FH: from, Filename: fromName}, nfs.Diropargs3{FH: to, Filename: toName}}
	_, err := c.call(cred, nfs.NFSProc3Rename, args, nil)
	if resentWith(err, syscall.ENOENT) {
		return nil // renamed by the first call, whose reply was lost
	}
	return err
}

// read fills dest from off with READs of at most rsize; it stops early only at end of file.
func (c *client) read(cred who, fh []byte, off int64, dest []byte) (int, error) {
	n := 0
	for n < len(dest) {
		args := struct {
			FH     []byte
			Offset uint64
			Count  uint32
		}{fh, uint64(off) + uint64(n), uint32(min(len(dest)-n, int(c.rsize)))}
		var res struct {
			Attr  nfs.PostOpAttr
			Count uint32
			EOF   bool
		}
		r, err := c.call(cred, nfs.NFSProc3Read, args, &res)
		if err != nil {
			return n, err
		}
		var length uint32 // the data is opaque<>: its length, then the bytes
		if length, err = xdr.ReadUint32(r); err != nil || int(length) > len(dest)-n {
			return n, errors.Join(err, errors.New("bad READ reply"))
		}
		if _, err = io.ReadFull(r, dest[n:n+int(length)]); err != nil {
			return n, err
		}
		n += int(length)
		if res.EOF || length == 0 {
			break
		}
	}
	return n, nil
}

// write sends data at off in FILE_SYNC WRITEs of at most wsize, resending what a short reply
// left out. FILE_SYNC: the data is on the server's disk when the reply comes, so nothing has to
// be kept for a COMMIT, nor sent again if the server restarts before one (as UNSTABLE data must
// be, when COMMIT's write verifier differs from the WRITEs'); with ganesha it is as fast here.
// A WRITE whose reply was lost is just sent again: a write at an offset is idempotent.
func (c *client) write(cred who, fh []byte, off int64, data []byte) error {
	for len(data) > 0 {
		chunk := data[:min(len(data), int(c.wsize))]
		args := struct {
			FH     []byte
			Offset uint64
			Count  uint32
			Stable uint32
			Data   []byte
		}{fh, uint64(off), uint32(len(chunk)), stableFile, chunk}
		var res struct {
			Wcc       nfs.WccData
			Count     uint32
			Committed uint32
			Verf      uint64
		}
		if _, err := c.call(cred, nfs.NFSProc3Write, args, &res); err != nil {
			return err
		}
		if res.Count == 0 || int(res.Count) > len(chunk) {
			return fmt.Errorf("WRITE reply counts %d of %d bytes", res.Count, len(chunk))
		}
		data, off = data[res.Count:], off+int64(res.Count)
	}
	return nil
}

// readdir lists a directory with READDIRPLUS (the library's entry type), in 64 KiB replies.
// A server that restarted between two replies may not know the cookie any more: then again
// from the start, once.
func (c *client) readdir(cred who, dir []byte) ([]nfs.EntryPlus, error) {
	var out []nfs.EntryPlus
	var cookie, verf uint64
	for restarted := false; ; {
		args := struct {
			FH                 []byte
			Cookie, CookieVerf uint64
			DirCount, MaxCount uint32
		}{dir, cookie, verf, 16 << 10, 64 << 10}
		var head struct {
			DirAttr nfs.PostOpAttr
			Verf    uint64
		}
		r, err := c.call(cred, nfs.NFSProc3ReadDirPlus, args, &head)
		if errors.Is(err, nfsError(badCookie)) && cookie != 0 && !restarted {
			out, cookie, verf, restarted = nil, 0, 0, true
			continue
		}
		for err == nil { // entries follow as an XDR optional-data list
			var e struct {
				More  bool          `xdr:"union"`
				Entry nfs.EntryPlus `xdr:"unioncase=1"`
			}
			if err = xdr.Read(r, &e); err != nil || !e.More {
				break
			}
			out = append(out, e.Entry)
			cookie = e.Entry.Cookie
		}
		var eof bool
		if err == nil {
			err = xdr.Read(r, &eof)
		}
		if err != nil || eof {
			return out, err
		}
		verf = head.Verf
	}
}

type fsstat struct {
	Attr                                           nfs.PostOpAttr
	Tbytes, Fbytes, Abytes, Tfiles, Ffiles, Afiles uint64
	Invarsec                                       uint32
}

func (c *client) fsstat(cred who, fh []byte) (*fsstat, error) {
	var s fsstat
	_, err := c.call(cred, procFsstat, fh, &s)
	return &s, err
}

func (c *client) fsinfo(fh []byte) (*nfs.FSInfo, error) {
	var fi nfs.FSInfo
	_, err := c.call(c.rootCred, nfs.NFSProc3FSInfo, fh, &fi)
	return &fi, err
}
