// Package nginxtest runs a private nginx (Debian's nginx-light, installed by
// ./scripts/test.sh) in front of test nodes, with the repository's sample
// configuration.
package nginxtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Start runs nginx on a free loopback port with deploy/nginx.conf, its
// upstream servers replaced by nodes, and timeouts (directive → value)
// overridden, e.g. {"proxy_read_timeout 60s": "proxy_read_timeout 2s"}. It
// returns the base URL; nginx stops when the test ends.
func Start(tb testing.TB, nodes []string, override map[string]string) string {
	tb.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/nginx"); e == nil {
			bin = "/usr/sbin/nginx"
		} else {
			tb.Fatal("nginx is not installed: run ./scripts/test.sh (it installs nginx-light)")
		}
	}
	_, file, _, _ := runtime.Caller(0)
	sample, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "deploy", "nginx.conf"))
	if err != nil {
		tb.Fatal(err)
	}
	conf := string(sample)
	var servers []string
	for _, n := range nodes {
		servers = append(servers, "    server "+n+" max_fails=1 fail_timeout=2s;")
	}
	conf = regexp.MustCompile(`(?m)^    server 127\.0\.0\.1:808[12].*\n`).ReplaceAllString(conf, "")
	conf = strings.Replace(conf, "upstream tickstream {\n", "upstream tickstream {\n"+strings.Join(servers, "\n")+"\n", 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf = strings.Replace(conf, "listen 8080;", "listen "+addr+";", 1)
	for k, v := range override {
		conf = strings.ReplaceAll(conf, k, v)
	}
	dir := tb.TempDir()
	full := fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
worker_processes 1;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, conf)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(full), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = groupAttr()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start nginx: %v", err)
	}
	tb.Cleanup(func() {
		if err := stop(cmd); err != nil {
			tb.Error(err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			tb.Fatalf("nginx did not start: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
