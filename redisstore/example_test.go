package redisstore_test

import (
	"context"
	"fmt"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
)

// A counter per chat in Redis, shared by every replica of the bot: the
// store's lock keeps two replicas from losing each other's increments.
func Example() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{
		Addr:                  redisAddr(), // "127.0.0.1:6379"
		ContextTimeoutEnabled: true,        // a cancelled update stops waiting on Redis
	})
	defer client.Close()

	store, err := redisstore.New(client, redisstore.Options{
		Prefix: "example-bot:", // keys "example-bot:{<chat>}"
	})
	if err != nil {
		panic(err)
	}

	type Data struct{ Count int }
	sess, err := session.New(session.Options[Data]{
		Storage: store,
		TTL:     30 * 24 * time.Hour, // forget chats idle for a month
	})
	if err != nil {
		panic(err)
	}
	h := sess.Middleware(func(c *session.Context[Data]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		fmt.Println("messages so far:", s.Count)
		return nil
	})

	_ = store.Delete(ctx, "42")   // start from scratch
	defer store.Delete(ctx, "42") // and leave nothing behind
	for i := range 3 {
		u := tgbotapi.Update{UpdateID: i, Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 42}}}
		if err := h(session.NewContext[Data](ctx, nil, u)); err != nil {
			panic(err)
		}
	}
	// Output:
	// messages so far: 1
	// messages so far: 2
	// messages so far: 3
}

// Listing every stored session, for a broadcast or an admin tool: SCAN
// underneath, so Redis is never blocked.
func ExampleStore_Keys() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer client.Close()
	store, err := redisstore.New(client, redisstore.Options{Prefix: "example-keys:"})
	if err != nil {
		panic(err)
	}
	for _, chat := range []string{"1", "2"} {
		if err := store.Write(ctx, chat, []byte(`{"Count":1}`)); err != nil {
			panic(err)
		}
		defer store.Delete(ctx, chat)
	}

	n := 0
	for _, err := range store.Keys(ctx) {
		if err != nil {
			panic(err)
		}
		n++
	}
	fmt.Println(n, "chats")
	// Output: 2 chats
}
