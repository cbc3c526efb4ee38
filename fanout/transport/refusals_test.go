package transport

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestRefusalReasonsListed guards the one list of refusal reasons
// (refusals.go): every reason the package's code counts, as a literal or a
// refused* constant, is in refusalReasons, so it is exported at zero from
// the start.
func TestRefusalReasonsListed(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	literal := regexp.MustCompile(`(?:refuse|shed|onShed|refused\.WithLabelValues)\(\s*(?:c,\s*)?"([a-z_]+)"`)
	constant := regexp.MustCompile(`\b(refused[A-Z][A-Za-z]*)\b`)
	consts := map[string]string{}
	src, err := os.ReadFile("refusals.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\t(refused[A-Z]\w*)\s*=\s*"([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		consts[m[1]] = m[2]
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
			if !slices.Contains(refusalReasons, m[1]) {
				t.Errorf("%s counts refusal reason %q, missing from refusalReasons", f, m[1])
			}
		}
		for _, m := range constant.FindAllStringSubmatch(string(b), -1) {
			if m[1] == "refusedReasons" {
				continue
			}
			if v, ok := consts[m[1]]; !ok || !slices.Contains(refusalReasons, v) {
				t.Errorf("%s uses %s, not a listed reason", f, m[1])
			}
		}
	}
	if len(consts) != len(refusalReasons) {
		t.Errorf("%d refused* constants, %d reasons listed", len(consts), len(refusalReasons))
	}
}
