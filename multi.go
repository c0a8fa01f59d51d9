package session

import "fmt"

// NewFragment declares one fragment of a multi session: the field of S
// that field points to, stored with its own Options (storage, key
// function, prefix, initial value; the defaults are those of a single
// session). Unless opts.Prefix is set, stored keys are prefixed with
// name + ":", so fragments that share one storage never overwrite each
// other.
func NewFragment[S, F any](name string, field func(*S) *F, opts Options[F]) *Fragment[S, F] {
	if field == nil {
		panic(fmt.Errorf("%w: fragment %q has no field accessor", ErrConfig, name))
	}
	if opts.Prefix == "" {
		opts.Prefix = name + ":"
	}
	return newFragment(name, field, opts)
}

// Part is a fragment of a multi session as [Multi] and [LazyMulti] take
// it; every [*Fragment] is one.
type Part[S any] interface {
	part[S]
}

// Multi returns a session middleware over several fragments of S, each
// loaded (before the handler) and written back independently. A fragment
// whose key function gives no key for an update is an error only when the
// handler accesses it. Fragments may live in different stores, so their
// write-back is not atomic: if one write fails, the update returns that
// error (joined with any others) while the fragments already written stay
// written.
//
// Like http.Handle with a bad pattern, Multi panics with an error
// wrapping [ErrConfig] if it is given no fragments, a nil one, or two with
// the same or an empty name (and NewFragment panics without a field
// accessor): these are programming errors, found on the first run.
func Multi[S any](fragments ...Part[S]) Middleware[S] {
	return newEngine(false, checkParts(fragments)...).middleware
}

// LazyMulti is [Multi] with lazy loading: only the fragments a handler
// touches are read and written.
func LazyMulti[S any](fragments ...Part[S]) Middleware[S] {
	return newEngine(true, checkParts(fragments)...).middleware
}

func checkParts[S any](fragments []Part[S]) []part[S] {
	if len(fragments) == 0 {
		panic(fmt.Errorf("%w: Multi needs at least one fragment", ErrConfig))
	}
	parts := make([]part[S], len(fragments))
	names := make(map[string]bool, len(fragments))
	for i, f := range fragments {
		if f == nil {
			panic(fmt.Errorf("%w: fragment %d is nil", ErrConfig, i))
		}
		name := f.info().name
		if name == "" || names[name] {
			panic(fmt.Errorf("%w: fragment name %q is empty or used twice", ErrConfig, name))
		}
		names[name] = true
		parts[i] = f
	}
	return parts
}
