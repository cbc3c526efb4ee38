package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tickstream/tickstream/fanout/transport"
)

// runToken mints a subscription token for nodes run with --auth-secret.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("token", "token --auth-secret S --symbols A,B|* [--ttl 1h] [--auth-audience A] [--auth-issuer I]", stderr)
	secret := f.str("auth-secret", "", "the nodes' HMAC secret (better from TICKSTREAM_AUTH_SECRET)")
	symbols := f.str("symbols", "*", "symbols the token allows, comma-separated, * for all")
	ttl := f.duration("ttl", time.Hour, "how long the token is valid")
	aud := f.str("auth-audience", "", "the token's aud claim: the audience the nodes check (--auth-audience of serve)")
	iss := f.str("auth-issuer", "", "the token's iss claim: the issuer the nodes check (--auth-issuer of serve)")
	if err := f.parse(args); err != nil {
		return err
	}
	switch {
	case *secret == "":
		return usageError{errors.New("token: --auth-secret (or TICKSTREAM_AUTH_SECRET) is required")}
	case *ttl <= 0:
		return usageError{fmt.Errorf("token: --ttl %v must be positive", *ttl)}
	}
	var opts []transport.MintOption
	if *aud != "" {
		opts = append(opts, transport.WithAudience(*aud))
	}
	if *iss != "" {
		opts = append(opts, transport.WithIssuer(*iss))
	}
	tok, err := transport.MintToken([]byte(*secret), splitList(*symbols), *ttl, opts...)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
