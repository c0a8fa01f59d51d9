// Package redisstore stores sessions in Redis, for bots that run as
// several processes (replicas behind a webhook load balancer) or that must
// keep their sessions across restarts.
//
// A [Store] is a [session.Store] (sessions as bytes by key) to give the
// middleware:
//
//	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
//	store, err := redisstore.New(client, redisstore.Options{Prefix: "mybot:"})
//	sess, err := session.New(session.Options[Data]{Storage: store, TTL: 30 * 24 * time.Hour})
//	h := sess.Middleware(handler)
//
// The store is a [session.Locker] across processes: the middleware takes
// a lease on each session key in Redis, and reads the session, before the
// update runs, and commits the update's change and gives the lease back
// after it, so two replicas handling updates of one chat never lose each
// other's changes. A change made under a lease that was lost (a process
// stalled longer than [Options.LockLease]) is refused with an error
// wrapping [session.ErrConflict] instead of overwriting the newer value.
// The store is also a [session.Expirer] (SET ... PX, PEXPIRE: Redis drops
// expired sessions itself) and a [session.Lister] (SCAN, never KEYS).
// [Store.Unlocked] is the same store without the lock, for a bot that runs
// as one process.
//
// # Keys in Redis
//
// The session key k is stored at Prefix + "{" + k + "}" and its lock at
// Prefix + "{" + k + "}:lock". The braces are a Redis Cluster hash tag: a
// key and its lock always hash to the same slot, which the Lua scripts
// that check a lease and write in one step need. In a cluster (or a ring)
// the prefix must not contain '{' or '}' ([New] refuses one that does),
// and session keys must not be empty or start with '}' (the middleware's
// keys never are); elsewhere any bytes work.
// With a cluster client [Store.Keys] scans every master. (The tests run
// the suites against a three-master cluster.)
//
// # Cost
//
// A locked update makes 2 requests whatever it does to its session, with
// or without a TTL: one script takes the lease and reads the session, one
// checks the lease, applies the change (SET, PEXPIRE, DEL or nothing) and
// deletes the lease. ([Script] runs a script by its SHA; the first use of
// each script on a server adds one request that loads it.) Through
// [Store.Unlocked] an update makes 1 request to read and 1 to write or
// touch, if it does. A lazy update that never touches its session makes
// none either way. A lease held longer than LockLease/3 is renewed, one
// request each LockLease/3.
//
// # Client settings
//
// Create the client with ContextTimeoutEnabled: true so that a cancelled
// or expired context interrupts a call that is waiting on the network, not
// just calls that have not started.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tgsession/session"
	"github.com/tgsession/session/internal/lease"
	"github.com/tgsession/session/internal/locallock"
)

// Options configures a [Store]. The zero value is usable: no prefix, no
// expiry, locking across processes with a 10-second lease.
//
// [New] checks the options and reports every mistake as an error wrapping
// [session.ErrConfig] that names the field; the rules are given with each
// field. The zero value of every field is valid and means what the field
// says (a default, or none: no prefix, no expiry).
type Options struct {
	// Prefix is prepended to every Redis key the store uses, so several
	// bots or stores can share one database. See the package doc for the
	// exact layout. With a cluster or ring client (*redis.ClusterClient,
	// *redis.Ring) it must not contain '{' or '}': the hash tag that keeps
	// a key and its lock together must be the store's own.
	Prefix string

	// TTL, if positive, makes every session expire this long after its
	// last write or touch (SET ... PX, PEXPIRE). Redis drops expired keys
	// itself. Zero means sessions never expire. Redis counts in whole
	// milliseconds, so a TTL must be at least 1ms; a negative one is an
	// error.
	TTL time.Duration

	// LockLease is how long a lock outlives a holder that stopped renewing
	// it (a crashed or frozen process): other processes wait at most this
	// long for the key. While held, the lock is renewed every LockLease/3.
	// Default (zero) 10s; otherwise at least 30ms, so that a renewal has
	// time to reach Redis before the lease runs out (a negative lease is
	// an error).
	LockLease time.Duration

	// LockRetry is the longest pause between two attempts to take a lock
	// held by another process. Attempts start 1ms apart and double up to
	// LockRetry, with jitter. Default (zero) 20ms; negative is an error.
	LockRetry time.Duration

	// DisableLocking makes Lock exclude holders within this process only,
	// with no lease in Redis and no fencing: one round trip fewer per
	// lock and unlock each, but two processes sharing the store can lose
	// each other's updates. For single-process bots (and for tests that
	// show the difference).
	DisableLocking bool

	// OnError, if set, receives the errors that have no caller to return
	// to: a lock renewal or release that failed, or a lease found lost
	// while renewing. Nil ignores them (a lease that could not be released
	// expires by itself after LockLease). Nothing is logged by default.
	OnError func(error)

	// ScanCount is the COUNT hint of each SCAN the iterators make.
	// Default (zero) 100; negative is an error.
	ScanCount int64
}

