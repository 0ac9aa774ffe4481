// Command swa-nfs-mount is the mount helper the local cluster's kubelet runs, through its
// --experimental-mounter-path flag, for every mount it makes; it gives nfs volumes an NFSv3
// client on a machine whose kernel has none, as a FUSE file system (go-fuse) speaking NFSv3 over
// TCP (go-nfs-client's RPC and XDR).
//
//	swa-nfs-mount mount [-t TYPE] [-o OPT,...] SOURCE TARGET
//
// The arguments come in any order, as for mount(8). What it does:
//
//   - TYPE other than nfs/nfs4: runs /bin/mount with the same arguments.
//   - SOURCE is SERVER:/PATH. SERVER (an address, or a name in /etc/hosts) must be a loopback
//     address or an address of this machine, else exit 32 with nothing contacted (logged to
//     $SWA_NFS_GUARD_LOG when set): this helper exists for the project's local test exports.
//     SWA_NFS_ALLOW_GATEWAY=1 (the kind node image's kubelet) also allows the default gateway,
//     which in a kind node is the machine running the node container.
//   - A kernel with an NFS client (nfs in /proc/filesystems) gets the mount: /bin/mount -t nfs,
//     unless SWA_NFS_CLIENT=fuse asks for this client anyway (its tests, on such a machine).
//   - Else a daemon is started in a session of its own (stdio to a log in $SWA_NFS_LOG_DIR, or
//     /dev/null) and the command returns once the mount is live (exit 0) or failed (exit 32 with
//     the daemon's reason). A plain `umount TARGET` ends the daemon after it flushed; so does
//     SIGTERM, after it unmounted.
//
// Options: port=, mountport= (else the portmapper on 111 is asked), nfsvers=/vers= (3 only),
// ro, rw, rsize=, wsize=, resvport (bind a source port below 1024), noexec, hard, soft, timeo=,
// retrans= (below); the other usual NFS options (proto=tcp, nolock, actimeo=, noatime, ...) are
// accepted and have no effect; unknown ones are logged and ignored. SWA_NFS_DEBUG=1 logs every
// request.
//
// When the server goes away (stopped, restarted) the daemon keeps the mount and redials the same
// address and ports (asking the portmapper again if it gave them): at once, then after 0.2 s,
// doubling up to every 2 s. The calls the broken connection left unanswered are sent again on
// the new one, so a restarted server is simply used again: NFSv3 keeps no state on the server,
// and ganesha's file handles outlive its restarts (a stale one is ESTALE, as with the kernel).
// Meanwhile, as with the kernel's client:
//
//   - hard (the default): calls wait for the server, however long it takes. A process killed
//     meanwhile gets EINTR and can exit (FUSE alone would leave it in D state). SIGTERM to the
//     daemon ends all waits with EIO and unmounts. The mount point's attributes and statfs are
//     answered from the last ones while the server is away, so umount TARGET, which asks for
//     both, returns at once; the daemon then exits, losing bytes not yet sent (those of a write
//     without close or fsync: close waits for the server) if one more dial fails.
//   - soft: a call fails with EIO when the server has not answered it within timeo*(retrans+1)
//     (timeo in tenths of a second, default 50; retrans default 2: 15 s), and once the server
//     has been away that long, new calls fail at once until it is back.
//
// A connection on which nothing arrived for timeo is probed with a NULL call and, if that gets no
// answer within another timeo, dropped and redialled: this catches a server that vanished
// without closing it. Written data is sent with FILE_SYNC WRITEs, so nothing the server
// acknowledged can be lost by its restart.
package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/willscott/go-nfs-client/nfs"
)

const exitFail = 32 // mount(8)'s "mount failure"

// debug (SWA_NFS_DEBUG set) logs every FUSE request and NFS call of the daemon.
var debug = os.Getenv("SWA_NFS_DEBUG") != ""

func logf(format string, args ...any) { log.Printf(format, args...) }

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "swa-nfs-mount: "+format+"\n", args...)
	os.Exit(exitFail)
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		serve(args[1:])
		return
	}
	if len(args) > 0 && args[0] == "mount" {
		args = args[1:]
	}
	mountCmd(args)
}

