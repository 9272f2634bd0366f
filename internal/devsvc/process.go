package devsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is what Postgres and Redis share: the server process they started or
// adopted, the port it listens on, and how it is stopped. Its methods are
// safe for concurrent use.
type proc struct {
	name     string // "postgres" or "redis", in errors and logs
	dir      string
	logPath  string
	password string
	log      *slog.Logger
	// stopSig asks for a clean shutdown; forceSig ends a server that has
	// not exited by Stop's deadline, or that failed during start-up.
	stopSig, forceSig syscall.Signal

	mu      sync.Mutex
	pid     int // 0 once stopped
	port    int
	adopted bool
}

// running records the server's process and port.
func (s *proc) running(pid, port int, adopted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pid, s.port, s.adopted = pid, port, adopted
}

// Port returns the TCP port the server listens on (on 127.0.0.1).
func (s *proc) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Dir returns the server's directory.
func (s *proc) Dir() string { return s.dir }

// PID returns the server's process id, 0 once stopped.
func (s *proc) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Adopted reports whether the start found this server already running.
func (s *proc) Adopted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adopted
}

// Stop sends the server its clean-shutdown signal and waits for it to exit.
// When ctx ends first (default limit 30 seconds) it sends the forcing signal
// and returns an error. Stopping a stopped server does nothing.
func (s *proc) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid == 0 {
		return nil
	}
	pid := s.pid
	graceful, err := stopProcess(ctx, pid, s.stopSig, s.forceSig)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.pid = 0
	if !graceful {
		return fmt.Errorf("%s: server (pid %d) did not shut down in time; sent it %s (see %s)", s.name, pid, signalName(s.forceSig), s.logPath)
	}
	s.log.Info(s.name+" stopped", slog.String("dir", s.dir))
	return nil
}

// kill ends a server that failed to become ready: the forcing signal, then
// SIGKILL if it is still there after five seconds.
func (s *proc) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pid == 0 {
		return
	}
	_ = syscall.Kill(s.pid, s.forceSig)
	if !waitGone(s.pid, time.Now().Add(5*time.Second)) && s.forceSig != syscall.SIGKILL {
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
		waitGone(s.pid, time.Now().Add(5*time.Second))
	}
	s.pid = 0
}

// exitedDuringStart returns nil while the server process runs; once it has
// exited, errAddrInUse when its port was taken, else an error quoting its
// log.
func (s *proc) exitedDuringStart() error {
	if processAlive(s.PID()) {
		return nil
	}
	tail := tailFile(s.logPath, 3)
	if strings.Contains(tail, "Address already in use") {
		return errAddrInUse
	}
	return fmt.Errorf("the server exited during start-up: %s (log: %s)", tail, s.logPath)
}

