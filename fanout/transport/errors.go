package transport

import (
	"errors"

	"github.com/gofiber/fiber/v2"
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
