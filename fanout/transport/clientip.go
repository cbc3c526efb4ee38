package transport

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// parsePrefixes parses trusted proxies given as IPs or CIDRs.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an IP or a CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// trusted reports whether ip is one of the trusted proxies.
func (s *Server) trusted(ip string) bool {
	if len(s.proxies) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP names the client for the per-address limits: the connection's
// address, or, when that is a trusted proxy, the right-most address of
// X-Forwarded-For that is not a trusted proxy. Each proxy appends the
// address it saw, so everything left of the last untrusted hop is whatever
// the client chose to send and is never believed.
func (s *Server) clientIP(c *fiber.Ctx) string {
	remote := c.Context().RemoteIP().String()
	if !s.trusted(remote) {
		return remote
	}
	// Every X-Forwarded-For line, in order: a proxy may add its own line
	// rather than append to the one the client sent.
	var lines []string
	for _, v := range c.Context().Request.Header.PeekAll(fiber.HeaderXForwardedFor) {
		lines = append(lines, string(v))
	}
	xff := strings.Join(lines, ",")
	for xff != "" {
		var hop string
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			hop, xff = xff[i+1:], xff[:i]
		} else {
			hop, xff = xff, ""
		}
		hop = strings.TrimSpace(hop)
		a, err := netip.ParseAddr(hop)
		if err != nil {
			return remote // a malformed hop: the proxy's own address counts
		}
		if ip := a.Unmap().String(); !s.trusted(ip) {
			return ip
		}
	}
	return remote
}
