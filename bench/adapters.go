package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/tgsession/session/boltstore"
	"github.com/tgsession/session/pgstore"
	"github.com/tgsession/session/redisstore"
)

// The adapters keep their data under their own names (a key prefix, a
// table, a temporary file), so a run never touches a bot's sessions.
func init() {
	external["redis"] = func(cfg backendConfig) (*backend, error) {
		client := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, ContextTimeoutEnabled: true, PoolSize: 128})
		if err := client.Ping(context.Background()).Err(); err != nil {
			client.Close()
			return nil, err
		}
		store, err := redisstore.New(client, redisstore.Options{Prefix: "tgsession-bench:"})
		if err != nil {
			client.Close()
			return nil, err
		}
		return bytesBackend(store, func() { client.Close() }), nil
	}
	external["postgres"] = func(cfg backendConfig) (*backend, error) {
		ctx := context.Background()
		pcfg, err := pgxpool.ParseConfig(cfg.postgresURL)
		if err != nil {
			return nil, err
		}
		pcfg.MaxConns = 128
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return nil, err
		}
		store, err := pgstore.New(pool, pgstore.Options{Table: "tgsession_bench"})
		if err == nil {
			err = store.Migrate(ctx)
		}
		if err != nil {
			pool.Close()
			return nil, err
		}
		return bytesBackend(store, func() { store.Close(); pool.Close() }), nil
	}
	external["bolt"] = func(cfg backendConfig) (*backend, error) {
		path, dir := cfg.boltPath, ""
		if path == "" {
			var err error
			if dir, err = os.MkdirTemp("", "tgsession-bench"); err != nil {
				return nil, err
			}
			path = filepath.Join(dir, "sessions.db")
		}
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			return nil, err
		}
		store, err := boltstore.New(db, boltstore.Options{})
		if err != nil {
			db.Close()
			return nil, err
		}
		return bytesBackend(store, func() {
			store.Close()
			db.Close()
			if dir != "" {
				os.RemoveAll(dir)
			}
		}), nil
	}
}
