// Package archtest holds the tests that enforce the repository's rules.
// Dependencies point one way: engine imports nothing of this repository
// outside engine/ and nothing networked; server never imports engine/llama;
// engine/llama is the only package with cgo. Docs and comments describe the
// product as it is, without work-session words or citations of documents
// outside the repository (docwords_test.go).
package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/code4me/code4me"

type pkg struct {
	ImportPath string
	Deps       []string
	Imports    []string
	CgoFiles   []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-deps=false", "-json=ImportPath,Deps,Imports,CgoFiles", module+"/...")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(&out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 3 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func inEngine(p string) bool { return p == module+"/engine" || strings.HasPrefix(p, module+"/engine/") }

// networked are packages an engine must not reach, even transitively.
var networked = []string{"net", "net/http", "github.com/jackc/pgx/v5", "github.com/redis/go-redis/v9", "github.com/gofiber/fiber/v2", "github.com/riverqueue/river"}

func TestDependencyDirection(t *testing.T) {
	for _, v := range violations(listPackages(t)) {
		t.Error(v)
	}
}

// TestViolationsDetected proves the checker catches each forbidden edge.
func TestViolationsDetected(t *testing.T) {
	bad := []pkg{
		{ImportPath: module + "/engine", Deps: []string{module + "/internal/config"}},
		{ImportPath: module + "/engine/synth", Deps: []string{"net/http"}},
		{ImportPath: module + "/server", Deps: []string{module + "/engine/llama"}},
		{ImportPath: module + "/internal/db", CgoFiles: []string{"x.go"}},
	}
	if got := violations(bad); len(got) != 4 {
		t.Fatalf("want 4 violations, got %d: %v", len(got), got)
	}
	good := []pkg{
		{ImportPath: module + "/engine", Deps: []string{"errors", module + "/engine/gguf"}},
		{ImportPath: module + "/engine/llama", CgoFiles: []string{"llama.go"}, Deps: []string{module + "/engine"}},
		{ImportPath: module + "/server", Deps: []string{module + "/engine", "net/http"}},
	}
	if got := violations(good); len(got) != 0 {
		t.Fatalf("want no violations, got %v", got)
	}
}

func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		switch {
		case inEngine(p.ImportPath):
			for _, d := range p.Deps {
				if strings.HasPrefix(d, module+"/") && !inEngine(d) {
					out = append(out, p.ImportPath+" imports "+d+": engine must not import the rest of the repository")
				}
				for _, n := range networked {
					if d == n || strings.HasPrefix(d, n+"/") {
						out = append(out, p.ImportPath+" depends on "+d+": engine must not import networked packages")
						break
					}
				}
			}
		case p.ImportPath == module+"/server" || strings.HasPrefix(p.ImportPath, module+"/server/"):
			for _, d := range p.Deps {
				if d == module+"/engine/llama" {
					out = append(out, p.ImportPath+" depends on engine/llama: server talks to the engine only through package engine")
				}
			}
		}
		if len(p.CgoFiles) > 0 && p.ImportPath != module+"/engine/llama" {
			out = append(out, p.ImportPath+" uses cgo: only engine/llama may import \"C\"")
		}
	}
	return out
}
