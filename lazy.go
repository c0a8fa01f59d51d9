package session

// Lazy returns a session middleware that reads the session only when the
// handler first asks for it ([Context.Session]). An update that never
// touches its session costs no storage call and no lock; many accesses in
// one update cost one read. [Context.SetSession] and
// [Context.ClearSession] need no read at all.
//
// Handlers written for Lazy run unchanged under [Strict]: the accessors
// are the same, so plugin code written against them works with either.
func Lazy[S any](opts Options[S]) Middleware[S] {
	return newEngine(true, single(opts)).middleware
}
