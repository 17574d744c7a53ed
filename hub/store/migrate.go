package store

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

// versionTable is goose's record of the migrations applied.
const versionTable = "goose_db_version"

// legacyTable is where the hand-written runner of earlier releases
// recorded its migrations (versions 1 and 2 of the list below).
const legacyTable = "schema_migrations"

// migrate brings the schema up to date with goose. Several hubs may start
// at once on one PostgreSQL: a session lock (an advisory lock) lets one
// migrate while the others wait.
func migrate(ctx context.Context, d db) error {
	if err := adoptLegacy(ctx, d); err != nil {
		return fmt.Errorf("schema migrations of an earlier release: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithTableName(versionTable),
		goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(gooseMigrations(d.d)...),
		goose.WithSlog(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}
	if d.d == postgresDialect {
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(d.d.goose, d.DB, nil, opts...)
	if err != nil {
		return fmt.Errorf("schema migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("schema migrations: %w", err)
	}
	return nil
}

// gooseMigrations are the schema's migrations for one dialect: each runs
// in its own transaction, the SQL with the dialect's types filled in.
func gooseMigrations(d *dialect) []*goose.Migration {
	out := make([]*goose.Migration, 0, len(migrations))
	for i, m := range migrations {
		up := func(ctx context.Context, t *sql.Tx) error {
			if m.sql != "" {
				if _, err := t.ExecContext(ctx, d.types.Replace(m.sql)); err != nil {
					return err
				}
			}
			if m.code != nil {
				return m.code(ctx, tx{t, d})
			}
			return nil
		}
		out = append(out, goose.NewGoMigration(int64(i+1), &goose.GoFunc{RunTx: up}, nil))
	}
	return out
}

// adoptLegacy hands a SQLite database made by the earlier hand-written
// runner over to goose: the versions it recorded become goose's, in one
// transaction, so goose runs only what is new.
func adoptLegacy(ctx context.Context, d db) error {
	if d.d != sqliteDialect {
		return nil // no release ran PostgreSQL before goose
	}
	if legacy, err := sqliteTableExists(ctx, d, legacyTable); err != nil || !legacy {
		return err
	}
	t, err := d.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	rows, err := t.QueryContext(ctx, `SELECT version FROM `+legacyTable+` ORDER BY version`)
	if err != nil {
		return err
	}
	var versions []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		versions = append(versions, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	gs, err := database.NewStore(database.DialectSQLite3, versionTable)
	if err != nil {
		return err
	}
	exists, err := sqliteTableExists(ctx, t, versionTable)
	if err != nil {
		return err
	}
	if !exists {
		if err := gs.CreateVersionTable(ctx, t.Tx); err != nil {
			return err
		}
		versions = append([]int64{0}, versions...) // goose's mark of an empty schema
	}
	for _, v := range versions {
		if err := gs.Insert(ctx, t.Tx, database.InsertRequest{Version: v}); err != nil {
			return fmt.Errorf("version %d: %w", v, err)
		}
	}
	if _, err := t.ExecContext(ctx, `DROP TABLE `+legacyTable); err != nil {
		return err
	}
	return t.Commit()
}

// SchemaVersion is the highest migration applied to the database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT max(version_id) FROM `+versionTable+``).Scan(&v)
	return int(v.Int64), err
}

func sqliteTableExists(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}, name string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, name).Scan(&n)
	return n > 0, err
}
