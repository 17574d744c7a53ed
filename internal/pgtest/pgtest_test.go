package pgtest

import (
	"context"
	"database/sql"
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// Each URL is a database of its own on one server: a table made in the
// first is not in the second.
func TestFreshDatabasePerCall(t *testing.T) {
	ctx := context.Background()
	a, b := URL(t), URL(t)
	if a == b {
		t.Fatalf("two calls gave one database: %s", a)
	}
	dbA, err := sql.Open("pgx", a)
	if err != nil {
		t.Fatal(err)
	}
	defer dbA.Close()
	if _, err := dbA.ExecContext(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatal(err)
	}
	dbB, err := sql.Open("pgx", b)
	if err != nil {
		t.Fatal(err)
	}
	defer dbB.Close()
	var n int
	if err := dbB.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'only_in_a'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("table of database A in database B: %d, %v", n, err)
	}
	var v string
	if err := dbB.QueryRowContext(ctx, `SHOW server_version`).Scan(&v); err != nil || v == "" {
		t.Fatalf("server_version %q, %v", v, err)
	}
	t.Logf("PostgreSQL %s", v)
}
