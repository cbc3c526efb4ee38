//go:build linux

package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tickstream/tickstream/internal/redistest"
)

// TestImageRunsStampedBinary guards the container image: scripts/image.sh
// builds it from the release binary without pulling anything, and the
// image's own root holds a static tickstream that prints the stamped
// version, publishes simulated ticks and serves (/readyz 200) on a real Redis as the image's
// non-root user, with the CA bundle rediss:// needs. The image is run
// with chroot on its mounted root, as root: podman here builds images but
// cannot start containers.
func TestImageRunsStampedBinary(t *testing.T) {
	podman := need(t, "podman", "podman")
	chroot := need(t, "chroot", "coreutils")
	if os.Geteuid() != 0 {
		t.Skip("podman image mount and chroot need root")
	}
	version := fmt.Sprintf("v0.0.0-imagetest.%d", os.Getpid())
	image := "localhost/tickstream-test"
	ref := image + ":" + version
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(root(t), "dist", version)) })
	cmd := []string{"env", "IMAGE=" + image, "LATEST=0", "./scripts/image.sh", version}
	out, err := run(t, cmd[0], cmd[1:]...)
	t.Cleanup(func() {
		if out, err := run(t, podman, "rmi", "--force", ref); err != nil {
			t.Errorf("podman rmi %s: %v\n%s", ref, err, out)
		}
	})
	if err != nil {
		t.Fatalf("scripts/image.sh: %v\n%s", err, out)
	}
	if last := out[strings.LastIndex(out, "\n")+1:]; last != ref {
		t.Errorf("scripts/image.sh printed %q last, want the image %q", last, ref)
	}

	cfg, err := run(t, podman, "image", "inspect", "--format",
		"{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.ExposedPorts}}", ref)
	if err != nil {
		t.Fatalf("podman image inspect: %v\n%s", err, cfg)
	}
	if want := `10001:10001 ["/usr/local/bin/tickstream"] {"8080/tcp":{}}`; cfg != want {
		t.Errorf("image config = %s, want %s", cfg, want)
	}

	dir, err := run(t, podman, "image", "mount", ref)
	if err != nil {
		t.Fatalf("podman image mount: %v\n%s", err, dir)
	}
	t.Cleanup(func() {
		if out, err := run(t, podman, "image", "unmount", ref); err != nil {
			t.Errorf("podman image unmount: %v\n%s", err, out)
		}
	})
	var files []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	want := "/etc/group /etc/passwd /etc/ssl/certs/ca-certificates.crt /usr/local/bin/tickstream"
	if got := strings.Join(files, " "); got != want {
		t.Errorf("image files: %s\nwant only: %s (no shell)", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/passwd")); err != nil || !strings.HasPrefix(string(b), "tickstream:x:10001:10001:") {
		t.Errorf("/etc/passwd = %q, %v; want the tickstream user, uid 10001", b, err)
	}

	user := "--userspec=10001:10001"
	got, err := run(t, chroot, user, dir, "/usr/local/bin/tickstream", "version")
	if err != nil || !strings.HasPrefix(got, "tickstream "+version+" ") {
		t.Fatalf("tickstream version in the image = %q, %v; want it to start with tickstream %s", got, err, version)
	}

	// A node serves once a simulator has stored the universe in Redis.
	rs := redistest.Start(t, redistest.WithTCP())
	start(t, nil, chroot, user, dir, "/usr/local/bin/tickstream", "simulate", "--redis", rs.TCPURL(), "--rate", "100")
	node := start(t, nil, chroot, user, dir, "/usr/local/bin/tickstream",
		"serve", "--redis", rs.TCPURL(), "--addr", "127.0.0.1:0", "--node", "image-test")
	waitReady(t, node, "http://"+node.addr(t))
}
