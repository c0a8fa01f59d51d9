package session

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Telegram redelivers an update it has no answer for: a webhook request
// that timed out or failed, or, after a crash, every update past the last
// confirmed polling offset. Each session key therefore keeps a record of
// the updates applied to it, committed with the session itself: a
// redelivered update finds its mark, and its session effects are not
// applied twice. A mark names one update of one bot, "<bot id>:<update
// id>", because update ids are unique only within one bot and several bots
// may share a store.

// AppliedWindow and AppliedTTL bound the record of applied updates that
// every store keeps per session key: the marks of at least the last
// AppliedWindow updates committed to the key, for AppliedTTL after the
// last of them (Telegram keeps an unconfirmed update for 24 hours).
const (
	AppliedWindow = 128
	AppliedTTL    = 24 * time.Hour
)

// ErrDuplicate reports an update already applied to its session: its
// mark was committed with an earlier delivery of the same update (see
// [Lease.Applied]). A strict session returns it from the middleware
// without running the handler; a lazy session returns it from the first
// access, and the handler should return it. Package runner counts such
// updates as deduplicated and acknowledges them. Errors that wrap it name
// the key.
var ErrDuplicate = errors.New("session: update already applied to this session")

// markOf returns the mark of the update c carries, or "" when c does not
// say which bot's update it is (a Context built without a bot, as in most
// tests) or has no update id.
func markOf(botID int64, updateID int) string {
	if botID == 0 || updateID <= 0 {
		return ""
	}
	return strconv.FormatInt(botID, 10) + ":" + strconv.Itoa(updateID)
}

// appliedSuffix marks the key that holds the record of a store without a
// [Locker], beside the session (see forwardSuffix).
const appliedSuffix = "\x1fapplied"

func appliedKey(key string) string { return key + appliedSuffix }

// isAuxKey reports whether a stored key is one of the engine's own
// (a forward or a record), which listings skip: it is not a session.
func isAuxKey(key string) bool {
	return strings.HasSuffix(key, forwardSuffix) || strings.HasSuffix(key, appliedSuffix)
}

// A record, as a store without a Locker keeps it, is its marks newest
// first, one per line.

// recordHas reports whether record holds mark.
func recordHas(record []byte, mark string) bool {
	for len(record) > 0 {
		line := record
		if i := bytes.IndexByte(record, '\n'); i >= 0 {
			line, record = record[:i], record[i+1:]
		} else {
			record = nil
		}
		if string(line) == mark {
			return true
		}
	}
	return false
}

// recordAdd returns record with mark added first, keeping AppliedWindow
// marks.
func recordAdd(record []byte, mark string) []byte {
	out := make([]byte, 0, len(mark)+1+len(record))
	out = append(out, mark...)
	n := 1
	for len(record) > 0 && n < AppliedWindow {
		line := record
		if i := bytes.IndexByte(record, '\n'); i >= 0 {
			line, record = record[:i], record[i+1:]
		} else {
			record = nil
		}
		out = append(append(out, '\n'), line...)
		n++
	}
	return out
}
