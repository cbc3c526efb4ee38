package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"tickstream/fanout/transport"
)

// runToken mints a subscription token for nodes run with --auth-secret.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("token", "token --auth-secret S --symbols A,B|* [--ttl 1h]", stderr)
	secret := f.str("auth-secret", "", "the nodes' HMAC secret (better from TICKSTREAM_AUTH_SECRET)")
	symbols := f.str("symbols", "*", "symbols the token allows, comma-separated, * for all")
	ttl := f.duration("ttl", time.Hour, "how long the token is valid")
	if err := f.parse(args); err != nil {
		return err
	}
	switch {
	case *secret == "":
		return usageError{errors.New("token: --auth-secret (or TICKSTREAM_AUTH_SECRET) is required")}
	case *ttl <= 0:
		return usageError{fmt.Errorf("token: --ttl %v must be positive", *ttl)}
	}
	tok, err := transport.MintToken([]byte(*secret), splitList(*symbols), *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
