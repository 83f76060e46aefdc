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
//
// It keeps no TLS session cache unless tlsConf brings one: with a session
// ticket that allows 0-RTT, quic-go's HTTP/3 client reads the connection's
// state while its own loop still writes the peer's transport parameters
// (a data race, quic-go issue 4303). Without resumption every new QUIC
// connection makes a full handshake, once per connection the transport
// keeps open, which costs the forwarder little.
func NewHTTP3Transport(tlsConf *tls.Config) http.RoundTripper {
	var tc *tls.Config
	if tlsConf != nil {
		tc = tlsConf.Clone()
	} else {
		tc = &tls.Config{}
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
