package tunnel

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// resetTimeout bounds the wait to queue an abort frame.
const resetTimeout = 5 * time.Second

// statusBody is a Kubernetes-style Status object (what kubectl prints as
// "Error from server (Forbidden): ..."), so refusals read the same as the
// API server's own.
func statusBody(code int, reason, message string) []byte {
	b, _ := json.Marshal(map[string]any{
		"kind":       "Status",
		"apiVersion": "v1",
		"metadata":   map[string]any{},
		"status":     "Failure",
		"message":    message,
		"reason":     reason,
		"code":       code,
	})
	return b
}

// WriteStatus answers with a Kubernetes-style Status.
func WriteStatus(w http.ResponseWriter, code int, reason, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(statusBody(code, reason, message))
}

// hopByHop are headers that belong to one connection, never forwarded.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Host": true, "Content-Length": true,
}

// identityHeader says whether a header would let the caller choose who
// the API server thinks is calling: their credentials or impersonation.
// The agent removes these whatever the hub sent.
func identityHeader(name string) bool {
	n := http.CanonicalHeaderKey(name)
	return n == "Authorization" || n == "Cookie" || strings.HasPrefix(n, "Impersonate-")
}
