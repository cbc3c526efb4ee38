//go:build linux

package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNginxConfOnStockDebian guards the sample proxy's install step:
// deploy/nginx.conf, included in the http {} block of Debian's own
// /etc/nginx/nginx.conf (what the symlink into conf.d does), passes
// `nginx -t` as shipped: plain HTTP, no certificate needed. (The TLS
// include is run by internal/nginxtest, under node/'s proxy tests.)
func TestNginxConfOnStockDebian(t *testing.T) {
	nginx := need(t, "nginx", "nginx-light")
	stock, err := os.ReadFile("/etc/nginx/nginx.conf")
	if err != nil {
		t.Skipf("no stock /etc/nginx/nginx.conf (apt-get install nginx-light): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("nginx -t with Debian's configuration opens its logs under /var/log/nginx: run as root")
	}
	const conf = "include /etc/nginx/conf.d/*.conf;"
	if !strings.Contains(string(stock), conf) {
		t.Skipf("/etc/nginx/nginx.conf has no %q: not Debian's", conf)
	}
	sample := filepath.Join(root(t), "deploy", "nginx.conf")
	main := filepath.Join(t.TempDir(), "nginx.conf")
	if err := os.WriteFile(main, []byte(strings.Replace(string(stock), conf, "include "+sample+";", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	// nginx -t creates the access log the sample names; leave none behind
	// that was not there.
	const accessLog = "/var/log/nginx/tickstream.access.log"
	if _, err := os.Stat(accessLog); os.IsNotExist(err) {
		t.Cleanup(func() { _ = os.Remove(accessLog) })
	}
	out, err := run(t, nginx, "-t", "-c", main)
	if err != nil || !strings.Contains(out, "test is successful") {
		t.Fatalf("nginx -t with deploy/nginx.conf in Debian's nginx.conf: %v\n%s", err, out)
	}
	t.Log(out)
}
