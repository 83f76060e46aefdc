package edge

import (
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/portico-edge/portico/plugins"
)

// checkError is a request refused before routing.
type checkError struct {
	status int
	msg    string
	close  bool
}

func (c *checkError) write(w http.ResponseWriter) {
	if c.close {
		w.Header().Set("Connection", "close")
	}
	plugins.WriteError(w, c.status, c.msg)
}

// check canonicalises the host and path of a request.
func (e *Edge) check(r *http.Request) (host, p string, err *checkError) {
	host = strings.ToLower(r.Host)
	if h, _, splitErr := net.SplitHostPort(host); splitErr == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if host == "" {
		return "", "", &checkError{status: 400, msg: "the request has no Host"}
	}
	raw := r.URL.EscapedPath()
	low := strings.ToLower(raw)
	if strings.Contains(low, "%2f") || strings.Contains(low, "%5c") || strings.ContainsAny(raw, "\\;") {
		return "", "", &checkError{status: 400, msg: "the path holds an encoded slash, a backslash or a ';', which are not allowed"}
	}
	p = path.Clean("/" + raw)
	if strings.HasSuffix(raw, "/") && p != "/" {
		p += "/"
	}
	return host, p, nil
}
