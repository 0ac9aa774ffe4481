package main

// The FUSE side: one node per NFS file handle. Nothing is cached here: the kernel is told that
// entries and attributes expire at once, so every path walk and stat asks the server and a
// change made through another mount (another pod's) is seen at the next call. The one buffer is
// a per-file write-behind that gathers the kernel's small WRITEs into wsize-sized RPCs (FILE_SYNC
// ones, see client.write); it is sent before anything that must see the data (read, stat,
// truncate, lookup) and by close, fsync and unmount, as NFS's close-to-open consistency asks.

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
)

type node struct {
	fs.Inode
	c  *client
	fh []byte // fixed: a new handle for the same inode number makes a new node (see stable)

	w      sync.Mutex // guards the fields below
	buf    []byte     // bytes written but not yet sent, for file offset bufOff on
	bufOff int64
	werr   error    // a failed background send, reported by the next flush or fsync
	wcred  rpc.Auth // the last writer's credential, used to send its buffered bytes

	opens  atomic.Int32 // open file descriptions, for the unlink-while-open rename
	silly  []byte       // under w; when set: the directory holding the renamed-away file ...
	sillyN string       // ... and its name there, removed at the last close
}

var (
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeGetattrer  = (*node)(nil)
	_ fs.NodeSetattrer  = (*node)(nil)
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeReader     = (*node)(nil)
	_ fs.NodeWriter     = (*node)(nil)
	_ fs.NodeFlusher    = (*node)(nil)
	_ fs.NodeFsyncer    = (*node)(nil)
	_ fs.NodeReleaser   = (*node)(nil)
	_ fs.NodeCreater    = (*node)(nil)
	_ fs.NodeMkdirer    = (*node)(nil)
	_ fs.NodeUnlinker   = (*node)(nil)
	_ fs.NodeRmdirer    = (*node)(nil)
	_ fs.NodeRenamer    = (*node)(nil)
	_ fs.NodeReaddirer  = (*node)(nil)
	_ fs.NodeSymlinker  = (*node)(nil)
	_ fs.NodeReadlinker = (*node)(nil)
	_ fs.NodeLinker     = (*node)(nil)
	_ fs.NodeStatfser   = (*node)(nil)
	_ fs.NodeAccesser   = (*node)(nil)
)

// dirty holds the nodes with unsent bytes (or an unreported error), flushed once more at unmount.
var dirty sync.Map

var nfsType = map[uint32]uint32{nfs.NF3Reg: syscall.S_IFREG, nfs.NF3Dir: syscall.S_IFDIR,
	nfs.NF3Lnk: syscall.S_IFLNK, nfs.NF3Blk: syscall.S_IFBLK, nfs.NF3Chr: syscall.S_IFCHR,
	nfs.NF3Sock: syscall.S_IFSOCK, nfs.NF3FIFO: syscall.S_IFIFO}

// stable is a node's identity for go-fuse. The generation is a hash of the handle, so a file
// deleted and recreated (possibly elsewhere) under a recycled inode number is a new node, not
// the old node with a stale handle; a hard link has the same handle and so the same node.
func stable(fh []byte, a *nfs.Fattr) fs.StableAttr {
	h := fnv.New64a()
	h.Write(fh)
	return fs.StableAttr{Mode: nfsType[a.Type], Ino: a.Fileid, Gen: h.Sum64()}
}

func fill(out *fuse.Attr, a *nfs.Fattr) {
	out.Ino, out.Size, out.Blocks = a.Fileid, a.Filesize, (a.Used+511)/512
	out.Mode, out.Nlink, out.Uid, out.Gid = nfsType[a.Type]|a.FileMode&07777, a.Nlink, a.UID, a.GID
	out.Rdev = uint32(a.SpecData[0]<<8 | a.SpecData[1]&0xff | (a.SpecData[1]&^0xff)<<12)
	out.Atime, out.Atimensec = uint64(a.Atime.Seconds), a.Atime.Nseconds
	out.Mtime, out.Mtimensec = uint64(a.Mtime.Seconds), a.Mtime.Nseconds
	out.Ctime, out.Ctimensec = uint64(a.Ctime.Seconds), a.Ctime.Nseconds
	out.Blksize = maxTransfer // cp and friends size their buffers by this
}

