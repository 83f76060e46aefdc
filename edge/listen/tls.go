package listen

import (
	"crypto/tls"
	"slices"
)

// CipherSuites are the TLS 1.2 suites the listeners offer: ECDHE key
// exchange with an AEAD only. Go's defaults also offer CBC suites under TLS
// 1.2, which scanners flag (LUCKY13) and no current client needs. TLS 1.3
// suites are not configurable in crypto/tls and are all AEAD.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerTLSConfig is the hardened tls.Config of the TCP listener: TLS 1.2
// minimum, CipherSuites, certificates from src, ALPN h2 and http/1.1 plus
// whatever src answers itself (acme-tls/1).
func ServerTLSConfig(src CertSource) *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if a, ok := src.(ALPNSource); ok {
		for _, p := range a.ALPNProtocols() {
			if !slices.Contains(protos, p) {
				protos = append(protos, p)
			}
		}
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   slices.Clone(CipherSuites),
		NextProtos:     protos,
		GetCertificate: src.GetCertificate,
	}
}

// quicTLSConfig is the tls.Config of the QUIC listener: QUIC is TLS 1.3
// only; h3.ConfigureTLSConfig adds the h3 ALPN.
func quicTLSConfig(src CertSource) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: src.GetCertificate,
	}
}
