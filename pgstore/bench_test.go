package pgstore_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tgsession/session"
	"github.com/tgsession/session/pgstore"
	"github.com/tgsession/session/storagetest"
)

// BenchmarkStore: go test -bench . -benchmem ./pgstore/
func BenchmarkStore(b *testing.B) {
	var n atomic.Int64
	newBenchStore := func(b *testing.B) *pgstore.Store {
		cfg, err := pgxpool.ParseConfig(dsn())
		if err != nil {
			b.Fatal(err)
		}
		cfg.MaxConns = 64
		cfg.ConnConfig.Tracer = countTracer{&n}
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		if err := pool.Ping(context.Background()); err != nil {
			b.Fatalf("PostgreSQL at %s does not answer: %v", dsn(), err)
		}
		return newStore(b, pool, pgstore.Options{Table: uniqueTable(b)})
	}
	storagetest.RunBenchmarks(b, storagetest.Bench{
		NewStore:   func(b *testing.B) session.Store { return newBenchStore(b) },
		Unlocked:   func(b *testing.B) session.Store { return newBenchStore(b).Unlocked() },
		RoundTrips: n.Load,
	})
}

// BenchmarkPlainUpsert is the baseline for the Parallel benchmarks: a
// read and an upsert of one row, the least any key-value update costs,
// 64 at a time over 1000 keys.
func BenchmarkPlainUpsert(b *testing.B) {
	cfg, err := pgxpool.ParseConfig(dsn())
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	table := pgx.Identifier{uniqueTable(b)}.Sanitize()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (key text PRIMARY KEY, value bytea NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	storagetest.RunParallel(b, 64, func(i int) error {
		key := strconv.Itoa(1 + (i*7919)%1000)
		var v []byte
		err := pool.QueryRow(ctx, "SELECT value FROM "+table+" WHERE key = $1", key).Scan(&v)
		if err != nil && err != pgx.ErrNoRows {
			return err
		}
		_, err = pool.Exec(ctx, "INSERT INTO "+table+" (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, []byte(`{"n":1}`))
		return err
	})
}
