package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
)

// StorageAdapter stores session values of type T by key.
//
// Implementations must be safe for concurrent use and must honour ctx:
// a call whose context is cancelled returns the context's error. Read
// reports a missing key with found == false and a nil error; deleting a
// missing key is not an error.
//
// A store may offer optional capabilities, found by type assertion the
// way net/http finds http.Flusher: the middleware uses [Locker] and
// [Toucher]; [Iterator] is for the bot's own code (broadcasts, admin
// tools). [storagetest.Run] checks each capability a store has.
type StorageAdapter[T any] interface {
	Read(ctx context.Context, key string) (value T, found bool, err error)
	Write(ctx context.Context, key string, value T) error
	Delete(ctx context.Context, key string) error
}

// Locker is an optional capability of a [StorageAdapter]: exclusive
// access to one key among every user of the storage. The middleware holds
// the lock of each session key from before it reads the session until
// after it has written it back, so two updates of one chat never lose
// each other's writes.
//
// [Memory] locks within its process. A store shared by several processes
// (Redis, PostgreSQL) implements Locker across them, with a lease that it
// renews while the lock is held. If the lease is lost anyway, a write
// made under it must fail with an error wrapping [ErrConflict] rather
// than overwrite a newer value.
//
// For a store without Locker, the middleware locks keys in a table shared
// by the whole process, keyed by the store and the key: every middleware
// over one store excludes the others, but other processes are not seen.
//
// Lock blocks until the key is free or ctx ends (then it returns an error
// wrapping ctx.Err()). unlock must be called exactly once.
type Locker interface {
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// Toucher is an optional capability of a [StorageAdapter] with expiring
// sessions: Touch restarts the expiry of key, as a write would, without
// rewriting the value. After an update that read a session and left it
// unchanged, the middleware touches it, so a session expires a TTL after
// the last update that used it, not after its last change. A store
// without expiry need not implement it. Touching a missing key is not an
// error.
type Toucher interface {
	Touch(ctx context.Context, key string) error
}

// ErrConflict reports a write refused because the lock it was made under
// was lost (its lease expired and another process may have written
// since). Nothing was written; the update's changes are not saved, and
// the error is returned from the handler chain so the update can be
// retried. Errors that wrap it name the key.
var ErrConflict = errors.New("session: write conflict: the lock on the key was lost")

// Iterator is an optional capability of a [StorageAdapter]: listing every
// stored session. Each sequence stops at the first error, which it yields
// with a zero value; cancelling ctx ends it with the context's error.
type Iterator[T any] interface {
	Keys(ctx context.Context) iter.Seq2[string, error]
	Values(ctx context.Context) iter.Seq2[T, error]
	Entries(ctx context.Context) iter.Seq2[Entry[T], error]
}

// Entry is one stored session: its storage key and value.
type Entry[T any] struct {
	Key   string
	Value T
}

// ErrCorrupt reports stored data that cannot be decoded into the session
// type. Errors that wrap it name the key.
var ErrCorrupt = errors.New("session: corrupt stored data")

// Codec turns session values into bytes and back, for byte-oriented
// storage (Redis, SQL, files). [JSON] is the default.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec]: encoding/json, so stored sessions stay
// readable by other tools and by bots written in other languages.
var JSON Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Encoded adapts byte-oriented storage to session values of type T using
// codec (nil means [JSON]). Data that does not decode is reported as
// [ErrCorrupt] naming the key.
func Encoded[T any](store StorageAdapter[[]byte], codec Codec) StorageAdapter[T] {
	if codec == nil {
		codec = JSON
	}
	return &encoded[T]{store: store, codec: codec}
}

type encoded[T any] struct {
	store StorageAdapter[[]byte]
	codec Codec
}

func (e *encoded[T]) Read(ctx context.Context, key string) (T, bool, error) {
	var v T
	data, found, err := e.store.Read(ctx, key)
	if err != nil || !found {
		return v, false, err
	}
	if err := e.codec.Unmarshal(data, &v); err != nil {
		return v, false, fmt.Errorf("%w: key %q: %w", ErrCorrupt, key, err)
	}
	return v, true, nil
}

func (e *encoded[T]) Write(ctx context.Context, key string, value T) error {
	data, err := e.codec.Marshal(value)
	if err != nil {
		return fmt.Errorf("session: encode %q: %w", key, err)
	}
	return e.store.Write(ctx, key, data)
}

func (e *encoded[T]) Delete(ctx context.Context, key string) error {
	return e.store.Delete(ctx, key)
}
