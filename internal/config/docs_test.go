package config

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md")

// TestConfigurationDoc keeps docs/configuration.md in step with the Config
// tags. Run `go test ./internal/config -update` after changing a field.
func TestConfigurationDoc(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Configuration\n\n")
	b.WriteString("code4me reads its configuration from the environment and from an optional `.env` file in the\n")
	b.WriteString("working directory (the environment wins). A wrong value stops start-up with an error that names\n")
	b.WriteString("the variable. This table is generated from `internal/config/config.go`\n")
	b.WriteString("(`go test ./internal/config -update`).\n\n")
	b.WriteString("| Variable | Default | Meaning |\n|---|---|---|\n")
	for _, v := range Vars() {
		def := "`" + v.Default + "`"
		if v.Default == "" {
			def = "(empty)"
		}
		doc := v.Doc
		if v.Secret {
			doc += " Never logged."
		}
		b.WriteString("| `" + v.Name + "` | " + def + " | " + doc + " |\n")
	}
	const path = "../../docs/configuration.md"
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/config -update)", err)
	}
	if string(got) != b.String() {
		t.Fatal("docs/configuration.md is stale: run go test ./internal/config -update")
	}
}
