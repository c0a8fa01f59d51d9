package demo

import (
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"

	"github.com/tgsession/session"
)

// The clock stands still until a Pass runs, and each run of it moves it on.
func TestClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c := NewClock(start)
	pass := c.Pass(time.Hour)
	assert.Equal(t, start, c.Now())
	pass()
	pass()
	assert.Equal(t, start.Add(2*time.Hour), c.Now())
}

// The first, third... updates go to the first replica, the others to the
// second, whatever their ids.
func TestAlternate(t *testing.T) {
	var got []string
	replica := func(name string) session.Handler[int] {
		return func(*session.Context[int]) error { got = append(got, name); return nil }
	}
	h := Alternate(replica("A"), replica("B"))
	for _, id := range []int{8, 9, 11, 12} {
		assert.NoError(t, h(&session.Context[int]{Update: tgbotapi.Update{UpdateID: id}}))
	}
	assert.Equal(t, []string{"A", "B", "A", "B"}, got)
}
