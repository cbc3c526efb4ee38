package transport

import (
	"github.com/gofiber/fiber/v2"
	dto "github.com/prometheus/client_model/go"
)

// handleNodes answers GET /api/nodes: the cluster's nodes and their load as
// announced in Redis (Config.Nodes), or 404 when the node has no registry.
func (s *Server) handleNodes(c *fiber.Ctx) error {
	if s.cfg.Nodes == nil {
		return c.Status(fiber.StatusNotFound).JSON(apiError{Error: "no cluster registry on this node"})
	}
	b, err := s.cfg.Nodes()
	if err != nil {
		return c.Status(fiber.StatusInternalServerError).JSON(apiError{Error: "cluster view: " + err.Error()})
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	return c.Send(b)
}

// Streams returns the open streaming subscribers by transport: SSE and
// WebSocket (what the tickstream_subscribers gauge shows).
func (s *Server) Streams() (sse, ws int) {
	read := func(transport string) int {
		var m dto.Metric
		if s.metrics.subscribers.WithLabelValues(transport).Write(&m) != nil || m.Gauge == nil {
			return 0
		}
		return int(m.Gauge.GetValue())
	}
	return read("sse"), read("ws")
}
