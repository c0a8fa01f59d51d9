module github.com/tgsession/session/bench

go 1.23.0

require (
	github.com/go-telegram-bot-api/telegram-bot-api/v5 v5.5.1
	github.com/jackc/pgx/v5 v5.7.6
	github.com/redis/go-redis/v9 v9.18.0
	github.com/tgsession/session v0.0.0-00010101000000-000000000000
	github.com/tgsession/session/boltstore v0.0.0-00010101000000-000000000000
	github.com/tgsession/session/pgstore v0.0.0-00010101000000-000000000000
	github.com/tgsession/session/redisstore v0.0.0-00010101000000-000000000000
	go.etcd.io/bbolt v1.4.3
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dgryski/go-rendezvous v0.0.0-20200823014737-9f7001d12a5f // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.2 // indirect
	go.uber.org/atomic v1.11.0 // indirect
	golang.org/x/crypto v0.37.0 // indirect
	golang.org/x/sync v0.13.0 // indirect
	golang.org/x/sys v0.32.0 // indirect
	golang.org/x/text v0.24.0 // indirect
)

replace (
	github.com/tgsession/session => ../
	github.com/tgsession/session/boltstore => ../boltstore
	github.com/tgsession/session/pgstore => ../pgstore
	github.com/tgsession/session/redisstore => ../redisstore
)
