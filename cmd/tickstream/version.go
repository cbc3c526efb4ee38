package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// buildVersion is the release version stamped by scripts/release.sh
// (-ldflags "-X main.buildVersion=v1.2.3"); empty in other builds.
var buildVersion string

// releaseVersion is the version tickstream_build_info reports: the one
// stamped at build time, else the module version (see version).
func releaseVersion() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}

// version describes the binary from its build information: the release
// version stamped at build time, else the module version (a tag with go
// install, "(devel)" from a checkout), the VCS
// revision and time it was built from (with "+dirty" for uncommitted
// changes), and the Go version and platform.
func version() string {
	v, rev, at, dirty := "(unknown)", "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if buildVersion != "" {
		v = buildVersion
	}
	out := "tickstream " + v
	if rev != "" {
		if dirty {
			rev += "+dirty"
		}
		out += " revision " + rev
		if at != "" {
			out += " (" + at + ")"
		}
	}
	return fmt.Sprintf("%s %s %s/%s", out, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
