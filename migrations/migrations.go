// Package migrations embeds the ordered SQL migrations of the code4me schema.
//
// Each migration is a pair of files, NNNN_name.up.sql and NNNN_name.down.sql
// (golang-migrate naming, which sqlc understands: it reads only the .up.sql
// files as the schema). Versions are the leading numbers, applied in
// ascending order by package db, each in its own transaction. A migration is
// never edited after it lands; changes are new migrations.
package migrations

import "embed"

// FS holds every *.sql file of this directory at its root.
//
//go:embed *.sql
var FS embed.FS
