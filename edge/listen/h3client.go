package listen

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// NewHTTP3Transport returns an HTTP/3 client transport (quic-go) for the
// forwarder's optional HTTP/3 toward the origin, and for tests and load
// clients. tlsConf is cloned; nil means the system roots. The result also
// implements io.Closer, which closes its QUIC connections.
func NewHTTP3Transport(tlsConf *tls.Config) http.RoundTripper {
	var tc *tls.Config
	if tlsConf != nil {
		tc = tlsConf.Clone()
	} else {
		tc = &tls.Config{}
	}
	if tc.ClientSessionCache == nil {
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	return &http3.Transport{
		TLSClientConfig: tc,
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: 5 * time.Second,
			MaxIdleTimeout:       90 * time.Second,
			KeepAlivePeriod:      15 * time.Second,
		},
	}
}
