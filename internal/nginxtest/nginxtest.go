// Package nginxtest runs a private nginx (Debian's nginx-light, installed by
// ./scripts/test.sh) in front of test nodes, with the repository's sample
// configuration.
package nginxtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/tooltest"
)

// Proxy is a running nginx with the sample configuration.
type Proxy struct {
	// URL is the plain server's base URL, http://127.0.0.1:port.
	URL string
	// TLSURL is the TLS server's base URL (HTTP/2 offered by ALPN),
	// https://127.0.0.1:port, with a self-signed certificate for 127.0.0.1
	// and localhost.
	TLSURL string
	// Dir holds the configuration, the certificate and nginx's error log.
	Dir string
	// AccessLog is the file the sample configuration's access_log writes
	// (its /var/log/nginx path moved into Dir).
	AccessLog string
}

// nginxSbin is where Debian installs nginx, outside a user's PATH.
const nginxSbin = "/usr/sbin/nginx"

// Start runs nginx on free loopback ports with deploy/nginx.conf, its
// upstream servers replaced by nodes, and directives (old text → new)
// overridden, e.g. {"proxy_read_timeout 60s": "proxy_read_timeout 2s"}. It
// returns the plain server's base URL; nginx stops when the test ends.
func Start(tb testing.TB, nodes []string, override map[string]string) string {
	tb.Helper()
	return Run(tb, nodes, override).URL
}

// Run is Start that returns both servers, the plain and the TLS one (the
// include of deploy/nginx-tls.conf turned on, as docs/operations.md says).
// Only what must differ on a test machine is substituted: the upstream servers,
// the two listen ports, the certificate paths and the access log's path;
// nginx runs the rest of the file as shipped.
func Run(tb testing.TB, nodes []string, override map[string]string) *Proxy {
	tb.Helper()
	bin := tooltest.Path(tb, "nginx-light", "nginx", nginxSbin)
	_, file, _, _ := runtime.Caller(0)
	deployDir := filepath.Join(filepath.Dir(file), "..", "..", "deploy")
	sample, err := os.ReadFile(filepath.Join(deployDir, "nginx.conf"))
	if err != nil {
		tb.Fatal(err)
	}
	tlsPart, err := os.ReadFile(filepath.Join(deployDir, "nginx-tls.conf"))
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeSelfSigned(tb, crt, key)
	// The TLS server is the documented step: the include line uncommented,
	// here with deploy/nginx-tls.conf's text in its place.
	conf := replaceOnce(tb, string(sample), "    # include /path/to/tickstream/deploy/nginx-tls.conf;\n",
		indent(string(tlsPart), "    "))
	// The nodes get the parameters the shipped file gives its servers.
	params := ""
	serverRE := regexp.MustCompile(`(?m)^    server 127\.0\.0\.1:808[12]( [^;]*)?;\n`)
	if m := serverRE.FindStringSubmatch(conf); m != nil {
		params = m[1]
	}
	var servers []string
	for _, n := range nodes {
		servers = append(servers, "    server "+n+params+";")
	}
	conf = serverRE.ReplaceAllString(conf, "")
	conf = replaceOnce(tb, conf, "    least_conn;\n", "    least_conn;\n"+strings.Join(servers, "\n")+"\n")
	addr, tlsAddr := freeAddr(tb), freeAddr(tb)
	conf = replaceOnce(tb, conf, "listen 8080;", "listen "+addr+";")
	conf = replaceOnce(tb, conf, "listen 8443 ssl http2;", "listen "+tlsAddr+" ssl http2;")
	conf = replaceOnce(tb, conf, "/etc/tickstream/tls.crt;", crt+";")
	conf = replaceOnce(tb, conf, "/etc/tickstream/tls.key;", key+";")
	accessLog := filepath.Join(dir, "access.log")
	conf = replaceOnce(tb, conf, "/var/log/nginx/tickstream.access.log ", accessLog+" ")
	for k, v := range override {
		conf = strings.ReplaceAll(conf, k, v)
	}
	full := fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
worker_processes 1;
events { worker_connections 16384; }
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
	for _, a := range []string{addr, tlsAddr} {
		waitListen(tb, a, dir)
	}
	return &Proxy{URL: "http://" + addr, TLSURL: "https://" + tlsAddr, Dir: dir, AccessLog: accessLog}
}

// indent prefixes every non-empty line of s.
func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

func replaceOnce(tb testing.TB, s, old, new string) string {
	tb.Helper()
	if strings.Count(s, old) != 1 {
		tb.Fatalf("deploy/nginx.conf (with nginx-tls.conf): want %q exactly once", old)
	}
	return strings.Replace(s, old, new, 1)
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListen(tb testing.TB, addr, dir string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			tb.Fatalf("nginx did not start: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeSelfSigned writes a fresh self-signed ECDSA certificate for
// 127.0.0.1, ::1 and localhost, and its key, as PEM.
func writeSelfSigned(tb testing.TB, crtPath, keyPath string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "tickstream test proxy"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		tb.Fatal(err)
	}
}