const (
	defaultLease     = 10 * time.Second
	defaultRetry     = 20 * time.Millisecond
	defaultScanCount = 100
	minLease         = 30 * time.Millisecond
)

// Store is a session store in Redis. It implements
// session.StorageAdapter[[]byte], [session.Locker], [session.Toucher] and
// session.Iterator[[]byte], and is safe for concurrent use. Make one with
// [New] and share it: locks are excluded within the process by the Store
// value, across processes by Redis.
type Store struct {
	client redis.UniversalClient
	opts   Options
	local  locallock.Table

	held *lease.Table // the leases this Store holds
}

var (
	_ session.StorageAdapter[[]byte] = (*Store)(nil)
	_ session.Locker                 = (*Store)(nil)
	_ session.Toucher                = (*Store)(nil)
	_ session.Iterator[[]byte]       = (*Store)(nil)
)

// New returns a store that keeps sessions in client, which may be a
// single-node, sentinel (failover) or cluster client. It does not contact
// the server. A nil client (also a nil pointer such as
// (*redis.Client)(nil)) and invalid [Options] are reported as an error
// wrapping [session.ErrConfig] that names the parameter or field.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if isNil(client) {
		return nil, configError("nil client")
	}
	if opts.TTL < 0 || (opts.TTL > 0 && opts.TTL < time.Millisecond) {
		return nil, configError("Options.TTL %v: must be 0 (no expiry) or at least 1ms", opts.TTL)
	}
	if opts.LockLease == 0 {
		opts.LockLease = defaultLease
	}
	if opts.LockLease < minLease {
		return nil, configError("Options.LockLease %v: must be 0 (default %v) or at least %v", opts.LockLease, defaultLease, minLease)
	}
	if opts.LockRetry == 0 {
		opts.LockRetry = defaultRetry
	}
	if opts.LockRetry < 0 {
		return nil, configError("Options.LockRetry %v: must not be negative", opts.LockRetry)
	}
	if opts.ScanCount == 0 {
		opts.ScanCount = defaultScanCount
	}
	if opts.ScanCount < 0 {
		return nil, configError("Options.ScanCount %d: must not be negative", opts.ScanCount)
	}
	switch client.(type) {
	case *redis.ClusterClient, *redis.Ring:
		if strings.ContainsAny(opts.Prefix, "{}") {
			return nil, configError("Options.Prefix %q: must not contain '{' or '}' with a cluster or ring client (the hash tag that keeps a key and its lock in one slot must be the store's own)", opts.Prefix)
		}
	}
	s := &Store{client: client, opts: opts}
	s.held = lease.NewTable(lease.Config{
		Name:  "redisstore",
		Lease: opts.LockLease,
		Retry: opts.LockRetry,
		Renew: func(ctx context.Context, key, token string) (bool, error) {
			n, err := renew.Run(ctx, s.client, []string{s.lockKey(key)}, token, s.opts.LockLease.Milliseconds()).Int()
			return n != 0, err
		},
		Release: func(ctx context.Context, key, token string) error {
			return release.Run(ctx, s.client, []string{s.lockKey(key)}, token).Err()
		},
		Lost:    session.ErrConflict,
		OnError: opts.OnError,
	})
	return s, nil
}

