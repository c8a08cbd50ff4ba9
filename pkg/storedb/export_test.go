package storedb

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ParseMigrationsForTest exposes parseMigrations to the tests.
var ParseMigrationsForTest = parseMigrations

// MigrateToForTest applies the migrations up to version only.
func MigrateToForTest(ctx context.Context, pool *pgxpool.Pool, version int) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for {
		done, err := step(ctx, pool, ms[:version])
		if err != nil || done {
			return err
		}
	}
}
