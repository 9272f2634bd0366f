package db

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestParseMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		fs      fstest.MapFS
		want    []int
		wantErr string
	}{
		{
			name: "stray file rejected",
			fs: fstest.MapFS{
				"0010_b.up.sql": file("B"), "0010_b.down.sql": file("b"),
				"0002_a.up.sql": file("A"), "0002_a.down.sql": file("a"),
				"migrations.go": file("package migrations"),
			},
			wantErr: "migrations.go",
		},
		{
			name: "sorted",
			fs: fstest.MapFS{
				"0010_b.up.sql": file("B"), "0010_b.down.sql": file("b"),
				"0002_a.up.sql": file("A"), "0002_a.down.sql": file("a"),
			},
			want: []int{2, 10},
		},
		{
			name:    "missing down",
			fs:      fstest.MapFS{"0001_a.up.sql": file("A")},
			wantErr: "lacks its up or down",
		},
		{
			name:    "two names",
			fs:      fstest.MapFS{"0001_a.up.sql": file("A"), "0001_b.down.sql": file("b")},
			wantErr: "two names",
		},
		{
			name:    "bad name",
			fs:      fstest.MapFS{"1-a.sql": file("A")},
			wantErr: "want NNNN_name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMigrations(tt.fs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var versions []int
			for _, m := range got {
				versions = append(versions, m.Version)
			}
			if len(versions) != len(tt.want) {
				t.Fatalf("versions = %v, want %v", versions, tt.want)
			}
			for i := range versions {
				if versions[i] != tt.want[i] {
					t.Fatalf("versions = %v, want %v", versions, tt.want)
				}
			}
		})
	}
}

func TestEmbeddedMigrations(t *testing.T) {
	migs, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(migs) == 0 {
		t.Fatal("no embedded migrations")
	}
	for i, m := range migs {
		if m.Version != i+1 {
			t.Errorf("migration %d has version %d; versions must count up from 1 without gaps", i, m.Version)
		}
	}
	if SchemaHash() == "invalid" || len(SchemaHash()) != 16 {
		t.Errorf("SchemaHash() = %q", SchemaHash())
	}
}
