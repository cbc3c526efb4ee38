package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tickstream/tickstream/fanout/transport"
)

// flags is a command's flag set: the standard library's flag package, with
// a fallback to TICKSTREAM_* environment variables for every flag not
// given on the command line, --double-dash spelling in help and errors,
// positional arguments refused unless the command takes them, and value
// types for intervals and fixed choices. Why not a flag library: see the
// README (Configuration).
type flags struct {
	*flag.FlagSet
	synopsis string
	stderr   io.Writer
}

func newFlags(name, synopsis string, stderr io.Writer) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse reports errors itself, on one line
	f := &flags{FlagSet: fs, synopsis: synopsis, stderr: stderr}
	fs.Usage = func() {} // printed by parseArgs for --help only
	return f
}

// usage prints the synopsis and every flag with its environment variable.
func (f *flags) usage() {
	w := f.stderr
	fmt.Fprintf(w, "Usage: tickstream %s\n\nFlags (each also read from the environment variable shown):\n", f.synopsis)
	f.VisitAll(func(fl *flag.Flag) {
		fmt.Fprintf(w, "  --%s (%s)\n    \t%s", fl.Name, envName(fl.Name), fl.Usage)
		if fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "0s" && fl.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", fl.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func envName(flagName string) string {
	return "TICKSTREAM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (f *flags) str(name, def, usage string) *string { return f.String(name, def, usage) }

func (f *flags) integer(name string, def int, usage string) *int { return f.Int(name, def, usage) }

func (f *flags) float(name string, def float64, usage string) *float64 {
	return f.Float64(name, def, usage)
}

func (f *flags) duration(name string, def time.Duration, usage string) *time.Duration {
	v := durationValue(def)
	f.Var(&v, name, usage)
	return (*time.Duration)(&v)
}

// durationValue is a Go duration flag whose error says what it wants.
type durationValue time.Duration

func (v *durationValue) String() string { return time.Duration(*v).String() }

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration with its unit, such as 500ms, 15s or 1m")
	}
	*v = durationValue(d)
	return nil
}

func (f *flags) boolean(name string, def bool, usage string) *bool { return f.Bool(name, def, usage) }

// interval defines a conflation interval flag. It reads what the HTTP API
// reads: a Go duration (250ms, 1s) or a bare number of milliseconds (250).
func (f *flags) interval(name string, def time.Duration, usage string) *time.Duration {
	v := intervalValue(def)
	f.Var(&v, name, usage)
	return (*time.Duration)(&v)
}

type intervalValue time.Duration

func (v *intervalValue) String() string { return time.Duration(*v).String() }

func (v *intervalValue) Set(s string) error {
	d, err := transport.ParseInterval(s)
	if err != nil {
		return errors.New("want a duration such as 250ms or 1s, or milliseconds such as 250")
	}
	*v = intervalValue(d)
	return nil
}

// address defines a listen address flag: host:port (the host may be empty
// or an IPv6 address in brackets) with a port from 0 to 65535. With
// optional, an empty value (the feature off) is allowed too.
func (f *flags) address(name, def string, optional bool, usage string) *string {
	v := &addressValue{s: def, optional: optional}
	f.Var(v, name, usage)
	return &v.s
}

type addressValue struct {
	s        string
	optional bool
}

func (v *addressValue) String() string { return v.s }

func (v *addressValue) Set(s string) error {
	if s == "" && v.optional {
		v.s = s
		return nil
	}
	if err := checkHostPort(s); err != nil {
		return err
	}
	v.s = s
	return nil
}

// checkHostPort refuses what is not host:port with a numeric port from 0
// to 65535, before anything tries to listen on it.
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port, such as :8080 or 127.0.0.1:8080 (port 0 picks a free one)")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("want a port from 0 to 65535, not %q", port)
	}
	return nil
}

// choice defines a flag whose value is one of allowed.
func (f *flags) choice(name, def string, allowed []string, usage string) *string {
	v := &choiceValue{s: def, allowed: allowed}
	f.Var(v, name, usage+" ("+strings.Join(allowed, ", ")+")")
	return &v.s
}

type choiceValue struct {
	s       string
	allowed []string
}

func (v *choiceValue) String() string { return v.s }

func (v *choiceValue) Set(s string) error {
	if !slices.Contains(v.allowed, s) {
		return fmt.Errorf("want %s", strings.Join(v.allowed, " or "))
	}
	v.s = s
	return nil
}

// isSet reports whether the flag was given on the command line or in the
// environment.
func (f *flags) isSet(name string) bool {
	set := false
	f.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	_, env := lookupEnv(name)
	return set || env
}

// lookupEnv returns the flag's environment value; an empty variable counts
// as unset.
func lookupEnv(name string) (string, bool) {
	v := os.Getenv(envName(name))
	return v, v != ""
}

// dashRE finds the standard library's one-dash spelling of a flag in its
// error messages.
var dashRE = regexp.MustCompile(`(defined: |argument: |for flag |syntax: )-+`)

// parse parses args, which must hold flags only; see parseArgs.
func (f *flags) parse(args []string) error {
	_, err := f.parseArgs(args, 0)
	return err
}

// parseArgs parses args, flags and up to maxPos positional arguments in
// any order, then fills the flags not given from the environment. It
// returns the positional arguments. A bad flag, value, environment value
// or argument is a usageError of one line; --help prints the usage and
// returns flag.ErrHelp.
func (f *flags) parseArgs(args []string, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.usage()
				return nil, err
			}
			return nil, f.usageErr(dashRE.ReplaceAllString(err.Error(), "$1--"))
		}
		args = f.Args()
		if len(args) == 0 {
			break
		}
		if len(pos) == maxPos {
			if maxPos == 0 {
				return nil, f.usageErr(fmt.Sprintf("unexpected argument %q (this command takes flags only)", args[0]))
			}
			return nil, f.usageErr(fmt.Sprintf("unexpected argument %q", args[0]))
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var err error
	f.VisitAll(func(fl *flag.Flag) {
		v, ok := lookupEnv(fl.Name)
		if given[fl.Name] || !ok || err != nil {
			return
		}
		if e := fl.Value.Set(v); e != nil {
			err = f.usageErr(fmt.Sprintf("%s=%q: %v", envName(fl.Name), v, e))
		}
	})
	return pos, err
}

// usageErr is a one-line usageError that names the command.
func (f *flags) usageErr(msg string) error {
	return usageError{fmt.Errorf("%s: %s (see tickstream %s --help)", f.Name(), msg, f.Name())}
}

// exclusive refuses two flags given together.
func (f *flags) exclusive(a, b string) error {
	if f.isSet(a) && f.isSet(b) {
		return f.usageErr(fmt.Sprintf("--%s and --%s exclude each other: give one", a, b))
	}
	return nil
}
