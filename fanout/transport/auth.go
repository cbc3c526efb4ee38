package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tickstream/tickstream/feed"
)

// Claims are what a subscription token carries: the standard expiry (and,
// when the node checks them, audience and issuer) and the symbols it
// allows ("*" for all).
type Claims struct {
	Symbols []string `json:"symbols"`
	jwt.RegisteredClaims
}

// MintOption sets an optional claim of a token made by MintToken.
type MintOption func(*Claims)

// WithAudience sets the token's aud claim: the nodes it is meant for
// (Config.AuthAudience).
func WithAudience(aud ...string) MintOption {
	return func(c *Claims) { c.Audience = append(jwt.ClaimStrings{}, aud...) }
}

// WithIssuer sets the token's iss claim: who made it (Config.AuthIssuer).
func WithIssuer(iss string) MintOption {
	return func(c *Claims) { c.Issuer = iss }
}

// MintToken signs a token (HS256) allowing symbols until now+ttl.
func MintToken(secret []byte, symbols []string, ttl time.Duration, opts ...MintOption) (string, error) {
	c := Claims{Symbols: symbols, RegisteredClaims: jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
		IssuedAt:  jwt.NewNumericDate(time.Now()),
	}}
	for _, o := range opts {
		o(&c)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// publicRoutes are the routes a node serves without a token when it has an
// AuthSecret: liveness and readiness (for load balancers and
// orchestrators) and the symbol universe (names and tick sizes, no
// prices). The dashboard's static files (the fallback handler, no route of
// its own) are public too: the page carries no market data and passes its
// own ?access_token= on. Every other route, those serving ticks, bars,
// trades, the cluster view and the metrics on the client port, answers 401
// without a valid token. A route is added to this list deliberately, never
// by forgetting: Server.get protects every path not on it.
var publicRoutes = []string{"/healthz", "/readyz", "/api/symbols"}

// PublicRoutes returns the routes served without a token when the node has
// an AuthSecret (see publicRoutes); the dashboard's static files are also
// public.
func PublicRoutes() []string { return slices.Clone(publicRoutes) }

// get registers a GET (and HEAD) route. Unless path is one of
// publicRoutes, the route needs a valid token when the node has an
// AuthSecret: requireToken runs first.
func (s *Server) get(path string, handlers ...fiber.Handler) {
	if !slices.Contains(publicRoutes, path) {
		handlers = append([]fiber.Handler{s.requireToken}, handlers...)
	}
	s.app.Get(path, handlers...)
}

// grantKey is the request local that holds the grant of a checked token.
const grantKey = "grant"

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

// requireToken lets a request through only with a valid token when the
// node has an AuthSecret, and keeps the token's grant for the handler
// (authorize). It answers 401 itself, with the reason.
func (s *Server) requireToken(c *fiber.Ctx) error {
	if len(s.cfg.AuthSecret) == 0 {
		return c.Next()
	}
	g, err := s.verify(c)
	if err != nil {
		return c.Status(fiber.StatusUnauthorized).JSON(apiError{Error: err.Error()})
	}
	c.Locals(grantKey, g)
	return c.Next()
}

// authorize checks the request's token, when the server has a secret,
// against the symbols asked for. It answers 401 or 403 itself and returns
// false.
func (s *Server) authorize(c *fiber.Ctx, symbols []string) (grant, bool) {
	g, r := s.checkToken(c, symbols)
	if r != nil {
		_ = r.renderHTTP(c)
		return grant{}, false
	}
	return g, true
}

// checkToken checks the request's token, when the server has a secret,
// against the symbols asked for: the admission path's step (admit.go). It
// refuses with 401 or 403.
func (s *Server) checkToken(c *fiber.Ctx, symbols []string) (grant, *refusal) {
	if len(s.cfg.AuthSecret) == 0 {
		return grant{}, nil
	}
	g, ok := c.Locals(grantKey).(grant)
	if !ok {
		var err error
		if g, err = s.verify(c); err != nil {
			return grant{}, &refusal{status: fiber.StatusUnauthorized, err: err}
		}
		c.Locals(grantKey, g)
	}
	if err := g.check(symbols); err != nil {
		return grant{}, &refusal{status: fiber.StatusForbidden, err: err, param: "symbols"}
	}
	return g, nil
}

// verify reads the request's token (Authorization: Bearer, else the
// access_token parameter) and returns its grant, or an error whose text is
// the 401's reason.
func (s *Server) verify(c *fiber.Ctx) (grant, error) {
	raw := c.Query("access_token")
	if h := c.Get(fiber.HeaderAuthorization); strings.HasPrefix(h, "Bearer ") {
		raw = strings.TrimPrefix(h, "Bearer ")
	}
	if raw == "" {
		return grant{}, errors.New("a token is required: Authorization: Bearer <token> or ?access_token=<token>")
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256", "HS384", "HS512"}), jwt.WithExpirationRequired()}
	if s.cfg.AuthAudience != "" {
		opts = append(opts, jwt.WithAudience(s.cfg.AuthAudience))
	}
	if s.cfg.AuthIssuer != "" {
		opts = append(opts, jwt.WithIssuer(s.cfg.AuthIssuer))
	}
	var claims Claims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return s.cfg.AuthSecret, nil }, opts...)
	if err != nil {
		return grant{}, s.tokenError(err)
	}
	// The signature holds: now the payload's own shape.
	if err := strictClaims(raw); err != nil {
		return grant{}, fmt.Errorf("invalid token: %w", err)
	}
	syms := make([]string, 0, len(claims.Symbols))
	for _, sym := range claims.Symbols {
		if sym != "*" {
			sym = strings.ToUpper(sym)
			if err := feed.ValidateSymbolName(sym); err != nil {
				return grant{}, fmt.Errorf("invalid token: symbols: %w", err)
			}
		}
		syms = append(syms, sym)
	}
	return grant{symbols: syms, expires: claims.ExpiresAt.Time}, nil
}

