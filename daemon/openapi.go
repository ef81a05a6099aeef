// GET /v1/openapi.json: the OpenAPI 3.1 description of this API.

package daemon

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the API's OpenAPI 3.1 document. TestOpenAPIRoutes keeps its
// paths and methods equal to the route table, and its error codes to those
// the handlers use; the test command lints it with redocly.
//
//go:embed openapi.json
var openAPIDoc []byte

// handleOpenAPI serves the document to any identified client, like
// /v1/health.
func (s *Server) handleOpenAPI(c *call) error {
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	c.w.WriteHeader(http.StatusOK)
	_, err := c.w.Write(openAPIDoc)
	return err
}