// child wraps a handle from LOOKUP/CREATE/... as an inode and fills the kernel's entry.
func (n *node) child(ctx context.Context, fh []byte, a *nfs.Fattr, out *fuse.EntryOut) *fs.Inode {
	fill(&out.Attr, a)
	return n.NewInode(ctx, &node{c: n.c, fh: fh}, stable(fh, a))
}

func ops(in *fs.Inode) *node { return in.Operations().(*node) }

// send writes the buffered bytes out, as the last writer, for the request of ctx (nil: the
// daemon's own). A failure is kept for the next sync point (close, fsync), which returns it. If
// the server is away and the process of ctx is being killed (EINTR), the bytes stay buffered
// for a later send: they are the writer's, not the dying process's. Caller holds w.
func (n *node) send(ctx context.Context, sync bool) error {
	cred := who{n.wcred, ctx}
	if cred.auth.Flavor == 0 {
		cred.auth = n.c.rootCred.auth
	}
	if len(n.buf) > 0 {
		err := n.c.write(cred, n.fh, n.bufOff, n.buf)
		if errors.Is(err, syscall.EINTR) {
			return err
		} else if err != nil && n.werr == nil {
			n.werr = err
		}
		n.buf = n.buf[:0]
	}
	if !sync {
		return nil
	}
	err := n.werr
	n.buf, n.werr = nil, nil
	dirty.Delete(n)
	return err
}

func (n *node) flushed(ctx context.Context, sync bool) error {
	n.w.Lock()
	defer n.w.Unlock()
	if len(n.buf) == 0 && !sync {
		return nil
	}
	return n.send(ctx, sync)
}

// Getattr asks the server, except for the root while the server is away: then the root's last
// attributes do, as the kernel's client would answer from its attribute cache. umount(8) and
// the kubelet stat the mount point before they unmount it, and must not wait for the server.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if a := n.c.rootAttr.Load(); n.IsRoot() && a != nil && n.c.nfs.away() {
		fill(&out.Attr, a)
		return 0
	}
	n.flushed(ctx, false) // the server's size must include what this mount wrote
	a, err := n.c.getattr(n.c.cred(ctx), n.fh)
	if err == nil {
		fill(&out.Attr, a)
		if n.IsRoot() {
			n.c.rootAttr.Store(a)
		}
	}
	return errno(err)
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if err := n.flushed(ctx, false); errors.Is(err, syscall.EINTR) {
		return syscall.EINTR // a truncate must come after the writes before it
	}
	var s nfs.Sattr3
	if m, ok := in.GetMode(); ok {
		s.Mode = nfs.SetMode{SetIt: true, Mode: m & 07777}
	}
	if u, ok := in.GetUID(); ok {
		s.UID = nfs.SetUID{SetIt: true, UID: u}
	}
	if g, ok := in.GetGID(); ok {
		s.GID = nfs.SetUID{SetIt: true, UID: g}
	}
	if sz, ok := in.GetSize(); ok {
		s.Size = nfs.SetSize{SetIt: true, Size: sz}
	}
	setTime := func(t time.Time, now bool) nfs.SetTime {
		if now {
			return nfs.SetTime{SetIt: nfs.SetToServerTime}
		}
		return nfs.SetTime{SetIt: nfs.SetToClientTime, Time: nfs.NFS3Time{Seconds: uint32(t.Unix()), Nseconds: uint32(t.Nanosecond())}}
	}
	if t, ok := in.GetATime(); ok {
		s.Atime = setTime(t, in.Valid&fuse.FATTR_ATIME_NOW != 0)
	}
	if t, ok := in.GetMTime(); ok {
		s.Mtime = setTime(t, in.Valid&fuse.FATTR_MTIME_NOW != 0)
	}
	a, err := n.c.setattr(n.c.cred(ctx), n.fh, s)
	if err == nil {
		fill(&out.Attr, a)
	}
	return errno(err)
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if ch := n.GetChild(name); ch != nil {
		ops(ch).flushed(ctx, false) // its size comes with this reply
	}
	fh, a, err := n.c.lookup(n.c.cred(ctx), n.fh, name)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, fh, a, out), 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	es, err := n.c.readdir(n.c.cred(ctx), n.fh)
	list := make([]fuse.DirEntry, 0, len(es))
	for _, e := range es {
		list = append(list, fuse.DirEntry{Name: e.FileName, Ino: e.FileId, Mode: nfsType[e.Attr.Attr.Type]})
	}
	return fs.NewListDirStream(list), errno(err)
}

