package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeBudget is the most bytes README.md may hold: the README is for the
// person about to use it; design, operations and benchmarks live in docs/.
const readmeBudget = 20000

// TestREADMEFitsBudget guards the README's size: README.md holds at most
// readmeBudget bytes.
func TestREADMEFitsBudget(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > readmeBudget {
		t.Errorf("README.md is %d bytes, over the budget of %d: move detail to docs/", len(b), readmeBudget)
	}
}

// historyMarkers are phrases that narrate how the work was done rather than
// what the product is. Git keeps the history; the docs describe the present.
var historyMarkers = []struct {
	name string
	re   *regexp.Regexp
}{
	{"work narrated by session", regexp.MustCompile(`(?i)\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|\d+(st|nd|rd|th)|this|that|previous|last|earlier|later|next|other|another|each|every)\s+sessions?('s?)?\b|\bsessions?\s+(before|ago)\b`)},
	{"a review", regexp.MustCompile(`(?i)\breview(s|ed|er|ers|ing)?\b`)},
	{"another engineer", regexp.MustCompile(`(?i)\b(another|other|three other|four other)\s+engineers?('s?)?\b`)},
	{"a file outside the repository", regexp.MustCompile(`\.\./shared|\bBASELINES\b|shared/DESIGN\.md`)},
	{"an issue by number", regexp.MustCompile(`(?i)\bissue\s+#?\d+`)},
}

// hexWord is a word of 7 to 40 hex digits: a commit hash when it mixes
// digits and letters.
var hexWord = regexp.MustCompile(`\b[0-9a-f]{7,40}\b`)

// fence matches a fenced code block: sample output there (cursors, ETags)
// may be hex.
var fence = regexp.MustCompile("(?ms)^```.*?^```")

// TestDocsHoldNoProcessHistory guards README.md and docs/*.md against
// process history: no work narrated by session or review, no other
// engineer, no file outside the repository, no issue number, and no commit
// hash in prose.
func TestDocsHoldNoProcessHistory(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"../README.md"}, files...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, m := range historyMarkers {
			for _, loc := range m.re.FindAllStringIndex(text, -1) {
				t.Errorf("%s:%d: %s: %q", f, line(text, loc[0]), m.name, text[loc[0]:loc[1]])
			}
		}
		prose := fence.ReplaceAllStringFunc(text, func(s string) string {
			return strings.Repeat("\n", strings.Count(s, "\n")) // keep line numbers
		})
		for _, loc := range hexWord.FindAllStringIndex(prose, -1) {
			w := prose[loc[0]:loc[1]]
			if strings.ContainsAny(w, "0123456789") && strings.ContainsAny(w, "abcdef") {
				t.Errorf("%s:%d: a commit hash in prose: %q", f, line(prose, loc[0]), w)
			}
		}
	}
}

// TestHistoryMarkersCatchHistory guards the markers themselves: each phrase
// below is caught, and the product's own words are not.
func TestHistoryMarkersCatchHistory(t *testing.T) {
	caught := func(s string) bool {
		for _, m := range historyMarkers {
			if m.re.MatchString(s) {
				return true
			}
		}
		for _, w := range hexWord.FindAllString(s, -1) {
			if strings.ContainsAny(w, "0123456789") && strings.ContainsAny(w, "abcdef") {
				return true
			}
		}
		return false
	}
	for _, s := range []string{
		"the sixth session's runs", "Fourth session (the simulator …)", "other sessions' builds",
		"after the review", "another engineer's benchmark", "see ../shared/DESIGN.md",
		"BASELINES: 5.7 µs", "runs 1–3 at 4df2b93", "issue 11's report",
	} {
		if !caught(s) {
			t.Errorf("not caught: %q", s)
		}
	}
	for _, s := range []string{
		"session volume, high and low", "the session open", "stored per session",
		"a preview", "engineers who deploy it", "decade", "1795733324070404",
	} {
		if caught(s) {
			t.Errorf("caught, but the product's own words: %q", s)
		}
	}
}

// line is the 1-based line of offset i in s.
func line(s string, i int) int { return strings.Count(s[:i], "\n") + 1 }
