package transport

// MaskedFrame is clientFrame for the external tests (package transport_test).
var MaskedFrame = clientFrame

// MetricsGathers returns how many times s gathered its metrics.
func MetricsGathers(s *Server) uint64 { return s.expo.gathers.Load() }

// RoutePaths returns the paths of s's GET routes.
func RoutePaths(s *Server) []string {
	var out []string
	for _, r := range s.app.GetRoutes(true) {
		if r.Method == "GET" {
			out = append(out, r.Path)
		}
	}
	return out
}