// check asks the server whether the caller may read (4), write (2) or search/execute (1).
// Permissions are the server's to decide, as with the kernel's NFS client: the mount has no
// default_permissions, which would have the kernel refresh attributes (a GETATTR) for every
// directory of every path it walks, since attributes never stay valid here.
func (n *node) check(ctx context.Context, mask uint32) syscall.Errno {
	var want uint32
	dir := n.IsDir()
	if mask&4 != 0 {
		want |= nfs.ACCESS3_READ
	}
	if mask&2 != 0 {
		want |= nfs.ACCESS3_MODIFY | nfs.ACCESS3_EXTEND
		if dir {
			want |= nfs.ACCESS3_DELETE
		}
	}
	if mask&1 != 0 && dir {
		want |= nfs.ACCESS3_LOOKUP
	} else if mask&1 != 0 {
		want |= nfs.ACCESS3_EXECUTE
	}
	if want == 0 {
		return 0
	}
	got, err := n.c.access(n.c.cred(ctx), n.fh, want)
	if err == nil && got&want != want {
		return syscall.EACCES
	}
	return errno(err)
}

func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno { return n.check(ctx, mask) }

// Open checks the access mode with the server (NFS has no OPEN). It keeps no per-open state:
// the kernel re-reads data after each open (no FOPEN_KEEP_CACHE), which is the close-to-open
// consistency NFS clients give.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	mask := map[uint32]uint32{syscall.O_RDONLY: 4, syscall.O_WRONLY: 2, syscall.O_RDWR: 6}[flags&syscall.O_ACCMODE]
	if flags&syscall.O_TRUNC != 0 {
		mask |= 2
	}
	if flags&fmodeExec != 0 {
		mask = 1 // exec(2) needs x, not r, as with the kernel's NFS client
	}
	if e := n.check(ctx, mask); e != 0 {
		return nil, 0, e
	}
	n.opens.Add(1)
	return &handle{}, 0, 0
}

const fmodeExec = 0x20 // __FMODE_EXEC, which the kernel sets in the flags of exec's open

// handle is the open file go-fuse wants for calling Release; all state is on the node.
type handle struct{}

func (n *node) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.flushed(ctx, false)
	k, err := n.c.read(n.c.cred(ctx), n.fh, off, dest)
	return fuse.ReadResultData(dest[:k]), errno(err)
}

// Write appends to the write-behind buffer when contiguous with it, sending it first otherwise
// and whenever it reaches wsize. A send failure is returned now and again at close.
func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	n.w.Lock()
	defer n.w.Unlock()
	if caller, ok := fuse.FromContext(ctx); ok && caller.Pid != 0 {
		n.wcred = n.c.cred(ctx).auth
	}
	if len(n.buf) > 0 && (off != n.bufOff+int64(len(n.buf)) || len(n.buf)+len(data) > int(n.c.wsize)) {
		if err := n.send(ctx, false); err != nil {
			return 0, errno(err) // killed while the server is away: the buffer is still full
		}
	}
	if len(n.buf) == 0 {
		n.bufOff = off
		if n.buf == nil {
			n.buf = make([]byte, 0, min(int(n.c.wsize), max(len(data), 64<<10)))
		}
	}
	n.buf = append(n.buf, data...) // go-fuse reuses data's memory after we return: copy it
	dirty.Store(n, struct{}{})
	if len(n.buf) >= int(n.c.wsize) {
		n.send(ctx, false) // on EINTR the bytes stay buffered, and this write is done
	}
	if n.werr != nil {
		return 0, errno(n.werr)
	}
	return uint32(len(data)), 0
}

