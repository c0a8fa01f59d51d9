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
// The session key k is stored at Prefix + "{" + k + "}", its lock at
// Prefix + "{" + k + "}:lock" and its record of applied updates (a list of
// marks, see [session.Locker]) at Prefix + "{" + k + "}:applied". The
// braces are a Redis Cluster hash tag: a key, its lock and its record
// always hash to the same slot, which the Lua scripts
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
// deletes the lease. (Scripts run by their SHA, EVALSHA; the first use of
// each script on a server adds one request, an EVAL that loads it.) Through
// [Store.Unlocked] an update makes 1 request to read and 1 to write or
// touch, if it does, and one more of each for the record of applied
// updates when it names its bot (as runner.Run's updates do): 3 to 4. A lazy update that never touches its session makes
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
	"github.com/tgsession/session/internal/unlocked"
)

// Options configures a [Store]. The zero value is usable: no prefix,
// locking across processes with a 10-second lease.
//
// [New] checks the options and reports every mistake as an error wrapping
// [session.ErrConfig] that names the field; the rules are given with each
// field. The zero value of every field is valid and means what the field
// says (a default, or none: no prefix). Sessions expire as the middleware
// says (its TTL), not by an option of the store.
type Options struct {
	// Prefix is prepended to every Redis key the store uses, so several
	// bots or stores can share one database. See the package doc for the
	// exact layout. With a cluster or ring client (*redis.ClusterClient,
	// *redis.Ring) it must not contain '{' or '}': the hash tag that keeps
	// a key and its lock together must be the store's own.
	Prefix string

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

	// OnError, if set, receives the errors that have no caller to return
	// to: a lock renewal or release that failed, or a lease found lost
	// while renewing (wrapping [session.ErrConflict]). Nil ignores them (a
	// lease that could not be released expires by itself after
	// LockLease). Nothing is logged by default.
	OnError func(error)

	// ScanCount is the COUNT hint of each SCAN that [Store.Keys] makes.
	// Default (zero) 100; negative is an error.
	ScanCount int64
}

const (
	defaultLease     = 10 * time.Second
	defaultRetry     = 20 * time.Millisecond
	defaultScanCount = 100
	minLease         = 30 * time.Millisecond
)

// Store is a session store in Redis: a [session.Store] that is also a
// [session.Locker] (across processes), a [session.Expirer] and a
// [session.Lister]. It is safe for concurrent use and keeps no state per
// key but the locks it holds. Make one with [New] and share it: the
// waiters for a key's lock in one process queue on the Store value
// instead of polling Redis.
type Store struct {
	client   redis.UniversalClient
	opts     Options
	leases   lease.Config
	local    locallock.Table
	unlocked session.Store // the view Unlocked returns
}

var (
	_ session.Store   = (*Store)(nil)
	_ session.Locker  = (*Store)(nil)
	_ session.Expirer = (*Store)(nil)
	_ session.Lister  = (*Store)(nil)
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
	s.unlocked = unlocked.Of(s)
	s.leases = lease.Config{
		Name:  "redisstore",
		Lease: opts.LockLease,
		Retry: opts.LockRetry,
		Renew: func(ctx context.Context, key, token string) (bool, error) {
			n, err := renew.Run(ctx, s.client, []string{s.lockKey(key)}, token, opts.LockLease.Milliseconds()).Int()
			return n != 0, err
		},
		Release: func(ctx context.Context, key, token string) error {
			return release.Run(ctx, s.client, []string{s.lockKey(key)}, token).Err()
		},
		Lost:    session.ErrConflict,
		OnError: opts.OnError,
	}
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

// appliedKey is where k's record of applied updates lives: a list of
// marks, newest first, in the same slot.
func (s *Store) appliedKey(k string) string { return s.dataKey(k) + ":applied" }

// fail wraps err from operation op on key. If ctx has ended, the result
// also wraps ctx's error, whatever error the client made of it, so callers
// can test for context.Canceled.
func fail(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redisstore: %s %q: %w (%w)", op, key, cerr, err)
	}
	return fmt.Errorf("redisstore: %s %q: %w", op, key, err)
}

// millis is ttl in whole milliseconds, Redis's unit, rounded up so that a
// positive TTL never becomes 0 (no expiry).
func millis(ttl time.Duration) int64 {
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}

// Read returns the value stored at key; found is false if there is none
// or it has expired. It is one GET, unfenced.
func (s *Store) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fail(ctx, "read", key, err)
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

