// Command listenmock serves a fixed 1 KiB body through edge/listen over
// HTTP/1.1, HTTP/2 and HTTP/3 (TLS) and plain HTTP, with a throwaway
// self-signed certificate. test/bench/protocols.sh measures it against
// nginx and Caddy; it stands in for the edge until the script points at it.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/portico-edge/portico/edge/listen"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func main() {
	addr := flag.String("tls", "127.0.0.1:8443", "TLS address (TCP for h1/h2, UDP for h3)")
	plain := flag.String("http", "", "plain-HTTP address (empty: none)")
	certFile := flag.String("cert", "", "certificate PEM file (default: a fresh self-signed one)")
	keyFile := flag.String("key", "", "key PEM file, with -cert")
	certOut := flag.String("cert-out", "", "write the self-signed certificate (PEM) here, for clients to trust")
	size := flag.Int("size", 1024, "response body bytes")
	stdlib := flag.Bool("stdlib", false, "serve with a bare net/http server (h1, h2) and a bare quic-go http3.Server (h3) instead of edge/listen: the baseline the listener costs against")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until the server stops")
	flag.Parse()
	useStdlib = *stdlib
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "listenmock:", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(*addr, *plain, *certFile, *keyFile, *certOut, *size, log); err != nil {
		fmt.Fprintln(os.Stderr, "listenmock:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(addr, plain, certFile, keyFile, certOut string, size int, log *slog.Logger) error {
	var cert *tls.Certificate
	var pemBytes []byte
	var err error
	if certFile != "" {
		var c tls.Certificate
		c, err = tls.LoadX509KeyPair(certFile, keyFile)
		cert = &c
	} else {
		cert, pemBytes, err = selfSigned()
	}
	if err != nil {
		return err
	}
	if certOut != "" && pemBytes != nil {
		if err := os.WriteFile(certOut, pemBytes, 0o644); err != nil {
			return err
		}
	}
	body := []byte(strings.Repeat("x", size))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	if useStdlib {
		srv := &http.Server{Addr: addr, Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{*cert}}}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		// HTTP/3 on the same port: quic-go's http3.Server as it comes,
		// with edge/listen's QUIC settings.
		udp, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			return err
		}
		h3 := &http3.Server{
			Handler:   h,
			TLSConfig: http3.ConfigureTLSConfig(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert}}),
			QUICConfig: &quic.Config{
				MaxIncomingStreams:   100,
				HandshakeIdleTimeout: 10 * time.Second,
				MaxIdleTimeout:       120 * time.Second,
			},
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() { <-ctx.Done(); srv.Close(); h3.Close(); udp.Close() }()
		go func() {
			if err := h3.Serve(udp); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("bare HTTP/3 server failed", "error", err)
			}
		}()
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	s, err := listen.New(listen.Config{
		TLSAddr:      addr,
		HTTPAddr:     plain,
		Certificates: listen.CertFunc(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }),
		Logger:       log,
		// The load client opens 64 connections from one address.
		MaxConnsPerIP: 4096,
	}, h)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Serve(ctx)
}

var useStdlib bool

func selfSigned() (*tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