// Flush comes with every close(2): the written bytes are on the server when close returns.
func (n *node) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	return errno(n.flushed(ctx, true))
}

func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	return errno(n.flushed(ctx, true))
}

// Release comes after the last close, when nobody waits for it any more: it sends as the daemon,
// which waits for an absent server as long as the mount lasts (hard), whoever was killed.
func (n *node) Release(ctx context.Context, f fs.FileHandle) syscall.Errno {
	n.flushed(nil, true)
	n.w.Lock()
	defer n.w.Unlock()
	if n.opens.Add(-1) == 0 && n.silly != nil {
		n.c.remove(n.c.rootCred, nfs.NFSProc3Remove, n.silly, n.sillyN)
		n.silly = nil
	}
	return 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	cred := n.c.cred(ctx)
	fh, a, err := n.c.create(cred, n.fh, name, mode, flags&syscall.O_EXCL != 0)
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	in := n.child(ctx, fh, a, out)
	ops(in).opens.Add(1)
	ops(in).wcred = cred.auth
	return in, &handle{}, 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fh, a, err := n.c.mkdir(n.c.cred(ctx), n.fh, name, mode)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, fh, a, out), 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fh, a, err := n.c.symlink(n.c.cred(ctx), n.fh, name, target)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, fh, a, out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := n.c.readlink(n.c.cred(ctx), n.fh)
	return []byte(t), errno(err)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	t := target.(*node)
	a, err := n.c.link(n.c.cred(ctx), t.fh, n.fh, name)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, t.fh, a, out), 0
}

// Unlink of a file that is still open here renames it to a hidden name instead (as the kernel's
// NFS client does), so that the open descriptors keep working; the last close removes it.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	cred := n.c.cred(ctx)
	if ch := n.GetChild(name); ch != nil && ops(ch).opens.Load() > 0 {
		c := ops(ch)
		c.flushed(ctx, true)
		hidden := ".swa-nfs-" + time.Now().Format("150405.000000000")
		c.w.Lock()
		defer c.w.Unlock()
		if c.silly == nil && n.c.rename(cred, n.fh, name, n.fh, hidden) == nil {
			c.silly, c.sillyN = n.fh, hidden
			return 0
		}
	}
	return errno(n.c.remove(cred, nfs.NFSProc3Remove, n.fh, name))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return errno(n.c.remove(n.c.cred(ctx), nfs.NFSProc3RmDir, n.fh, name))
}

// Rename supports RENAME_NOREPLACE (checked first, so not atomic) but not RENAME_EXCHANGE.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	cred, to := n.c.cred(ctx), newParent.(*node)
	if flags&^1 != 0 {
		return syscall.EINVAL
	} else if flags == 1 {
		if _, _, err := n.c.lookup(cred, to.fh, newName); err == nil {
			return syscall.EEXIST
		}
	}
	return errno(n.c.rename(cred, n.fh, name, to.fh, newName))
}

// Statfs is answered with the last FSSTAT's numbers while the server is away, as Getattr is for
// the root: umount(8) asks for them too.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	s := n.c.lastStat.Load()
	var err error
	if s == nil || !n.c.nfs.away() {
		if s, err = n.c.fsstat(n.c.cred(ctx), n.fh); err == nil {
			n.c.lastStat.Store(s)
		}
	}
	if err == nil {
		const bs = 4096
		out.Bsize, out.Frsize, out.NameLen = bs, bs, 255
		out.Blocks, out.Bfree, out.Bavail = s.Tbytes/bs, s.Fbytes/bs, s.Abytes/bs
		out.Files, out.Ffree = s.Tfiles, s.Ffiles
	}
	return errno(err)
}

// flushAll sends every file's buffered bytes; the daemon runs it after unmount.
func flushAll() {
	dirty.Range(func(k, _ any) bool {
		if err := k.(*node).flushed(nil, true); err != nil {
			logf("flush at unmount: %v", err)
		}
		return true
	})
}
