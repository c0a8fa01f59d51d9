package telegramtest

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

// RoundRobin returns a load balancer for tests of several replicas of a
// webhook bot: it passes each request on to the next of urls in turn,
// path, headers (the secret header included) and body unchanged, and
// answers with that replica's answer (502 when it cannot be reached).
// Serve it with httptest.NewServer and give its URL to setWebhook.
//
// It panics if urls is empty or one of them is not an absolute URL.
func RoundRobin(urls ...string) http.Handler {
	if len(urls) == 0 {
		panic("telegramtest: RoundRobin: no urls")
	}
	proxies := make([]*httputil.ReverseProxy, len(urls))
	for i, u := range urls {
		target, err := url.Parse(u)
		if err != nil || target.Scheme == "" || target.Host == "" {
			panic("telegramtest: RoundRobin: " + u + " is not an absolute URL")
		}
		proxies[i] = httputil.NewSingleHostReverseProxy(target)
	}
	var next atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := (next.Add(1) - 1) % uint64(len(proxies))
		proxies[i].ServeHTTP(w, r)
	})
}
