// Command bench measures the session middleware end to end, the way the
// grammY session benchmark harness does: for each update it builds the
// update and a fresh Context, runs the middleware and a handler that
// increments a per-chat counter, with -c updates in flight over -k chats.
// It prints one JSON line:
//
//	{"mode","storage","n","k","c","seconds","updates_per_sec","ns_per_update","heap_used_mb","lost_updates"}
//
// After a warm-up of 20,000 updates the storage is emptied, then n updates
// are timed. lost_updates is n minus the sum of the counters read back
// from storage (null for modes that count nothing: none, lazy-untouched).
//
//	go run ./bench -mode strict -storage memory -n 1000000 -k 1000 -c 1
//
// Redis, PostgreSQL and bbolt are reached with -redis, -postgres and -bolt.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// counter is the session: one number, as in the grammY harness.
type counter struct {
	Count int `json:"count"`
}

// pair is the session of the multi mode: one fragment per chat, one per user.
type pair struct {
	Chat counter
	User counter
}

const warmup = 20000

type config struct {
	mode, storage string
	n, k, c       int
	backends      backendConfig
}

type result struct {
	Mode          string  `json:"mode"`
	Storage       string  `json:"storage"`
	N             int     `json:"n"`
	K             int     `json:"k"`
	C             int     `json:"c"`
	Seconds       float64 `json:"seconds"`
	UpdatesPerSec float64 `json:"updates_per_sec"`
	NsPerUpdate   float64 `json:"ns_per_update"`
	HeapUsedMB    float64 `json:"heap_used_mb"`
	LostUpdates   *int    `json:"lost_updates"`
}

