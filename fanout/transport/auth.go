package transport

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
)

// Claims are what a subscription token carries: the standard expiry and
// the symbols it allows ("*" for all).
type Claims struct {
	Symbols []string `json:"symbols"`
	jwt.RegisteredClaims
}

// MintToken signs a token (HS256) allowing symbols until now+ttl.
func MintToken(secret []byte, symbols []string, ttl time.Duration) (string, error) {
	c := Claims{Symbols: symbols, RegisteredClaims: jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
		IssuedAt:  jwt.NewNumericDate(time.Now()),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// grant is what an authorized request may do.
type grant struct {
	symbols []string  // nil: anything (no auth)
	expires time.Time // zero: never
}

// check reports an error for symbols the grant does not cover.
func (g grant) check(symbols []string) error {
	if g.symbols == nil {
		return nil
	}
	return allowed(g.symbols, symbols)
}

// authorize checks the request's token, when the server has a secret,
// against the symbols asked for. It answers 401 or 403 itself and returns
// false.
func (s *Server) authorize(c *fiber.Ctx, symbols []string) (grant, bool) {
	if len(s.cfg.AuthSecret) == 0 {
		return grant{}, true
	}
	raw := c.Query("access_token")
	if h := c.Get(fiber.HeaderAuthorization); strings.HasPrefix(h, "Bearer ") {
		raw = strings.TrimPrefix(h, "Bearer ")
	}
	if raw == "" {
		_ = c.Status(fiber.StatusUnauthorized).JSON(apiError{Error: "a token is required: Authorization: Bearer <token> or ?access_token=<token>"})
		return grant{}, false
	}
	var claims Claims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return s.cfg.AuthSecret, nil },
		jwt.WithValidMethods([]string{"HS256", "HS384", "HS512"}), jwt.WithExpirationRequired())
	if err != nil {
		reason := "invalid token"
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			reason = "token expired"
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			reason = "token signature invalid"
		}
		_ = c.Status(fiber.StatusUnauthorized).JSON(apiError{Error: reason})
		return grant{}, false
	}
	g := grant{symbols: append([]string{}, claims.Symbols...), expires: claims.ExpiresAt.Time}
	if err := g.check(symbols); err != nil {
		_ = c.Status(fiber.StatusForbidden).JSON(apiError{Error: err.Error(), Param: "symbols"})
		return grant{}, false
	}
	return g, true
}

// allowed reports an error naming the first symbol the grant does not
// cover.
func allowed(grant, asked []string) error {
	ok := make(map[string]bool, len(grant))
	for _, g := range grant {
		if g == "*" {
			return nil
		}
		ok[strings.ToUpper(g)] = true
	}
	for _, a := range asked {
		if !ok[a] {
			return fmt.Errorf("token does not allow %s", a)
		}
	}
	return nil
}
