package transport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/bars"
)

// Bars answers chart requests from memory. *bars.Builder satisfies it; it
// must be safe for concurrent use.
type Bars interface {
	// AppendBars appends the JSON array of sym's newest limit bars of tf.
	// and the seq of the newest tick they include.
	AppendBars(dst []byte, sym string, tf bars.Timeframe, limit int) ([]byte, uint64, error)
	// AppendTrades appends the JSON array of sym's newest limit ticks.
	AppendTrades(dst []byte, sym string, limit int) ([]byte, error)
	// Keep returns how many bars of tf a symbol keeps.
	Keep(tf bars.Timeframe) int
	// MaxTrades returns how many ticks a symbol keeps.
	MaxTrades() int
}

var _ Bars = (*bars.Builder)(nil)

// defaultBarLimit is how many bars /api/bars answers without a limit.
const defaultBarLimit = 300

// handleBars answers GET /api/bars?symbol=S&tf=1s|5s|1m|5m&limit=N:
// {"symbol":"AAPL","tf":"5s","bars":[{"t":…,"o":"…","h":"…","l":"…","c":"…","v":…},…],"seq":N}
// oldest first, the forming bar last; t in Unix seconds; seq is the newest
// tick the bars include (a chart continuing them live skips ticks up to it).
func (s *Server) handleBars(c *fiber.Ctx) error {
	if s.cfg.Bars == nil {
		return c.Status(fiber.StatusNotFound).JSON(apiError{Error: "this node keeps no bars"})
	}
	sym, err := s.barSymbol(c)
	if err != nil {
		return badRequest(c, "symbol", fmt.Errorf("symbol: %w", err))
	}
	if _, ok := s.authorize(c, []string{sym}); !ok {
		return nil
	}
	tf, err := bars.ParseTimeframe(c.Query("tf", "5s"))
	if err != nil {
		return badRequest(c, "tf", fmt.Errorf("tf: %w", err))
	}
	limit, err := queryLimit(c, defaultBarLimit, s.cfg.Bars.Keep(tf))
	if err != nil {
		return badRequest(c, "limit", fmt.Errorf("limit: %w", err))
	}
	buf := make([]byte, 0, 64+90*limit)
	buf = append(buf, `{"symbol":`...)
	buf = strconv.AppendQuote(buf, sym)
	buf = append(buf, `,"tf":"`+tf.String()+`","bars":`...)
	var seq uint64
	s.cfg.Hub.Look() // a chart keeps the feed read at a consumer's pace
	if buf, seq, err = s.cfg.Bars.AppendBars(buf, sym, tf, limit); err != nil {
		return badRequest(c, "symbol", err)
	}
	buf = strconv.AppendUint(append(buf, `,"seq":`...), seq, 10)
	return sendJSON(c, append(buf, '}'))
}

// handleTrades answers GET /api/trades?symbol=S&limit=N, the time & sales
// tape: {"symbol":"AAPL","trades":[{"ts":…,"seq":…,"price":"…","size":…,"side":"buy"},…]}
// oldest first; side is "buy" at the ask, "sell" at the bid.
func (s *Server) handleTrades(c *fiber.Ctx) error {
	if s.cfg.Bars == nil {
		return c.Status(fiber.StatusNotFound).JSON(apiError{Error: "this node keeps no trades"})
	}
	sym, err := s.barSymbol(c)
	if err != nil {
		return badRequest(c, "symbol", fmt.Errorf("symbol: %w", err))
	}
	if _, ok := s.authorize(c, []string{sym}); !ok {
		return nil
	}
	limit, err := queryLimit(c, s.cfg.Bars.MaxTrades(), s.cfg.Bars.MaxTrades())
	if err != nil {
		return badRequest(c, "limit", fmt.Errorf("limit: %w", err))
	}
	buf := append(make([]byte, 0, 64+80*limit), `{"symbol":`...)
	buf = strconv.AppendQuote(buf, sym)
	buf = append(buf, `,"trades":`...)
	s.cfg.Hub.Look()
	if buf, err = s.cfg.Bars.AppendTrades(buf, sym, limit); err != nil {
		return badRequest(c, "symbol", err)
	}
	return sendJSON(c, append(buf, '}'))
}

// barSymbol reads the symbol parameter: one known symbol.
func (s *Server) barSymbol(c *fiber.Ctx) (string, error) {
	sym := strings.ToUpper(strings.TrimSpace(c.Query("symbol")))
	if sym == "" {
		return "", errors.New("symbol is required")
	}
	if err := feed.ValidateSymbolName(sym); err != nil {
		return "", err
	}
	if _, ok := s.cfg.Universe.Lookup(sym); !ok {
		return "", fmt.Errorf("%w: %s", feed.ErrUnknownSymbol, sym)
	}
	return sym, nil
}

// queryLimit reads the limit parameter: an integer from 1 to max.
func queryLimit(c *fiber.Ctx, def, max int) (int, error) {
	q := c.Query("limit")
	if q == "" {
		return min(def, max), nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("%.20q must be an integer from 1 to %d", q, max)
	}
	return n, nil
}

// sendJSON answers 200 with a JSON body that must not be cached.
func sendJSON(c *fiber.Ctx, body []byte) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Send(body)
}
