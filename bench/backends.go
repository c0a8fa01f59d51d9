package main

import (
	"fmt"

	"github.com/tgsession/session"
)

type backendConfig struct {
	redisAddr, postgresURL, boltPath string
}

// backend gives the store of one -storage value.
type backend struct {
	store session.Store
	close func()
}

func openBackend(name string, cfg backendConfig) (*backend, error) {
	switch name {
	case "memory":
		return &backend{store: session.NewMemory(), close: func() {}}, nil
	case "json":
		// A store of just the three methods over memory: no native
		// expiry, so a TTL goes into grammY's envelope.
		return &backend{store: plain{session.NewMemory()}, close: func() {}}, nil
	}
	if open := external[name]; open != nil {
		return open(cfg)
	}
	return nil, fmt.Errorf("unknown -storage %q", name)
}

// plain hides every capability of the store it wraps.
type plain struct{ session.Store }

// external holds the openers of the adapter modules, keyed by -storage.
var external = map[string]func(backendConfig) (*backend, error){}

// bytesBackend serves sessions from one byte store.
func bytesBackend(store session.Store, close func()) *backend {
	return &backend{store: store, close: close}
}
