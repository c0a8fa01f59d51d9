package session

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"reflect"
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

// ErrConfig reports a configuration mistake found when a middleware or a
// store is built: [Enhance] returns it; constructors without an error
// result ([Multi], [LazyMulti], [NewFragment]) panic with it, the way
// http.Handle panics on a bad pattern, since such mistakes are found on
// the first run.
var ErrConfig = errors.New("session: invalid configuration")

// Codec turns session values into bytes and back, for byte-oriented
// storage (Redis, SQL, files). [JSON] is the default.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec]: encoding/json, so stored sessions stay
// readable by other tools and by bots written in other languages.
type JSON struct{}

// Marshal encodes v with encoding/json.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data with encoding/json.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Encoded adapts byte-oriented storage to session values of type T using
// codec (nil means [JSON]). Data that does not decode is reported as
// [ErrCorrupt] naming the key.
//
// The middleware decides whether a session changed by comparing the bytes
// codec produces with the bytes it read, so what counts as a change is
// exactly what the store would keep: a field the codec skips is not
// stored, and a change to it is not written. The comparison reuses the
// encoding the write needs, so it costs no extra encode. An encoder whose
// output varies for one value (gob with maps) causes extra writes, never a
// lost one.
//
// The result has the base store's capabilities: it locks with the base
// store's [Locker] (or the process-wide table of the base store), touches
// through its [Toucher] (a no-op without one), and iterates through its
// [Iterator] (yielding an error wrapping errors.ErrUnsupported without
// one).
func Encoded[T any](store StorageAdapter[[]byte], codec Codec) StorageAdapter[T] {
	checkStore("Encoded", store)
	if isNil(codec) {
		codec = JSON{}
	}
	e := &encoded[T]{byteBase: byteBase{store}, codec: codec}
	if _, ok := codec.(JSON); ok {
		e.json = jsonCodecFor[T]()
	}
	return e
}

type encoded[T any] struct {
	byteBase
	codec Codec
	json  jsonCodec[T] // the default codec's fast path; zero for other codecs
}

// checkType reports a session type the default codec cannot encode; a
// codec of the caller's own is trusted.
func (e *encoded[T]) checkType() error {
	if _, ok := e.codec.(JSON); ok {
		return jsonProblem(reflect.TypeFor[T]())
	}
	return nil
}

func (e *encoded[T]) Read(ctx context.Context, key string) (T, bool, error) {
	var v T
	_, found, err := e.readRaw(ctx, key, &v)
	return v, found, err
}

// readRaw decodes into *into, which the session already holds, so the
// value is not built in a temporary and copied.
func (e *encoded[T]) readRaw(ctx context.Context, key string, into *T) ([]byte, bool, error) {
	var zero T
	*into = zero
	data, found, err := e.store.Read(ctx, key)
	if err != nil || !found {
		return nil, false, err
	}
	if err := e.decode(key, data, into); err != nil {
		return nil, false, err
	}
	return data, true, nil
}

// decode decodes data into *into, which holds the zero value.
func (e *encoded[T]) decode(key string, data []byte, into *T) error {
	var err error
	if e.json.plan != nil {
		err = e.json.unmarshal(data, into)
	} else {
		err = e.codec.Unmarshal(data, into)
	}
	if err != nil {
		var zero T // *into may be half-decoded
		*into = zero
		return fmt.Errorf("%w: key %q: %w", ErrCorrupt, key, err)
	}
	return nil
}

func (e *encoded[T]) encode(key string, v *T) ([]byte, error) {
	var data []byte
	var err error
	if e.json.plan != nil {
		data, err = e.json.marshal(v)
	} else {
		data, err = e.codec.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("session: encode %q: %w", key, err)
	}
	return data, nil
}

func (e *encoded[T]) writeRaw(ctx context.Context, key string, data []byte) error {
	return e.store.Write(ctx, key, data)
}

