package pgtest

import (
	"context"
	"database/sql"
	"testing"
)

// A server of the test's own keeps its data across Restart, and a
// connection opened before the restart is cut by it.
func TestRestartKeepsData(t *testing.T) {
	ctx := context.Background()
	p := Start(t)
	url := p.URL(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	var before int
	if err := db.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	p.Restart(t)
	var x, after int
	// database/sql drops the broken connection and dials again.
	for i := 0; i < 3; i++ {
		if err = db.QueryRowContext(ctx, `SELECT x, pg_backend_pid() FROM kept`).Scan(&x, &after); err == nil {
			break
		}
	}
	if err != nil || x != 42 {
		t.Fatalf("after the restart: %d, %v; want 42", x, err)
	}
	if after == before {
		t.Fatalf("the same backend (pid %d) served before and after the restart", after)
	}
}
