package session

// Lazy returns a session middleware that reads the session only when the
// handler first asks for it ([Context.Session]). An update that never
// touches its session costs no storage call and no lock; many accesses in
// one update cost one read. [Context.SetSession] and
// [Context.ClearSession] need no read at all.
//
// What is serialised is the session, not the handler: an update takes the
// lock of its session key at its first access and holds it until the
// session is written back, so two updates never change one session at
// once, but the part of a handler before its first access runs alongside
// other updates of the same key.
//
// Handlers written for Lazy run unchanged under [Strict]: the accessors
// are the same, so plugin code written against them works with either.
func Lazy[S any](opts Options[S]) Middleware[S] {
	return newEngine(true, single(opts)).middleware
}