// configError reports a mistake in New's arguments.
func configError(format string, args ...any) error {
	return fmt.Errorf("redisstore: %w: %s", session.ErrConfig, fmt.Sprintf(format, args...))
}

// isNil reports whether c is nil or holds a nil pointer (or another nil
// value of a kind that can be nil), which would fail on first use.
func isNil(c redis.UniversalClient) bool {
	if c == nil {
		return true
	}
	switch v := reflect.ValueOf(c); v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}

// dataKey is the Redis key of session key k; see the package doc.
func (s *Store) dataKey(k string) string { return s.opts.Prefix + "{" + k + "}" }

// lockKey is the Redis key of k's lock: its data key plus a suffix, so
// both share the data key's hash tag and slot.
func (s *Store) lockKey(k string) string { return s.dataKey(k) + ":lock" }

// fail wraps err from operation op on key. If ctx has ended, the result
// also wraps ctx's error, whatever error the client made of it, so callers
// can test for context.Canceled.
func fail(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redisstore: %s %q: %w (%w)", op, key, cerr, err)
	}
	return fmt.Errorf("redisstore: %s %q: %w", op, key, err)
}

// Read returns the value stored at key; found is false if there is none
// or it has expired.
//
// The first Read of a key after this Store locked it costs no round trip:
// Lock fetched the value in the same step as it took the lease, and under
// the lease nobody else may change it.
func (s *Store) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fail(ctx, "read", key, err)
	}
	if v, found, ok := s.held.TakePrefetched(key, s.opts.TTL); ok {
		return v, found, nil
	}
	b, err := s.client.Get(ctx, s.dataKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fail(ctx, "read", key, err)
	}
	return b, true, nil
}

// Scripts that check this Store's lease and act in one atomic step.
// KEYS[1] is the data key, KEYS[2] its lock key (same slot), ARGV[1] the
// lease token.
var (
	// fencedSet writes ARGV[2] with a TTL of ARGV[3] ms (0: none) if the
	// lease still holds; returns 1 if written, 0 if the lease was lost.
	fencedSet = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1`)

	// fencedDel deletes the data key if the lease still holds; returns 1
	// if the lease held, 0 if it was lost.
	fencedDel = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`)

	// lockAndGet takes the lock (KEYS[1]) for token ARGV[1] with a lease
	// of ARGV[2] ms if it is free, and then returns {1, value of the data
	// key KEYS[2]} ({1} if there is none); {0} if the lock is taken. The
	// middleware reads the session right after locking it, so this saves
	// that round trip.
	lockAndGet = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local v = redis.call('GET', KEYS[2])
if v then return {1, v} end
return {1}`)

	// renew extends the lock (KEYS[1]) to ARGV[2] ms if ARGV[1] still
	// owns it; returns 1 if so, 0 if it was lost.
	renew = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])`)

	// release deletes the lock (KEYS[1]) only if ARGV[1] still owns it:
	// a holder whose lease expired must not free the next holder's lock.
	release = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

func (s *Store) ttlMillis() int64 { return s.opts.TTL.Milliseconds() }

