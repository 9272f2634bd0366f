package devsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StopServers stops the PostgreSQL and Redis servers of this machine for
// which match, given the server's data directory (its working directory)
// and whether that directory was deleted, says so, and returns how many it
// stopped. Only a PostgreSQL server's postmaster is signalled (SIGINT, then
// SIGQUIT); its backends go with it. A Redis server whose directory was
// deleted gets SIGKILL, since SIGTERM would make it save a snapshot there,
// fail, and refuse to exit; others get SIGTERM. It is for callers that own
// a convention of where their servers live (package testenv).
func StopServers(match func(dir string, deleted bool) bool, log *slog.Logger) int {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	stopped := 0
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm := procComm(pid)
		if comm != "postgres" && comm != "redis-server" {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			continue
		}
		dir, deleted := strings.CutSuffix(cwd, " (deleted)")
		if !match(dir, deleted) {
			continue
		}
		sig, escalate := syscall.SIGTERM, syscall.SIGKILL
		switch {
		case comm == "postgres":
			if procComm(procParent(pid)) == "postgres" {
				continue // a backend or helper: its postmaster is signalled
			}
			sig, escalate = syscall.SIGINT, syscall.SIGQUIT
		case deleted:
			sig = syscall.SIGKILL
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = stopProcess(ctx, pid, sig, escalate)
		cancel()
		if err != nil {
			log.Warn("cannot stop an abandoned server", slog.String("program", comm), slog.Int("pid", pid), slog.String("error", err.Error()))
			continue
		}
		stopped++
		log.Warn("stopped an abandoned server", slog.String("program", comm), slog.Int("pid", pid), slog.String("dir", dir), slog.Bool("deleted", deleted))
	}
	return stopped
}

// procComm is the program name of pid ("" when unknown).
func procComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// procParent is the parent pid of pid (0 when unknown).
func procParent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields follow the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// ownerFile, in a directory kept apart from the directory it serves (a
// cluster's home under systemDataRoot, a test service directory in the
// temporary directory), names the directory it serves.
const ownerFile = "owner"

// WriteOwner records in dir that it serves owner, an absolute path.
func WriteOwner(dir, owner string) error {
	path := filepath.Join(dir, ownerFile)
	if err := os.WriteFile(path, []byte(owner+"\n"), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, unwrapPathErr(err))
	}
	return nil
}

// OwnerGone returns the directory dir's owner file names and whether that
// directory no longer exists; gone is false when dir names no owner.
func OwnerGone(dir string) (owner string, gone bool) {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	owner = strings.TrimSpace(string(b))
	if err != nil || !filepath.IsAbs(owner) {
		return "", false
	}
	_, err = os.Lstat(owner)
	return owner, errors.Is(err, os.ErrNotExist)
}