// Write stores value at key with no expiry (a SET, which also drops an
// expiry the key had). It is unfenced: it does not look at key's lock.
func (s *Store) Write(ctx context.Context, key string, value []byte) error {
	return s.WriteTTL(ctx, key, value, 0)
}

// WriteTTL stores value at key, to expire ttl from now (SET ... PX, ttl
// rounded up to a whole millisecond). A ttl of zero or less means no
// expiry, as [Store.Write]. It is unfenced.
func (s *Store) WriteTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "write", key, err)
	}
	var exp time.Duration
	if ttl > 0 {
		exp = time.Duration(millis(ttl)) * time.Millisecond
	}
	if err := s.client.Set(ctx, s.dataKey(key), value, exp).Err(); err != nil {
		return fail(ctx, "write", key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error. It is unfenced.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "delete", key, err)
	}
	if err := s.client.Del(ctx, s.dataKey(key)).Err(); err != nil {
		return fail(ctx, "delete", key, err)
	}
	return nil
}

// Touch makes key expire ttl from now without rewriting it (PEXPIRE, ttl
// rounded up to a whole millisecond). A missing key is not an error and
// stays missing; a ttl of zero or less does nothing (it does not make a
// key persistent).
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "touch", key, err)
	}
	if ttl <= 0 {
		return nil
	}
	if err := s.client.PExpire(ctx, s.dataKey(key), time.Duration(millis(ttl))*time.Millisecond).Err(); err != nil {
		return fail(ctx, "touch", key, err)
	}
	return nil
}