func main() {
	var cfg config
	flag.StringVar(&cfg.mode, "mode", "strict", "strict, lazy, lazy-untouched, none, enhance-ttl or multi")
	flag.StringVar(&cfg.storage, "storage", "memory", "memory, json, redis, postgres or bolt")
	flag.IntVar(&cfg.n, "n", 1_000_000, "updates to time")
	flag.IntVar(&cfg.k, "k", 1000, "chats (IDs 1..k, round-robin)")
	flag.IntVar(&cfg.c, "c", 1, "updates in flight")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the timed run to `file`")
	memprofile := flag.String("memprofile", "", "write an allocation profile after the timed run to `file`")
	flag.StringVar(&cfg.backends.redisAddr, "redis", "127.0.0.1:6379", "Redis address")
	flag.StringVar(&cfg.backends.postgresURL, "postgres", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL URL")
	flag.StringVar(&cfg.backends.boltPath, "bolt", "", "bbolt file (default: a temporary file)")
	noMarks := flag.Bool("nomarks", false, "run updates without a bot, so that no store records them as applied (as before the record existed)")
	flag.Parse()
	if *noMarks {
		bot = nil
	}
	if cfg.n < 1 || cfg.k < 1 || cfg.c < 1 {
		fail(errors.New("-n, -k and -c must be at least 1"))
	}

	var start, stop func()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fail(err)
		}
		start = func() {
			if err := pprof.StartCPUProfile(f); err != nil {
				fail(err)
			}
		}
		stop = func() { pprof.StopCPUProfile(); f.Close() }
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
	}

	res, err := run(cfg, start, stop)
	if err != nil {
		fail(err)
	}
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			fail(err)
		}
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			fail(err)
		}
		f.Close()
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// run builds the handler of cfg.mode over cfg.storage, warms up, empties
// the storage and times cfg.n updates.
func run(cfg config, start, stop func()) (*result, error) {
	b, err := openBackend(cfg.storage, cfg.backends)
	if err != nil {
		return nil, err
	}
	defer b.close()

	var h func(ctx context.Context, u tgbotapi.Update) error
	var count func(ctx context.Context) (int, error) // nil: nothing counted
	var keys []keyed                                 // what to empty after the warm-up
	chatKeys := func(prefix string) []string {
		ks := make([]string, cfg.k)
		for i := range ks {
			ks[i] = prefix + strconv.Itoa(i+1)
		}
		return ks
	}

	switch cfg.mode {
	case "strict", "lazy", "lazy-untouched", "enhance-ttl":
		opts := session.Options[counter]{Storage: b.store, Lazy: cfg.mode == "lazy" || cfg.mode == "lazy-untouched"}
		if cfg.mode == "enhance-ttl" {
			opts.TTL = time.Hour // native where the store expires keys, else the envelope
		}
		sess, err := session.New(opts)
		if err != nil {
			return nil, err
		}
		inc := increment
		if cfg.mode == "lazy-untouched" {
			inc = func(*session.Context[counter]) error { return nil }
		} else {
			count = sumStored(b.store, chatKeys(""))
		}
		h = ctxHandler(sess.Middleware(inc))
		keys = []keyed{{b.store, chatKeys("")}}
	case "multi":
		// Two fragments per update: the chat's and the user's (users
		// 1..k, one per chat), each counted.
		chat := session.NewFragment("chat", func(p *pair) *counter { return &p.Chat }, session.Options[counter]{Storage: b.store})
		user := session.NewFragment("user", func(p *pair) *counter { return &p.User }, session.Options[counter]{Storage: b.store, Key: session.ByUser})
		sess, err := session.NewMulti(session.Options[pair]{}, chat, user)
		if err != nil {
			return nil, err
		}
		h = ctxHandler(sess.Middleware(func(c *session.Context[pair]) error {
			p, err := c.Session()
			if err != nil {
				return err
			}
			p.Chat.Count++
			p.User.Count++
			return nil
		}))
		chats, users := sumStored(b.store, chatKeys("chat:")), sumStored(b.store, chatKeys("user:"))
		// Each fragment must count every update: lost is the shortfall
		// of both together.
		count = func(ctx context.Context) (int, error) {
			a, err := chats(ctx)
			if err != nil {
				return 0, err
			}
			u, err := users(ctx)
			return a + u - cfg.n, err
		}
		keys = []keyed{{b.store, chatKeys("chat:")}, {b.store, chatKeys("user:")}}
	case "none":
		h = func(context.Context, tgbotapi.Update) error { return nil }
	default:
		return nil, fmt.Errorf("unknown -mode %q", cfg.mode)
	}

	ctx := context.Background()
	if err := drive(ctx, h, warmup, cfg.k, cfg.c); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	for _, k := range keys {
		for _, key := range k.keys {
			if err := k.store.Delete(ctx, key); err != nil {
				return nil, fmt.Errorf("emptying the storage: %w", err)
			}
		}
	}
	if os.Getenv("GOGC") != "off" { // with the collector off (instruction counts) a GC here would scan a heap that grows with -n
		runtime.GC()
	}

	if start != nil {
		start()
	}
	t0 := time.Now()
	err = drive(ctx, h, cfg.n, cfg.k, cfg.c)
	elapsed := time.Since(t0)
	if stop != nil {
		stop()
	}
	if err != nil {
		return nil, err
	}
	if os.Getenv("GOGC") != "off" { // with the collector off (instruction counts) a GC here would scan a heap that grows with -n
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	res := &result{
		Mode: cfg.mode, Storage: cfg.storage, N: cfg.n, K: cfg.k, C: cfg.c,
		Seconds:       elapsed.Seconds(),
		UpdatesPerSec: float64(cfg.n) / elapsed.Seconds(),
		NsPerUpdate:   float64(elapsed.Nanoseconds()) / float64(cfg.n),
		HeapUsedMB:    float64(ms.HeapAlloc) / (1 << 20),
	}
	if count != nil {
		got, err := count(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the counters back: %w", err)
		}
		lost := cfg.n - got
		res.LostUpdates = &lost
	}
	return res, nil
}

type keyed struct {
	store session.Store
	keys  []string
}

func increment(c *session.Context[counter]) error {
	s, err := c.Session()
	if err != nil {
		return err
	}
	s.Count++
	return nil
}

// bot is the bot the updates come from, as runner.Run gives it to each
// Context: its id makes each session record the updates applied to it.
var bot = &tgbotapi.BotAPI{Self: tgbotapi.User{ID: 1, IsBot: true}}

// updateIDs numbers the updates of every run from a base that grows with
// the clock, so no update id repeats one that a persistent store recorded
// in an earlier run (a repeated id would be skipped as a redelivery).
var updateIDs atomic.Int64

func init() { updateIDs.Store(time.Now().UnixMicro()) }

// ctxHandler runs h on a fresh Context per update, as a bot does.
func ctxHandler[S any](h session.Handler[S]) func(ctx context.Context, u tgbotapi.Update) error {
	return func(ctx context.Context, u tgbotapi.Update) error {
		return h(session.NewContext[S](ctx, bot, u))
	}
}

// sumStored reads the counters of keys back from the store.
func sumStored(store session.Store, keys []string) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		total := 0
		for _, k := range keys {
			data, found, err := store.Read(ctx, k)
			if err != nil || !found {
				return total, err
			}
			var v struct {
				Count int
				D     *counter `json:"__d"` // grammY's envelope, with a TTL on a plain store
			}
			if err := json.Unmarshal(data, &v); err != nil {
				return 0, fmt.Errorf("%s: %w", k, err)
			}
			if v.D != nil {
				v.Count = v.D.Count
			}
			total += v.Count
		}
		return total, nil
	}
}

// drive passes n updates through h, update i from chat and user i%k+1,
// with c of them in flight at a time. Each update is built as tgbotapi
// would decode it: a message with a chat and a sender.
func drive(ctx context.Context, h func(context.Context, tgbotapi.Update) error, n, k, c int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				id := int64(i%k + 1)
				u := tgbotapi.Update{UpdateID: int(updateIDs.Add(1)), Message: &tgbotapi.Message{
					MessageID: i,
					Chat:      &tgbotapi.Chat{ID: id, Type: "private"},
					From:      &tgbotapi.User{ID: id},
					Text:      "hi",
				}}
				if err := h(ctx, u); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