// mountArgs is a mount(8) command line: -t and -o in any order and form, two operands.
type mountArgs struct {
	typ, source, target string
	opts                []string
}

func parseArgs(args []string) (m mountArgs, err error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func(short, long string) (string, bool) {
			if a == short || a == long {
				if i+1 < len(args) {
					i++
					return args[i], true
				}
				err = fmt.Errorf("%s needs a value", a)
			} else if v, ok := strings.CutPrefix(a, long+"="); ok {
				return v, true
			} else if v, ok := strings.CutPrefix(a, short); ok && len(a) > 2 && !strings.HasPrefix(a, "--") {
				return v, true
			}
			return "", false
		}
		if v, ok := val("-t", "--types"); ok {
			m.typ = v
		} else if v, ok := val("-o", "--options"); ok {
			m.opts = append(m.opts, strings.Split(v, ",")...)
		} else if a == "-r" || a == "--read-only" {
			m.opts = append(m.opts, "ro")
		} else if a == "-w" || a == "--rw" {
			m.opts = append(m.opts, "rw")
		} else if strings.HasPrefix(a, "-") && a != "-" {
			continue // -n, -v, -f, -s, -i ...: nothing to do for us
		} else {
			pos = append(pos, a)
		}
	}
	if err == nil && len(pos) != 2 {
		err = fmt.Errorf("want SOURCE and TARGET, got %q", pos)
	}
	if err == nil {
		m.source, m.target = pos[0], pos[1]
	}
	return m, err
}

func mountCmd(args []string) {
	log.SetOutput(io.Discard) // option notes are for the daemon's log, not the kubelet's output
	m, err := parseArgs(args)
	if err != nil || (m.typ != "nfs" && m.typ != "nfs4") {
		execMount(args) // not ours (or not understood): mount(8) decides
	}
	server, _, ok := splitSource(m.source)
	if !ok {
		fail("%s: want SERVER:/PATH", m.source)
	}
	if abs, err := filepath.Abs(m.target); err == nil {
		m.target = abs // the daemon runs in /
	}
	ip, err := guard(server)
	if err != nil {
		if f := os.Getenv("SWA_NFS_GUARD_LOG"); f != "" {
			if lf, e := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); e == nil {
				fmt.Fprintf(lf, "%s %s %s\n", time.Now().Format(time.RFC3339), m.source, m.target)
				lf.Close()
			}
		}
		fail("refusing to mount %s: %v", m.source, err)
	}
	fsTypes, _ := os.ReadFile("/proc/filesystems")
	if strings.Contains("\n"+string(fsTypes), "\tnfs\n") && os.Getenv("SWA_NFS_CLIENT") != "fuse" {
		execMount(args) // the kernel's own client does it better
	}
	if _, err := parseOpts(m.opts, m.typ); err != nil {
		fail("mount %s at %s: %v", m.source, m.target, err)
	}
	startDaemon(m, ip)
}

func execMount(args []string) {
	err := syscall.Exec("/bin/mount", append([]string{"mount"}, args...), os.Environ())
	fail("exec /bin/mount: %v", err)
}

// splitSource splits SERVER:/PATH; SERVER may be [IPv6].
func splitSource(s string) (server, path string, ok bool) {
	i := strings.Index(s, ":/")
	if i <= 0 {
		return "", "", false
	}
	server, path = s[:i], s[i+1:]
	server = strings.TrimSuffix(strings.TrimPrefix(server, "["), "]")
	return server, filepath.Clean(path), true
}

