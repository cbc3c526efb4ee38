package transport

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestWireVocabularyInOneFile keeps the package's shape: SSE field
// prefixes are written only by the framer (sseframe.go), WebSocket close
// codes are chosen only in the control table (control.go).
// websocket.CloseMessage, the close frame's opcode, is not a close code.
func TestWireVocabularyInOneFile(t *testing.T) {
	field := regexp.MustCompile("[\"`](retry:|event: |id: |data: )")
	code := regexp.MustCompile(`websocket\.Close([A-Z]\w*)`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			if f != "sseframe.go" && field.MatchString(line) {
				t.Errorf("%s:%d: an SSE field outside sseframe.go: %s", f, i+1, strings.TrimSpace(line))
			}
			if f == "control.go" {
				continue
			}
			for _, m := range code.FindAllStringSubmatch(line, -1) {
				if m[1] != "Message" {
					t.Errorf("%s:%d: a close code outside control.go: %s", f, i+1, strings.TrimSpace(line))
				}
			}
		}
	}
}
