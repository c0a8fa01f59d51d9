// Package unlocked is the view of a locking store without its lock, which
// redisstore and pgstore return from Unlocked: the same data, expiry and
// listing, but no Lock method, so the middleware locks keys within the
// process only. It has no Unwrap either: nothing below it claims a Locker.
package unlocked

import (
	"context"
	"iter"
	"time"

	"github.com/tgsession/session"
)

// Base is what the view passes on.
type Base interface {
	session.Store
	session.Expirer
	session.Lister
}

// Of returns base without its Lock. Keep the result and hand out the same
// value each time: the middleware's lock table is keyed by the store.
func Of(base Base) session.Store { return &view{base} }

type view struct{ base Base }

var (
	_ session.Expirer = (*view)(nil)
	_ session.Lister  = (*view)(nil)
)

func (v *view) Read(ctx context.Context, key string) ([]byte, bool, error) {
	return v.base.Read(ctx, key)
}

func (v *view) Write(ctx context.Context, key string, value []byte) error {
	return v.base.Write(ctx, key, value)
}

func (v *view) Delete(ctx context.Context, key string) error { return v.base.Delete(ctx, key) }

func (v *view) WriteTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return v.base.WriteTTL(ctx, key, value, ttl)
}

func (v *view) Touch(ctx context.Context, key string, ttl time.Duration) error {
	return v.base.Touch(ctx, key, ttl)
}

func (v *view) Keys(ctx context.Context) iter.Seq2[string, error] { return v.base.Keys(ctx) }
