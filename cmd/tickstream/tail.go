package main

import (
	"context"
	"errors"
	"io"
)

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("tail: not built yet")
}

func runLoadgen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("loadgen: not built yet")
}