// tokenError turns a parse error into the 401's reason.
func (s *Server) tokenError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrTokenExpired
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return errors.New("token signature invalid")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return errors.New("invalid token: not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Errorf("invalid token: audience (aud) does not include %q", s.cfg.AuthAudience)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fmt.Errorf("invalid token: issuer (iss) is not %q", s.cfg.AuthIssuer)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		switch {
		case strings.Contains(err.Error(), "aud"):
			return fmt.Errorf("invalid token: audience (aud) is required: %q", s.cfg.AuthAudience)
		case strings.Contains(err.Error(), "iss"):
			return fmt.Errorf("invalid token: issuer (iss) is required: %q", s.cfg.AuthIssuer)
		default:
			return errors.New("invalid token: expiry (exp) is required")
		}
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errors.New("invalid token: malformed")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return errors.New("invalid token: unverifiable (HS256, HS384 or HS512 only)")
	default:
		return errors.New("invalid token")
	}
}

// knownClaims are the claims a node reads. encoding/json matches object
// keys to them case-insensitively (Unicode folding) and keeps the last of
// duplicates, so strictClaims refuses any other spelling and any repeat.
var knownClaims = []string{"symbols", "exp", "nbf", "iat", "aud", "iss", "sub", "jti"}

// strictClaims refuses a payload whose top-level object repeats a key or
// spells a known claim in another case ("SYMBOLS", "Exp"): a decoder that
// matches keys case-insensitively and keeps the last would honour a claim
// the token's issuer may never have meant. raw's signature is already
// checked.
func strictClaims(raw string) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return errors.New("malformed")
	}
	payload, err := jwt.NewParser().DecodeSegment(parts[1])
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("payload is not a JSON object")
	}
	seen := make(map[string]bool)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("payload: %w", err)
		}
		key, _ := t.(string)
		if seen[key] {
			return fmt.Errorf("duplicate claim %q", key)
		}
		seen[key] = true
		for _, k := range knownClaims {
			if key != k && strings.EqualFold(key, k) {
				return fmt.Errorf("claim %q must be spelled %q", key, k)
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return fmt.Errorf("payload: %w", err)
		}
	}
	return nil
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
