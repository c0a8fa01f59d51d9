package main

import (
	"fmt"

	"github.com/tgsession/session"
)

type backendConfig struct {
	redisAddr, postgresURL, boltPath string
}

// backend gives the stores of one -storage value.
type backend struct {
	// typed returns a store of counters: Memory itself for "memory",
	// otherwise the byte store through session.Encoded (JSON).
	typed func() (session.StorageAdapter[counter], error)
	// bytes returns the byte store, for Enhance.
	bytes func() session.StorageAdapter[[]byte]
	close func()
}

func openBackend(name string, cfg backendConfig) (*backend, error) {
	switch name {
	case "memory":
		return &backend{
			typed: func() (session.StorageAdapter[counter], error) { return session.NewMemory[counter](), nil },
			bytes: func() session.StorageAdapter[[]byte] { return session.NewMemory[[]byte]() },
			close: func() {},
		}, nil
	case "json":
		return bytesBackend(session.NewMemory[[]byte](), func() {}), nil
	}
	if open := external[name]; open != nil {
		return open(cfg)
	}
	return nil, fmt.Errorf("unknown -storage %q", name)
}

// external holds the openers of the adapter modules, keyed by -storage.
var external = map[string]func(backendConfig) (*backend, error){}

// bytesBackend serves typed sessions from one byte store through JSON.
func bytesBackend(store session.StorageAdapter[[]byte], close func()) *backend {
	return &backend{
		typed: func() (session.StorageAdapter[counter], error) { return session.Encoded[counter](store, nil), nil },
		bytes: func() session.StorageAdapter[[]byte] { return store },
		close: close,
	}
}
