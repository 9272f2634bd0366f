package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchWorkerEnv, set to a model in a child process of this test binary,
// makes TestBenchWorkerProcess run `code4me worker --models <model>`.
const benchWorkerEnv = "CODE4ME_TEST_BENCH_WORKER"

// TestBenchWorkerProcess is the worker of TestBenchRemote: this test binary
// started with -test.run selecting only this test, so the child runs no
// other test (and starts no benchmark of its own).
func TestBenchWorkerProcess(t *testing.T) {
	model := os.Getenv(benchWorkerEnv)
	if model == "" {
		t.Skip("the worker process of TestBenchRemote")
	}
	os.Args = []string{"code4me", "worker", "--models", model}
	main() // until SIGTERM; exits 1 itself on error
}

// TestBenchRemote runs `bench server -remote` for a few keystrokes of one
// typist and of two, its worker being TestBenchWorkerProcess. Every
// measured keystroke of the remote path must have run as a River job of
// that worker, the one typist's keystrokes must get the same completion on
// both paths (same model file and seed), and the worker process must be
// gone when the command returns.
func TestBenchRemote(t *testing.T) {
	if testing.Short() {
		t.Skip("starts private Postgres and Redis, a worker process and two servers")
	}
	orig := workerCommand
	t.Cleanup(func() { workerCommand = orig })
	workerCommand = func(model string) (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBenchWorkerProcess$")
		cmd.Env = append(os.Environ(), benchWorkerEnv+"="+model)
		return cmd, nil
	}
	out := filepath.Join(t.TempDir(), "report.md")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const keys = 3
	if err := runBenchServer(ctx, []string{"-remote", "-model", "tiny", "-keystrokes", strconv.Itoa(keys), "-typists", "1,2",
		"-round-trips", "3", "-out", out}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(raw)
	t.Log(report)

	for _, typists := range []int{1, 2} {
		n := strconv.Itoa(typists * keys)
		matched := regexp.MustCompile(`, ` + strconv.Itoa(typists) + ` typist\(s\) \((\d+) of (\d+) keystrokes matched to their job\)`).FindStringSubmatch(report)
		if matched == nil || matched[1] != n || matched[2] != n {
			t.Errorf("%d typist(s): keystrokes matched to a job of the worker: %v, want %s of %s", typists, matched, n, n)
		}
		for _, path := range []string{"direct", "remote"} {
			row := regexp.MustCompile(`\| ` + strconv.Itoa(typists) + ` \| ` + path + ` path, per keystroke \| ([\d.]+) \|`).FindStringSubmatch(report)
			if row == nil {
				t.Errorf("%d typist(s): no %s path row", typists, path)
			} else if p50, _ := strconv.ParseFloat(row[1], 64); p50 <= 0 {
				t.Errorf("%d typist(s): %s path p50 %v ms", typists, path, p50)
			}
		}
	}
	same := regexp.MustCompile(`\| 1 \| 3 \| [\d.]+ % \| [\d.]+ % \| (\d+) of (\d+) \|`).FindStringSubmatch(report)
	if same == nil || same[1] != "3" || same[2] != "3" {
		t.Errorf("one typist: same completion on both paths: %v, want 3 of 3", same)
	}

	pid := regexp.MustCompile(`code4me worker. process \(pid (\d+)\)`).FindStringSubmatch(report)
	if pid == nil {
		t.Fatal("the report names no worker process")
	}
	p, _ := strconv.Atoi(pid[1])
	if p == os.Getpid() {
		t.Fatalf("the worker ran in the benchmark's process (pid %d)", p)
	}
	if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("worker process %d after the benchmark: %v, want it gone", p, err)
	}
}