// guard returns the address to use for server if every address it names is this machine's:
// loopback, or an address of one of its interfaces. It runs before any connection is made, and
// looks names up in /etc/hosts only: a DNS query would itself leave the machine.
func guard(server string) (string, error) {
	refuse := fmt.Errorf("%s is not an address of this machine (only local test exports may be mounted here)", server)
	ips := []net.IP{net.ParseIP(server)}
	if ips[0] == nil {
		ips = hostsLookup(server)
	}
	ifAddrs, _ := net.InterfaceAddrs()
	gateway := net.IP(nil)
	if os.Getenv("SWA_NFS_ALLOW_GATEWAY") == "1" {
		gateway = defaultGateway()
	}
	for _, ip := range ips {
		local := ip.IsLoopback() || (gateway != nil && gateway.Equal(ip))
		for _, a := range ifAddrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				local = true
			}
		}
		if !local {
			return "", refuse
		}
	}
	if len(ips) == 0 {
		return "", refuse
	}
	return ips[0].String(), nil
}

// defaultGateway returns the IPv4 default route's gateway (/proc/net/route), or nil. In a kind
// node, a container on this machine's podman network, that gateway is this machine: the node
// image sets SWA_NFS_ALLOW_GATEWAY=1 for its kubelet, and nowhere else is it set.
func defaultGateway() net.IP {
	routes, _ := os.ReadFile("/proc/net/route")
	for _, line := range strings.Split(string(routes), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "00000000" {
			continue
		}
		var g uint32
		if _, err := fmt.Sscanf(f[2], "%x", &g); err == nil && g != 0 {
			return net.IPv4(byte(g), byte(g>>8), byte(g>>16), byte(g>>24))
		}
	}
	return nil
}

// hostsLookup returns the addresses /etc/hosts gives name (localhost is loopback regardless).
func hostsLookup(name string) (ips []net.IP) {
	hosts, _ := os.ReadFile("/etc/hosts")
	for _, line := range strings.Split(string(hosts), "\n") {
		f := strings.Fields(strings.SplitN(line, "#", 2)[0])
		for i := 1; i < len(f); i++ {
			if ip := net.ParseIP(f[0]); ip != nil && strings.EqualFold(f[i], name) {
				ips = append(ips, ip)
			}
		}
	}
	if len(ips) == 0 && strings.EqualFold(name, "localhost") {
		ips = append(ips, net.IPv4(127, 0, 0, 1))
	}
	return ips
}

type options struct {
	port, mountPort int
	rsize, wsize    uint32
	ro, noexec      bool
	resv            bool
	soft            bool
	timeo, retrans  int // tenths of a second; tries: see the package comment and policy
}

var ignored = map[string]bool{"tcp": true, "proto": true, "nolock": true,
	"lock": true, "noatime": true, "atime": true, "relatime": true,
	"nodiratime": true, "actimeo": true, "acregmin": true, "acregmax": true, "acdirmin": true,
	"acdirmax": true, "ac": true, "noac": true, "sync": true, "async": true, "intr": true,
	"nointr": true, "nosuid": true, "suid": true, "nodev": true, "dev": true, "exec": true,
	"noresvport": true, "sec": true, "mountproto": true, "mountvers": true, "defaults": true,
	"_netdev": true, "nofail": true, "noacl": true, "local_lock": true, "lookupcache": true,
	"fsc": true, "nofsc": true, "retry": true, "bg": true, "fg": true, "cto": true, "nocto": true}

func parseOpts(list []string, typ string) (o options, err error) {
	o.rsize, o.wsize = maxTransfer, maxTransfer
	o.timeo, o.retrans = 50, 2
	vers := "3"
	if typ == "nfs4" {
		vers = "4"
	}
	for _, opt := range list {
		k, v, _ := strings.Cut(opt, "=")
		num := func() int {
			n, e := strconv.Atoi(v)
			if e != nil || n < 0 {
				err = fmt.Errorf("option %s: not a number", opt)
			}
			return n
		}
		switch k {
		case "":
		case "port":
			o.port = num()
		case "mountport":
			o.mountPort = num()
		case "nfsvers", "vers":
			vers = v
		case "rsize":
			o.rsize = uint32(min(max(num(), 4096), maxTransfer))
		case "wsize":
			o.wsize = uint32(min(max(num(), 4096), maxTransfer))
		case "ro":
			o.ro = true
		case "rw":
			o.ro = false
		case "noexec":
			o.noexec = true
		case "resvport":
			o.resv = true
		case "hard":
			o.soft = false
		case "soft":
			o.soft = true
		case "timeo":
			o.timeo = max(num(), 1)
		case "retrans":
			o.retrans = num()
		default:
			if (k == "proto" || k == "mountproto") && v != "tcp" && v != "tcp6" {
				err = fmt.Errorf("option %s: only TCP is supported", opt)
			} else if !ignored[k] {
				logf("ignoring unknown option %q", opt)
			}
		}
	}
	if vers != "3" && vers != "3.0" {
		err = fmt.Errorf("NFS version %s is not supported: this client speaks NFSv3 only (use -t nfs -o nfsvers=3)", vers)
	}
	return o, err
}

