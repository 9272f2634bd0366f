package db_test

import (
	"testing"

	"github.com/code4me/code4me/internal/db"
)

// TestStudyDesignMigrationKeepsStudies migrates a database holding studies
// of the old shape (is_active, default_config_id, arms keyed by config) up
// through 0014 and back: the running study stays running, the default
// config becomes the baseline arm, and going down restores the old shape.
func TestStudyDesignMigrationKeepsStudies(t *testing.T) {
	ctx := testCtx(t)
	url := emptyDatabase(t)
	log := quietLog()
	all, err := db.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	after := 0 // migrations from 0014 on
	for _, m := range all {
		if m.Version >= 14 {
			after++
		}
	}
	if err := db.Migrate(ctx, url, log); err != nil {
		t.Fatal(err)
	}
	if err := db.MigrateDown(ctx, url, log, after); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, url)
	for _, sql := range []string{
		`INSERT INTO config (config_id, config_data) OVERRIDING SYSTEM VALUE VALUES (901, '{}'), (902, '{}') ON CONFLICT DO NOTHING`,
		`INSERT INTO study (study_id, name, starts_at, is_active, default_config_id) VALUES
			('00000000-0000-0000-0000-00000000000a', 'running', now() - interval '1 day', true, 901),
			('00000000-0000-0000-0000-00000000000b', 'over', now() - interval '2 days', false, 902)`,
		`UPDATE study SET ends_at = now() - interval '1 day' WHERE name = 'over'`,
		`INSERT INTO study_arm (study_id, config_id, weight) VALUES
			('00000000-0000-0000-0000-00000000000a', 901, 1), ('00000000-0000-0000-0000-00000000000a', 902, 3),
			('00000000-0000-0000-0000-00000000000b', 901, 1)`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if err := db.Migrate(ctx, url, log); err != nil {
		t.Fatalf("migrate up over old studies: %v", err)
	}
	if got := scalar[string](t, conn, `SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM study`); got != "over:ended,running:running" {
		t.Errorf("statuses = %q", got)
	}
	// Study a: its arms keep their weights, 901 (the default) is the
	// baseline. Study b: 902, its default, was not an arm and becomes one.
	if got := scalar[string](t, conn, `SELECT string_agg(s.name || '/' || a.name || '/' || a.weight || '/' || a.is_baseline, ',' ORDER BY s.name, a.config_id)
		FROM study_arm a JOIN study s USING (study_id)`); got != "over/config 901/1/false,over/config 902/1/true,running/config 901/1/true,running/config 902/3/false" {
		t.Errorf("arms = %q", got)
	}
	if err := db.MigrateDown(ctx, url, log, after); err != nil {
		t.Fatalf("migrate down: %v", err)
	}
	if got := scalar[string](t, conn, `SELECT string_agg(name || ':' || is_active || ':' || default_config_id, ',' ORDER BY name) FROM study`); got != "over:false:902,running:true:901" {
		t.Errorf("after down: studies = %q", got)
	}
	if n := scalar[int64](t, conn, `SELECT count(*) FROM study_arm`); n != 4 {
		t.Errorf("after down: %d arms, want 4", n)
	}
}