// Write stores value at key, restarting its TTL. If this Store holds key's
// lock, the write happens only if the lease still holds (checked by Redis
// in the same step); otherwise it returns an error wrapping
// [session.ErrConflict] and writes nothing.
func (s *Store) Write(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "write", key, err)
	}
	if tok, ok := s.held.Token(key); ok {
		ok, err := fencedSet.Run(ctx, s.client, []string{s.dataKey(key), s.lockKey(key)},
			tok, value, s.ttlMillis()).Int()
		if err != nil {
			return fail(ctx, "write", key, err)
		}
		if ok == 0 {
			return fmt.Errorf("redisstore: write %q: %w", key, session.ErrConflict)
		}
		return nil
	}
	if err := s.client.Set(ctx, s.dataKey(key), value, s.opts.TTL).Err(); err != nil {
		return fail(ctx, "write", key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error. Under this Store's
// lock it is fenced like [Store.Write].
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "delete", key, err)
	}
	if tok, ok := s.held.Token(key); ok {
		ok, err := fencedDel.Run(ctx, s.client, []string{s.dataKey(key), s.lockKey(key)}, tok).Int()
		if err != nil {
			return fail(ctx, "delete", key, err)
		}
		if ok == 0 {
			return fmt.Errorf("redisstore: delete %q: %w", key, session.ErrConflict)
		}
		return nil
	}
	if err := s.client.Del(ctx, s.dataKey(key)).Err(); err != nil {
		return fail(ctx, "delete", key, err)
	}
	return nil
}

// Touch restarts key's TTL without rewriting it (PEXPIRE). It does nothing
// when the store has no TTL; a missing key is not an error.
func (s *Store) Touch(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "touch", key, err)
	}
	if s.opts.TTL <= 0 {
		return nil
	}
	s.held.Token(key) // drops a prefetched value
	if err := s.client.PExpire(ctx, s.dataKey(key), s.opts.TTL).Err(); err != nil {
		return fail(ctx, "touch", key, err)
	}
	return nil
}

// Lock takes key's lock: first within this process, then, unless
// [Options.DisableLocking] is set, a lease in Redis (SET NX PX with a
// random token, in a script that also reads the value) that no other process can take until it is released or
// expires. It waits until both are had or ctx ends; then it returns an
// error wrapping ctx's error.
//
// The lease is renewed every LockLease/3 until unlock is called or ctx
// ends: a holder whose context has ended can no longer use the store, and
// a holder that is gone must not keep the key. While this Store holds
// key's lease, its writes and deletes of key are fenced (see
// [Store.Write]). unlock stops the renewal and deletes the lease only if
// this Store still owns it; calling it again does nothing.
//
// Round trips: one to lock and one to unlock when the key is free. The
// lock's round trip also fetches the key's value, which the first
// [Store.Read] under the lock returns, so a locked update costs one round
// trip more than an unlocked one, not two.
func (s *Store) Lock(ctx context.Context, key string) (unlock func(), err error) {
	unlockLocal, err := s.local.Lock(ctx, key)
	if err != nil {
		return nil, fail(ctx, "lock", key, err)
	}
	if s.opts.DisableLocking {
		var once atomic.Bool
		return func() {
			if once.CompareAndSwap(false, true) {
				unlockLocal()
			}
		}, nil
	}

	lk := s.lockKey(key)
	var res []any // lockAndGet's reply
	l, err := s.held.Acquire(ctx, key, func(token string) (bool, error) {
		var err error
		res, err = lockAndGet.Run(ctx, s.client, []string{lk, s.dataKey(key)}, token, s.opts.LockLease.Milliseconds()).Slice()
		ok := err == nil && len(res) > 0 && res[0] == int64(1)
		if err == nil && len(res) > 2 {
			err = fmt.Errorf("lock script: unexpected reply %v", res)
		}
		return ok, err
	})
	if err != nil {
		unlockLocal()
		return nil, fail(ctx, "lock", key, err)
	}
	if len(res) == 2 {
		if v, isString := res[1].(string); isString {
			l.Prefetch([]byte(v), true)
		} // else an odd reply: let Read ask Redis
	} else {
		l.Prefetch(nil, false)
	}
	return s.held.Hold(ctx, key, l, unlockLocal), nil
}

// Keys yields the key of every stored session, each once, in no
// particular order. It scans with SCAN (on every master of a cluster), so
// it never blocks the server; sessions written or deleted during the scan
// may or may not be seen. To yield each key once although SCAN may repeat
// one, it remembers the keys yielded so far.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		s.scan(ctx, false, func(k string, _ []byte, err error) bool { return yield(k, err) })
	}
}