// startDaemon re-executes this binary as `serve` in a new session, with stdio on a log file
// and fd 3 a pipe on which it reports "ok" or why it failed, and returns its verdict. The kubelet
// waits for this command's output to close, so nothing of ours may keep its pipes open.
func startDaemon(m mountArgs, ip string) {
	self, err := os.Executable()
	if err != nil {
		fail("%v", err)
	}
	logName := os.DevNull
	if dir := os.Getenv("SWA_NFS_LOG_DIR"); dir != "" {
		sum := sha256.Sum256([]byte(m.target))
		logName = filepath.Join(dir, fmt.Sprintf("nfs-mount-%s-%x.log", filepath.Base(m.target), sum[:4]))
	}
	logFile, err := os.OpenFile(logName, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fail("log file: %v", err)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		fail("%v", err)
	}
	closeInherited()
	cmd := exec.Command(self, "serve", ip, m.source, m.target, strings.Join(m.opts, ","))
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles, cmd.Dir = logFile, logFile, []*os.File{wr}, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fail("start daemon: %v", err)
	}
	wr.Close()
	logFile.Close()
	rd.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(rd).ReadString('\n')
	if strings.TrimSpace(line) == "ok" {
		cmd.Process.Release()
		os.Exit(0)
	}
	cmd.Process.Kill()
	if line == "" {
		line = fmt.Sprintf("mount %s at %s: the daemon gave no answer (%v); see %s", m.source, m.target, err, logName)
	}
	fail("%s", strings.TrimSpace(line))
}

// closeInherited marks every descriptor above stderr close-on-exec, so that the daemon holds
// no pipe of whoever ran us (the Go runtime passes on any descriptor not so marked).
func closeInherited() {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// serve is the daemon: connect, mount, report on fd 3, serve until unmounted, flush, exit.
func serve(args []string) {
	log.SetPrefix(fmt.Sprintf("swa-nfs-mount[%d] ", os.Getpid()))
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	report := os.NewFile(3, "report")
	if len(args) != 4 {
		log.Fatalf("usage: serve IP SOURCE TARGET OPTIONS")
	}
	ip, source, target := args[0], args[1], args[2]
	_, path, _ := splitSource(source)
	die := func(err error) {
		msg := fmt.Sprintf("mount %s at %s: %v", source, target, err)
		logf("%s", msg)
		fmt.Fprintln(report, msg)
		os.Exit(exitFail)
	}
	o, err := parseOpts(strings.Split(args[3], ","), "nfs")
	if err != nil {
		die(err)
	}
	type result struct {
		c    *client
		root []byte
		attr *nfs.Fattr
		err  error
	}
	done := make(chan result, 1)
	go func() { c, root, a, err := connect(ip, path, o); done <- result{c, root, a, err} }()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		r.err = fmt.Errorf("no answer from %s within 10s", ip)
	}
	if r.err != nil {
		die(r.err)
	}

	zero := time.Duration(0)
	flags := uintptr(syscall.MS_NOSUID | syscall.MS_NODEV)
	if o.ro {
		flags |= syscall.MS_RDONLY
	}
	if o.noexec {
		flags |= syscall.MS_NOEXEC
	}
	st := stable(r.root, r.attr)
	server, err := fs.Mount(target, &node{c: r.c, fh: r.root}, &fs.Options{
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero, RootStableAttr: &st,
		MountOptions: fuse.MountOptions{
			FsName: source, Name: "nfs", AllowOther: true, DirectMountStrict: true,
			DirectMountFlags: flags, MaxWrite: maxTransfer, MaxReadAhead: maxTransfer,
			MaxBackground: 64, DisableReadDirPlus: true, DisableXAttrs: true, Debug: debug,
			DisableSplice: true, // replies are in memory; splicing 1 MiB ones overflows the pipe
		},
	})
	if err != nil {
		die(fmt.Errorf("FUSE mount: %w", err))
	}
	// FUSE starts the mount's readahead at 128 KiB whatever it asks; a whole rsize per READ
	// doubles sequential read speed. The knob is the mount's backing device's, in sysfs.
	var tst syscall.Stat_t
	if syscall.Stat(target, &tst) == nil {
		bdi := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", tst.Dev>>8&0xfff, tst.Dev&0xff|tst.Dev>>12&0xfff00)
		os.WriteFile(bdi, []byte(strconv.Itoa(int(r.c.rsize)/1024)), 0)
	}
	mode := "hard"
	if o.soft {
		mode = fmt.Sprintf("soft, giving up after %v", r.c.nfs.pol.giveUp)
	}
	logf("mounted %s (rsize %d, wsize %d, %s) at %s", source, r.c.rsize, r.c.wsize, mode, target)
	fmt.Fprintln(report, "ok")
	report.Close()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		s := <-sigs
		logf("%v: unmounting %s", s, target)
		// First end the waits for an absent server: a process blocked in one keeps the mount busy.
		r.c.nfs.pol.shutdown()
		if err := server.Unmount(); err != nil {
			logf("unmount: %v; detaching instead", err)
			syscall.Unmount(target, syscall.MNT_DETACH)
		}
	}()
	server.Wait()
	// Unmounted: what is left to send goes if the server is there, else (one dial tried) is lost.
	r.c.nfs.pol.shutdown()
	flushAll()
	r.c.unmount()
	logf("unmounted %s; exiting", target)
}