func (e *encoded[T]) Write(ctx context.Context, key string, value T) error {
	data, err := e.encode(key, &value)
	if err != nil {
		return err
	}
	return e.store.Write(ctx, key, data)
}

// Values yields every stored session, decoded; see [Iterator].
func (e *encoded[T]) Values(ctx context.Context) iter.Seq2[T, error] {
	return values(e.Entries(ctx))
}

// Entries yields every stored session with its key, decoded.
func (e *encoded[T]) Entries(ctx context.Context) iter.Seq2[Entry[T], error] {
	return decodeEntries(ctx, e.store, func(key string, data []byte) (T, bool, error) {
		var v T
		err := e.decode(key, data, &v)
		return v, err == nil, err
	})
}

// rawStore is implemented by the byte-backed stores of this package, so
// the middleware can decide on the bytes that are stored: readRaw decodes
// the value into *into (left zero when not found) and returns the bytes
// encode would have to produce for the value to count as unchanged (nil when it must be written anyway, as when
// a refresh is due); writeRaw stores what encode produced.
type rawStore[T any] interface {
	readRaw(ctx context.Context, key string, into *T) (stored []byte, found bool, err error)
	encode(key string, v *T) ([]byte, error)
	writeRaw(ctx context.Context, key string, data []byte) error
}

// byteBase gives a wrapper of a byte store the base store's capabilities.
type byteBase struct{ store StorageAdapter[[]byte] }

func (b byteBase) base() any { return b.store }

// Delete removes key from the base store.
func (b byteBase) Delete(ctx context.Context, key string) error { return b.store.Delete(ctx, key) }

// Lock locks key with the base store's [Locker], or its share of the
// process-wide lock table.
func (b byteBase) Lock(ctx context.Context, key string) (func(), error) {
	return lockerOf(b.store).Lock(ctx, key)
}

// Touch restarts key's expiry in the base store if it is a [Toucher].
func (b byteBase) Touch(ctx context.Context, key string) error {
	if t, ok := b.store.(Toucher); ok {
		return t.Touch(ctx, key)
	}
	return ctx.Err()
}

// Keys yields every stored key through the base store's [Iterator].
func (b byteBase) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		it, ok := b.store.(Iterator[[]byte])
		if err := ctx.Err(); err != nil || !ok {
			yield("", cmp.Or(err, errNoIterator(b.store)))
			return
		}
		for k, err := range it.Keys(ctx) {
			if err == nil && isForwardKey(k) {
				continue // a chat migration's forward, not a session
			}
			if !yield(k, err) || err != nil {
				return
			}
		}
	}
}

func errNoIterator(store any) error {
	return fmt.Errorf("session: %T cannot list its sessions: %w", store, errors.ErrUnsupported)
}

// decodeEntries yields the base store's entries through decode, which
// may drop an entry (ok false, nil error: expired, say).
func decodeEntries[T any](ctx context.Context, store StorageAdapter[[]byte], decode func(key string, data []byte) (T, bool, error)) iter.Seq2[Entry[T], error] {
	return func(yield func(Entry[T], error) bool) {
		it, ok := store.(Iterator[[]byte])
		if err := ctx.Err(); err != nil || !ok {
			yield(Entry[T]{}, cmp.Or(err, errNoIterator(store)))
			return
		}
		for e, err := range it.Entries(ctx) {
			if err != nil {
				yield(Entry[T]{}, err)
				return
			}
			if isForwardKey(e.Key) {
				continue // a chat migration's forward, not a session
			}
			v, ok, err := decode(e.Key, e.Value)
			if err != nil {
				yield(Entry[T]{}, err)
				return
			}
			if ok && !yield(Entry[T]{Key: e.Key, Value: v}, nil) {
				return
			}
		}
	}
}

// values keeps the values of a sequence of entries.
func values[T any](entries iter.Seq2[Entry[T], error]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for e, err := range entries {
			if !yield(e.Value, err) {
				return
			}
		}
	}
}
