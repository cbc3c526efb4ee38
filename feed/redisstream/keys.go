package redisstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
)

// Keys outside the shards.
const (
	UniverseKey = "tickstream:universe"
	MetaKey     = "tickstream:meta"
	EpochKey    = "tickstream:epoch"
)

// DefaultShards is the default number of shard streams.
const DefaultShards = 16

// DefaultMaxLen is the default retention of each shard stream, in entries.
const DefaultMaxLen = 100_000

// StreamKey returns the key of shard i's stream.
func StreamKey(i int) string { return "ticks:{" + strconv.Itoa(i) + "}" }

// LastKey returns the key of shard i's latest-value hash.
func LastKey(i int) string { return "last:{" + strconv.Itoa(i) + "}" }

var (
	// ErrNoUniverse means no simulator has stored a universe in Redis yet.
	ErrNoUniverse = errors.New("no universe in redis (is a simulator running?)")
	// ErrGap means a replay cannot cover the span asked for: entries were
	// trimmed, Redis lost its history, or the span is too long.
	ErrGap = errors.New("replay gap")
	// ErrBadCursor means a resume cursor could not be parsed.
	ErrBadCursor = errors.New("malformed cursor")
)

// universeDoc is the stored form of the universe.
type universeDoc struct {
	Shards  int           `json:"shards"`
	Symbols []feed.Symbol `json:"symbols"`
}

// StoreUniverse writes the universe and the shard count.
func StoreUniverse(ctx context.Context, rdb redis.UniversalClient, u *feed.Universe, shards int) error {
	b, err := json.Marshal(universeDoc{Shards: shards, Symbols: u.Symbols()})
	if err != nil {
		return fmt.Errorf("encode universe: %w", err)
	}
	if len(b) > maxUniverseBytes {
		return fmt.Errorf("store universe: %d bytes of JSON, more than a node reads (%d)", len(b), maxUniverseBytes)
	}
	if err := rdb.Set(ctx, UniverseKey, b, 0).Err(); err != nil {
		return fmt.Errorf("store universe: %w", err)
	}
	if err := rdb.HSet(ctx, MetaKey, "shards", shards).Err(); err != nil {
		return fmt.Errorf("store shard count: %w", err)
	}
	return nil
}

// LoadUniverse reads the universe and shard count a publisher stored. It
// returns ErrNoUniverse if there is none yet.
func LoadUniverse(ctx context.Context, rdb redis.UniversalClient) (*feed.Universe, int, error) {
	b, err := readString(ctx, rdb, UniverseKey, maxUniverseBytes)
	if errors.Is(err, redis.Nil) {
		return nil, 0, ErrNoUniverse
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load universe: %w", err)
	}
	var doc universeDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, 0, fmt.Errorf("decode universe: %w", err)
	}
	if doc.Shards <= 0 {
		return nil, 0, fmt.Errorf("decode universe: shard count %d", doc.Shards)
	}
	u, err := feed.NewUniverse(doc.Symbols)
	if err != nil {
		return nil, 0, fmt.Errorf("decode universe: %w", err)
	}
	return u, doc.Shards, nil
}

// maxUniverseBytes bounds the universe's JSON a node reads (~500,000
// symbols).
const maxUniverseBytes = 64 << 20

// readPiece is the most of a string one reply carries when readString
// reads it: well under the cap of the node's connections (maxReplyString).
const readPiece = 1 << 20

// readString reads the string at key, of at most max bytes, in pieces the
// node's capped connections pass, all in one MULTI (one version of it). It
// returns redis.Nil when the key is missing or empty.
func readString(ctx context.Context, rdb redis.UniversalClient, key string, max int64) ([]byte, error) {
	for range 3 {
		n, err := rdb.StrLen(ctx, key).Result()
		switch {
		case err != nil:
			return nil, err
		case n == 0:
			return nil, redis.Nil
		case n > max:
			return nil, fmt.Errorf("%s holds %d bytes, more than %d", key, n, max)
		}
		var size *redis.IntCmd
		parts := make([]*redis.StringCmd, 0, (n+readPiece-1)/readPiece)
		if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			size = p.StrLen(ctx, key)
			for off := int64(0); off < n; off += readPiece {
				parts = append(parts, p.GetRange(ctx, key, off, min(off+readPiece, n)-1))
			}
			return nil
		}); err != nil {
			return nil, err
		}
		if size.Val() != n {
			continue // replaced meanwhile: again
		}
		b := make([]byte, 0, n)
		for _, p := range parts {
			b = append(b, p.Val()...)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s kept changing while read", key)
}

// ensureEpoch returns the current epoch, creating one if Redis has none.
func ensureEpoch(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	if err := rdb.SetNX(ctx, EpochKey, hex.EncodeToString(b[:]), 0).Err(); err != nil {
		return "", fmt.Errorf("create epoch: %w", err)
	}
	e, err := rdb.Get(ctx, EpochKey).Result()
	if err != nil {
		return "", fmt.Errorf("read epoch: %w", err)
	}
	return e, nil
}

// LoadLatest returns the latest tick of every symbol stored in Redis, for a
// simulator that continues where the previous one stopped.
func LoadLatest(ctx context.Context, rdb redis.UniversalClient, shards int) (map[string]feed.Tick, error) {
	out := make(map[string]feed.Tick)
	for i := range shards {
		m, err := rdb.HGetAll(ctx, LastKey(i)).Result()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", LastKey(i), err)
		}
		for sym, js := range m {
			if t, err := feed.DecodeTickStrict([]byte(js)); err == nil && t.Sym == sym {
				out[sym] = t
			}
		}
	}
	return out, nil
}
