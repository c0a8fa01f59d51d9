package session

import (
	"bytes"
	"encoding/binary"
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

// updateRef names the update a Context carries, for its mark: zero when the
// Context does not say which bot's update it is (one built without a
// bot, as in most tests) or has no update id.
type updateRef struct {
	bot int64
	id  int
}

func updateOf(botID int64, updateID int) updateRef {
	if botID == 0 || updateID <= 0 {
		return updateRef{}
	}
	return updateRef{botID, updateID}
}

// marked reports whether u names an update.
func (u updateRef) marked() bool { return u.bot != 0 }

// mark returns the mark of u, "" for none.
func (u updateRef) mark() string {
	if !u.marked() {
		return ""
	}
	return strconv.FormatInt(u.bot, 10) + ":" + strconv.Itoa(u.id)
}

// entry returns the record entry of u.
func (u updateRef) entry() [entrySize]byte {
	var e [entrySize]byte
	binary.LittleEndian.PutUint64(e[:8], uint64(u.id))
	binary.LittleEndian.PutUint64(e[8:], uint64(u.bot))
	return e
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
// first, 16 bytes each: the update id, then the bot id, both uint64
// little-endian (the update id first, so that a search for a mark rarely
// stops at a wrong place). A record of another length is treated as no
// record.

const entrySize = 16

// recordHas reports whether record holds entry e.
func recordHas(record []byte, e [entrySize]byte) bool {
	if len(record)%entrySize != 0 {
		return false
	}
	for off := 0; off < len(record); {
		i := bytes.Index(record[off:], e[:])
		if i < 0 {
			return false
		}
		if (off+i)%entrySize == 0 {
			return true
		}
		off += i + 1
	}
	return false
}

// recordAdd returns a new record: e, then record's newest entries, up to
// AppliedWindow in all.
func recordAdd(record []byte, e [entrySize]byte) []byte {
	if len(record)%entrySize != 0 {
		record = nil
	}
	keep := min(len(record), (AppliedWindow-1)*entrySize)
	out := make([]byte, entrySize+keep)
	copy(out, e[:])
	copy(out[entrySize:], record[:keep])
	return out
}
