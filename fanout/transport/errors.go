package transport

import (
	"errors"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
)

// ErrTokenExpired is the reason given to a stream whose token expired.
var ErrTokenExpired = errors.New("token expired")

// ErrTooManyStreams is the reason given to a client address over its
// stream limit (Config.MaxPerAddress, the --max-per-address flag).
var ErrTooManyStreams = errors.New("too many open streams from this address (max-per-address)")

// apiError is the JSON body of every 4xx and 5xx answer.
type apiError struct {
	Error string `json:"error"`
	Param string `json:"param,omitempty"`
}

// badRequest answers 400 naming the parameter and the problem.
func badRequest(c *fiber.Ctx, param string, err error) error {
	return c.Status(fiber.StatusBadRequest).JSON(apiError{Error: err.Error(), Param: param})
}

// subscribeError answers an error from Hub.Subscribe.
func subscribeError(c *fiber.Ctx, err error) error {
	switch {
	case isStreamRefusal(err) && c.Route().Path == "/stream":
		return refuseStream(c, err) // never a status EventSource treats as fatal
	case errors.Is(err, fanout.ErrTooManySubscribers), errors.Is(err, fanout.ErrDraining), errors.Is(err, fanout.ErrHubClosed):
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(1+int(time.Now().UnixNano()%3)))
		return c.Status(fiber.StatusServiceUnavailable).JSON(apiError{Error: err.Error()})
	case errors.Is(err, fanout.ErrUnknownSymbol), errors.Is(err, feed.ErrUnknownSymbol):
		return c.Status(fiber.StatusNotFound).JSON(apiError{Error: err.Error(), Param: "symbols"})
	case errors.Is(err, fanout.ErrBadInterval):
		return badRequest(c, "interval", err)
	default:
		return c.Status(fiber.StatusInternalServerError).JSON(apiError{Error: err.Error()})
	}
}
