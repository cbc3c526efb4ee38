package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// flags is a flag set whose defaults come from TICKSTREAM_* environment
// variables when they are set.
type flags struct {
	*flag.FlagSet
	envErr error
}

func newFlags(name, synopsis string, stderr io.Writer) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &flags{FlagSet: fs}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tickstream %s\n\nFlags (each also read from the environment variable shown):\n", synopsis)
		fs.VisitAll(func(fl *flag.Flag) {
			fmt.Fprintf(stderr, "  --%s (%s)\n    \t%s", fl.Name, envName(fl.Name), fl.Usage)
			if fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "false" {
				fmt.Fprintf(stderr, " (default %s)", fl.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	return f
}

func envName(flagName string) string {
	return "TICKSTREAM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// env returns the flag's environment value; an empty variable counts as
// unset.
func (f *flags) env(name string) (string, bool) {
	v := os.Getenv(envName(name))
	return v, v != ""
}

func (f *flags) fail(name, v string, err error) {
	if f.envErr == nil {
		f.envErr = fmt.Errorf("%s=%q: %v", envName(name), v, err)
	}
}

func (f *flags) str(name, def, usage string) *string {
	if v, ok := f.env(name); ok {
		def = v
	}
	return f.String(name, def, usage)
}

func (f *flags) integer(name string, def int, usage string) *int {
	if v, ok := f.env(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.fail(name, v, err)
		}
		def = n
	}
	return f.Int(name, def, usage)
}

func (f *flags) float(name string, def float64, usage string) *float64 {
	if v, ok := f.env(name); ok {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			f.fail(name, v, err)
		}
		def = n
	}
	return f.Float64(name, def, usage)
}

func (f *flags) duration(name string, def time.Duration, usage string) *time.Duration {
	if v, ok := f.env(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.fail(name, v, err)
		}
		def = d
	}
	return f.Duration(name, def, usage)
}

func (f *flags) boolean(name string, def bool, usage string) *bool {
	if v, ok := f.env(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.fail(name, v, err)
		}
		def = b
	}
	return f.Bool(name, def, usage)
}

// parse parses args; a bad flag or environment value is a usageError.
// Positional arguments are allowed before the flags (tail URL --symbols).
func (f *flags) parse(args []string) error {
	if f.envErr != nil {
		return usageError{f.envErr}
	}
	if err := f.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	return nil
}
