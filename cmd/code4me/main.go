// Command code4me is the one binary of the code4me completion server:
// serve, migrate, model, complete, bench, eval and version. It wires packages
// together and reads the environment; all logic lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/joho/godotenv"

	"github.com/code4me/code4me/internal/config"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the HTTP/WebSocket server (starts private Postgres/Redis when none is configured)", runServe},
		{"worker", "run models for API nodes started with serve --engine=remote (needs DATABASE_URL and REDIS_URL)", runWorker},
		{"migrate", "apply database migrations (ours and River's) and exit", runMigrate},
		{"model", "list, pull, synth or add models", runModel},
		{"complete", "complete one prefix/suffix with a model and print timings", runComplete},
		{"bench", "run benchmarks (bench engine: the typing workload)", runBench},
		{"loadtest", "simulate plugin users typing against a server, then check every acknowledged row in Postgres", runLoadtest},
		{"eval", "score a model on fill-in-the-middle tasks cut from a source tree; store the run", runEval},
		{"version", "print the version", runVersion},
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: code4me <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", c.name, c.summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage()
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == name {
			if err := c.run(ctx, os.Args[2:]); err != nil {
				stop()
				if errors.Is(err, errUsage) {
					os.Exit(2)
				}
				fmt.Fprintln(os.Stderr, "code4me: "+oneLine(err.Error()))
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "code4me: unknown command %q\n", name)
	usage()
	os.Exit(2)
}

var errUsage = errors.New("usage")

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// loadConfig reads .env (without overriding the environment) and the
// environment into a validated Config.
func loadConfig() (config.Config, error) {
	if err := godotenv.Load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return config.Config{}, fmt.Errorf("read .env: %w", err)
	}
	return config.Load(os.LookupEnv)
}

func newLogger(c config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func buildVersion() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

func runVersion(ctx context.Context, args []string) error {
	fmt.Println("code4me " + buildVersion())
	return nil
}