// The scripts of the lock. Each runs atomically on the node that holds
// the key's slot; a key and its lock share one (the hash tag).
var (
	// lockAndGet takes the lock KEYS[1] for token ARGV[1] with a lease of
	// ARGV[2] ms if it is free, and then returns {1, applied, value of the
	// data key KEYS[2]} ({1, applied} if there is none), where applied is
	// 1 if the mark ARGV[3] is in the record of applied updates KEYS[3]
	// (a list), 0 if not or without a mark; {0} if the lock is taken.
	lockAndGet = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local applied = 0
if ARGV[3] ~= '' and redis.call('LPOS', KEYS[3], ARGV[3]) then applied = 1 end
local v = redis.call('GET', KEYS[2])
if v then return {1, applied, v} end
return {1, applied}`)

	// commit applies a change to the data key KEYS[1] and deletes its
	// lock KEYS[2], if token ARGV[1] still owns the lock; returns 1 if so,
	// 0 if the lease was lost (and nothing was changed). ARGV[2] is the
	// operation: "w" SET ARGV[3] (with PX ARGV[4] if that is positive),
	// "t" PEXPIRE ARGV[4] (if positive), "d" DEL, "k" nothing. A mark
	// ARGV[5] is pushed onto the record of applied updates KEYS[3], which
	// keeps ARGV[6] marks and expires ARGV[7] ms after the last.
	commit = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local op, ttl = ARGV[2], tonumber(ARGV[4])
if op == 'w' then
  if ttl > 0 then
    redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  else
    redis.call('SET', KEYS[1], ARGV[3])
  end
elseif op == 't' then
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
elseif op == 'd' then
  redis.call('DEL', KEYS[1])
end
redis.call('DEL', KEYS[2])
if ARGV[5] ~= '' then
  redis.call('LPUSH', KEYS[3], ARGV[5])
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[6]) - 1)
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
return 1`)

	// renew extends the lock KEYS[1] to ARGV[2] ms if ARGV[1] still owns
	// it; returns 1 if so, 0 if it was lost.
	renew = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])`)

	// release deletes the lock KEYS[1] only if ARGV[1] still owns it: a
	// holder whose lease expired must not free the next holder's lock.
	release = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// Lock takes key's lock and reads its value. It waits first for the
// holders of key in this process (on the Store, without asking Redis),
// then takes a lease in Redis (SET NX PX with a random token) and reads
// the value in the same script, polling with backoff while another
// process holds the lease. It waits until the lock is had or ctx ends;
// then it returns an error wrapping ctx's error.
//
// The lease is renewed every LockLease/3 until the [session.Lease] is
// committed or released, and never after; the renewals do not depend on
// ctx. Its Commit checks the token, applies the change and deletes the
// lease in one script. Round trips: one to lock and read, one to commit,
// when the key is free.
func (s *Store) Lock(ctx context.Context, key, mark string) (session.Lease, error) {
	unlockLocal, err := s.local.Lock(ctx, key)
	if err != nil {
		return nil, fail(ctx, "lock", key, err)
	}
	x := &lockLease{s: s, key: key, mark: mark}
	keys := []string{s.lockKey(key), s.dataKey(key), s.appliedKey(key)}
	x.l, err = lease.Acquire(ctx, &s.leases, key, unlockLocal, func(token string) (bool, error) {
		res, err := lockAndGet.Run(ctx, s.client, keys, token, s.opts.LockLease.Milliseconds(), mark).Slice()
		if err != nil {
			return false, err
		}
		if len(res) == 1 && res[0] == int64(0) {
			return false, nil
		}
		if len(res) >= 2 && res[0] == int64(1) {
			x.applied = res[1] == int64(1)
			switch len(res) {
			case 2:
				x.value, x.found = nil, false
				return true, nil
			case 3:
				if v, ok := res[2].(string); ok {
					x.value, x.found = []byte(v), true
					return true, nil
				}
			}
		}
		// Taken or not, Acquire gives the lease back (by token).
		return false, fmt.Errorf("lock script: unexpected reply %v", res)
	})
	if err != nil {
		return nil, fail(ctx, "lock", key, err)
	}
	return x, nil
}

// lockLease is a [session.Lease] of a [Store]: the lease in Redis and the
// value read with it.
type lockLease struct {
	s       *Store
	key     string
	mark    string
	l       *lease.Lease
	value   []byte
	found   bool
	applied bool
}

// Value returns the value read with the lock.
func (x *lockLease) Value() ([]byte, bool) { return x.value, x.found }

// Applied reports whether the lease's mark was in the key's record of
// applied updates when the lock was taken.
func (x *lockLease) Applied() bool { return x.applied }

// Commit applies c and deletes the lease in one script, if the lease
// still holds; otherwise it changes nothing and returns an error wrapping
// [session.ErrConflict]. It ends the lease whatever it returns.
func (x *lockLease) Commit(ctx context.Context, c session.Change) error {
	var op string
	value := []byte{}
	var ttl int64
	switch c.Op {
	case session.OpKeep:
		op = "k"
	case session.OpWrite:
		op, value = "w", c.Value
		if c.TTL > 0 {
			ttl = millis(c.TTL)
		}
	case session.OpTouch:
		op = "t"
		if c.TTL > 0 {
			ttl = millis(c.TTL)
		}
	case session.OpDelete:
		op = "d"
	default:
		x.l.Release()
		return fmt.Errorf("redisstore: commit %q: unknown operation %d", x.key, c.Op)
	}
	keys := []string{x.s.dataKey(x.key), x.s.lockKey(x.key), x.s.appliedKey(x.key)}
	return x.l.Commit(ctx, func(ctx context.Context, token string) (bool, error) {
		n, err := commit.Run(ctx, x.s.client, keys, token, op, value, ttl,
			x.mark, session.AppliedWindow, session.AppliedTTL.Milliseconds()).Int()
		return n == 1, err
	})
}

// Release gives the lease back without a change.
func (x *lockLease) Release() { x.l.Release() }

// Freeze stops renewing the lease, as if this process had frozen: a hook
// for storagetest.RunLocker (storagetest.Freezer), which checks what
// happens when the lease runs out under its holder.
func (x *lockLease) Freeze() { x.l.Freeze() }

// Unlocked returns the store without its lock: a [session.Store], a
// [session.Expirer] and a [session.Lister] over the same keys, but not a
// [session.Locker] (nor does it unwrap to one). The middleware then locks
// keys within the process only: no lease, but more requests per update
// (see Cost in the package doc), and two processes sharing the keys can
// lose each other's updates. For comparing the two.
func (s *Store) Unlocked() session.Store { return s.unlocked }

// Keys yields the key of every stored session, each once, in no
// particular order. It scans with SCAN (on every master of a cluster), so
// it never blocks the server; sessions written or deleted during the scan
// may or may not be seen. To yield each key once although SCAN may repeat
// one, it remembers the keys yielded so far.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		stop := func(err error) { yield("", fmt.Errorf("redisstore: scan: %w", err)) }
		if err := ctx.Err(); err != nil {
			stop(err)
			return
		}
		nodes, err := s.nodes(ctx)
		if err != nil {
			stop(err)
			return
		}
		// Data keys are prefix{key}; lock keys and records end in ":lock"
		// and ":applied" and so do not match the trailing '}'.
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
				for _, rk := range keys {
					if _, dup := seen[rk]; dup {
						continue
					}
					seen[rk] = struct{}{}
					if !yield(strings.TrimSuffix(strings.TrimPrefix(rk, s.opts.Prefix+"{"), "}"), nil) {
						return
					}
				}
				if next == 0 {
					break
				}
				cursor = next
			}
		}
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