// Values yields the value of every stored session, as [Store.Keys] finds
// them (one pipelined GET per SCAN batch).
func (s *Store) Values(ctx context.Context) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		s.scan(ctx, true, func(_ string, v []byte, err error) bool { return yield(v, err) })
	}
}

// Entries yields the key and value of every stored session, as
// [Store.Values] does.
func (s *Store) Entries(ctx context.Context) iter.Seq2[session.Entry[[]byte], error] {
	return func(yield func(session.Entry[[]byte], error) bool) {
		s.scan(ctx, true, func(k string, v []byte, err error) bool {
			if err != nil {
				return yield(session.Entry[[]byte]{}, err)
			}
			return yield(session.Entry[[]byte]{Key: k, Value: v}, nil)
		})
	}
}

// nodes returns the clients to SCAN: every master of a cluster, every
// shard of a ring, or the client itself.
func (s *Store) nodes(ctx context.Context) ([]redis.UniversalClient, error) {
	var mu sync.Mutex
	var out []redis.UniversalClient
	collect := func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		out = append(out, c)
		mu.Unlock()
		return nil
	}
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		if err := c.ForEachMaster(ctx, collect); err != nil {
			return nil, err
		}
	case *redis.Ring:
		if err := c.ForEachShard(ctx, collect); err != nil {
			return nil, err
		}
	default:
		out = []redis.UniversalClient{s.client}
	}
	return out, nil
}

// scan calls yield for every stored session (with its value if values is
// set) until yield returns false or an error has been yielded.
func (s *Store) scan(ctx context.Context, values bool, yield func(string, []byte, error) bool) {
	stop := func(err error) { yield("", nil, fmt.Errorf("redisstore: scan: %w", err)) }
	if err := ctx.Err(); err != nil {
		stop(err)
		return
	}
	nodes, err := s.nodes(ctx)
	if err != nil {
		stop(err)
		return
	}
	// Data keys are prefix{key}; lock keys end in ":lock" and so do not
	// match the trailing '}'.
	match := escapeGlob(s.opts.Prefix) + "{*}"
	seen := make(map[string]struct{})
	for _, node := range nodes {
		var cursor uint64
		for {
			if err := ctx.Err(); err != nil {
				stop(err)
				return
			}
			keys, next, err := node.Scan(ctx, cursor, match, s.opts.ScanCount).Result()
			if err != nil {
				stop(err)
				return
			}
			var fresh []string
			for _, rk := range keys {
				if _, dup := seen[rk]; dup {
					continue
				}
				seen[rk] = struct{}{}
				fresh = append(fresh, rk)
			}
			if !s.yieldBatch(ctx, node, fresh, values, yield) {
				return
			}
			if next == 0 {
				break
			}
			cursor = next
		}
	}
}

// yieldBatch yields one SCAN batch; false means stop.
func (s *Store) yieldBatch(ctx context.Context, node redis.UniversalClient, rkeys []string, values bool, yield func(string, []byte, error) bool) bool {
	if len(rkeys) == 0 {
		return true
	}
	var gets []*redis.StringCmd
	if values {
		pipe := node.Pipeline()
		gets = make([]*redis.StringCmd, len(rkeys))
		for i, rk := range rkeys {
			gets[i] = pipe.Get(ctx, rk)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			yield("", nil, fmt.Errorf("redisstore: scan: %w", err))
			return false
		}
	}
	for i, rk := range rkeys {
		k := strings.TrimSuffix(strings.TrimPrefix(rk, s.opts.Prefix+"{"), "}")
		var v []byte
		if values {
			b, err := gets[i].Bytes()
			if errors.Is(err, redis.Nil) {
				continue // deleted or expired since the SCAN
			}
			if err != nil {
				yield("", nil, fmt.Errorf("redisstore: scan: read %q: %w", k, err))
				return false
			}
			v = b
		}
		if !yield(k, v, nil) {
			return false
		}
	}
	return true
}

// escapeGlob quotes the characters SCAN MATCH treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := range len(s) {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
