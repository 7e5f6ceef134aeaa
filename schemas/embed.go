// Package schemas embeds the Avro schemas of the reference topics and the
// ClickHouse DDL that `sluice migrate` applies, so the binary carries them.
package schemas

import "embed"

// ClickHouse holds clickhouse/*.sql, applied in file-name order. Each file
// is one or more statements, each ending with ";" at the end of a line; {db} stands
// for the configured database.
//
//go:embed clickhouse/*.sql
var ClickHouse embed.FS

// Avro holds avro/*.avsc.
//
//go:embed avro/*.avsc
var Avro embed.FS
