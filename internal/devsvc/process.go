package devsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
