package node

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// buildInfo returns tickstream_build_info{version,revision,goversion} = 1:
// version as given (default the main module's version), the VCS revision
// the binary was built from ("+dirty" with uncommitted changes; empty
// when unknown) and the Go version.
func buildInfo(version string) prometheus.Collector {
	revision := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" {
			version = bi.Main.Version
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && revision != "" {
			revision += "+dirty"
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tickstream_build_info",
		Help: "Always 1; its labels say which build the node runs: version (the release, or the module version), revision (VCS) and goversion.",
		ConstLabels: prometheus.Labels{
			"version": version, "revision": revision, "goversion": runtime.Version(),
		},
	}, func() float64 { return 1 })
}