// pollReady calls try every 50 ms until it succeeds, the process exits, or
// ctx ends. try returns done=true with a nil error when the server answers,
// or with an error that retrying cannot mend (a rejected password).
func (s *proc) pollReady(ctx context.Context, try func() (done bool, err error)) error {
	var last error
	for {
		if err := s.exitedDuringStart(); err != nil {
			return err
		}
		done, err := try()
		if done {
			return err
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready before the start deadline (last error: %v; log: %s)", last, s.logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// launchRetrying runs launch, again up to three more times when the free
// port it picked was taken before the server bound it.
func launchRetrying(launch func() error) error {
	for attempt := 0; ; attempt++ {
		err := launch()
		if err == nil || !errors.Is(err, errAddrInUse) || attempt >= 3 {
			return err
		}
	}
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return sig.String()
}

// account is the system user a server runs as. When this process is not
// root, it is this process's own user and cred is nil.
type account struct {
	name string
	uid  int
	gid  int
	gids []int
	cred *syscall.Credential
}

// serverAccount returns the account to run a server that refuses root
// (PostgreSQL) under: this process's user, or the named system user when
// this process runs as root.
func serverAccount(systemUser string) (account, error) {
	if os.Geteuid() != 0 {
		return account{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup(systemUser)
	if err != nil {
		return account{}, fmt.Errorf("running as root needs the %q system user to own the server (install postgresql, which creates it, or run as a normal user): %w", systemUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	a := account{name: systemUser, uid: uid, gid: gid}
	groups, _ := u.GroupIds()
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	for _, g := range groups {
		if n, err := strconv.Atoi(g); err == nil {
			a.gids = append(a.gids, n)
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	a.cred = cred
	return a, nil
}

// canSearch reports whether acct may traverse (execute permission on) a
// directory with the given metadata.
func (a account) canSearch(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || a.uid == 0 {
		return true
	}
	mode := fi.Mode().Perm()
	switch {
	case int(st.Uid) == a.uid:
		return mode&0o100 != 0
	case int(st.Gid) == a.gid || containsInt(a.gids, int(st.Gid)):
		return mode&0o010 != 0
	default:
		return mode&0o001 != 0
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// PostgresCanUse reports whether the postgres system user can reach dir
// directly. It returns nil when this process is not root (the server then
// runs as this process's user); otherwise it checks every existing parent
// directory of dir for search permission, and the error says which one
// blocks (a checkout under /root, mode 0700, is the common case).
// StartPostgres still works on such a dir: it keeps the cluster under
// /var/lib/code4me and links dir/data to it.
func PostgresCanUse(dir string) error {
	acct, err := serverAccount("postgres")
	if err != nil {
		return err
	}
	if acct.cred == nil {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	return checkReachable(acct, abs)
}

// checkReachable checks every existing ancestor of path (path excluded) for
// search permission for acct.
func checkReachable(acct account, path string) error {
	var ancestors []string
	for p := filepath.Dir(path); ; p = filepath.Dir(p) {
		ancestors = append(ancestors, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(ancestors) - 1; i >= 0; i-- {
		p := ancestors[i]
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil // created later by us with a searchable mode
		}
		if err != nil {
			return err
		}
		if !acct.canSearch(fi) {
			return fmt.Errorf("the %s user cannot reach %s because %s is mode %04o; run `chmod o+x %s` or choose a directory outside it",
				acct.name, path, p, fi.Mode().Perm(), p)
		}
	}
	return nil
}

// ensureWritableDir creates dir (mode 0700 unless it exists) and proves it
// is writable by creating and removing a file in it.
func ensureWritableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w; fix the permissions of its parent or set DATA_DIR to a writable directory", dir, unwrapPathErr(err))
	}
	probe, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %w; fix its permissions or set DATA_DIR to a writable directory", dir, unwrapPathErr(err))
	}
	name := probe.Name()
	probe.Close()
	return os.Remove(name)
}

// unwrapPathErr drops the path from a *fs.PathError, which our messages
// already name.
func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// freePort asks the kernel for a free TCP port on the loopback interface.
// Another process may take it before the server binds it; callers retry on
// "address in use".
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// processAlive reports whether pid names a running process. A child of this
// process that has exited is reaped here, so it reads as dead rather than as
// a zombie.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	if err == nil && got == pid {
		return false // our child, exited, now reaped
	}
	if err == nil && got == 0 {
		return true // our child, still running
	}
	// Not our child (ECHILD): ask the kernel.
	err = syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie that is not ours still answers kill(0).
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false
		}
	}
	return true
}

// isServerProcess reports whether the live process pid is the program comm
// serving the directory dir (the server chdirs into its data directory).
// When /proc cannot tell, it trusts comm alone, or a live pid.
func isServerProcess(pid int, comm, dir string) bool {
	if !processAlive(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return true
	}
	if strings.TrimSpace(string(b)) != comm {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true
	}
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		want = dir
	}
	return filepath.Clean(cwd) == filepath.Clean(want)
}

// waitGone waits until pid has exited or deadline passes.
// stopProcess sends sig to pid and waits for it to exit until ctx's deadline
// (30 seconds when ctx has none). A process still running then gets
// escalate and five more seconds. It reports whether the process exited
// before the deadline; err is set only when pid could not be signalled.
func stopProcess(ctx context.Context, pid int, sig, escalate syscall.Signal) (graceful bool, err error) {
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("signal pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	if waitGone(pid, deadline) {
		return true, nil
	}
	_ = syscall.Kill(pid, escalate)
	waitGone(pid, time.Now().Add(5*time.Second))
	return false, nil
}

func waitGone(pid int, deadline time.Time) bool {
	for {
		if !processAlive(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readPidFile returns the pid on the first line of a pid file, 0 when the
// file does not exist or holds no number.
func readPidFile(path string) (int, []string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil
	}
	lines := strings.Split(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
	return pid, lines
}

// tailFile returns up to n last non-empty lines of a file, for error
// messages about a server that would not start.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lastLines(string(b), n)
}

// randomHex returns n random bytes as hex, for passwords.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// filteredEnv is the environment for a server process: ours without the
// libpq variables that would redirect client tools, plus a C locale.
func filteredEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LANG=C", "LC_ALL=C")
}