// connect dials MOUNT and NFS, gets the root handle for path and settles the transfer sizes.
// The MOUNT connection is closed then: it is only needed again at unmount, and redialled.
func connect(ip, path string, o options) (*client, []byte, *nfs.Fattr, error) {
	pol := newPolicy(o)
	c := &client{rootCred: who{auth: makeAuth(0, 0, nil)},
		mnt: &rpcClient{name: "MOUNT", ip: ip, port: o.mountPort, prog: nfs.MountProg, resv: o.resv, pol: pol},
		nfs: &rpcClient{name: "NFS", ip: ip, port: o.port, prog: nfs.Nfs3Prog, resv: o.resv, pol: pol}}
	if err := c.mnt.open(); err != nil {
		return nil, nil, nil, fmt.Errorf("MOUNT: %w (is the NFS server running?)", unwrapOp(err))
	}
	if err := c.nfs.open(); err != nil {
		return nil, nil, nil, fmt.Errorf("NFS: %w (is the NFS server running?)", unwrapOp(err))
	}
	root, err := c.mount(path) // may LOOKUP below the export, so after the NFS dial
	c.mnt.close()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("MOUNT: %w", err)
	}
	fi, err := c.fsinfo(root)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("NFS FSINFO: %w", err)
	}
	// The largest transfer both sides allow: FUSE sends at most 1 MiB per request.
	c.rsize, c.wsize = min(o.rsize, max(fi.RTMax, 4096)), min(o.wsize, max(fi.WTMax, 4096))
	a, err := c.getattr(c.rootCred, root)
	if err == nil && a.Type != nfs.NF3Dir {
		err = syscall.ENOTDIR
	}
	c.rootAttr.Store(a)
	if s, err := c.fsstat(c.rootCred, root); err == nil {
		c.lastStat.Store(s) // for a statfs while the server is away, before any other
	}
	return c, root, a, err
}

// unwrapOp shortens "dial tcp 127.0.0.1:2049: connect: connection refused" to its cause.
func unwrapOp(err error) error {
	if op, ok := err.(*net.OpError); ok {
		if sc, ok := op.Err.(*os.SyscallError); ok {
			return sc.Err
		}
	}
	return err
}
