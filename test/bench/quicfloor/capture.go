package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/portico-edge/portico/edge/listen"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// exchangeBytes are the bytes of one HTTP/3 request stream, each way.
type exchangeBytes struct {
	request  []byte // what the client sends, up to its FIN
	response []byte // what the server answers, up to its FIN
}

// capture runs one real HTTP/3 exchange on loopback and records the bytes
// of its request stream both ways. quic-go's HTTP/3 client, configured as
// loadclient's (listen.NewHTTP3Transport), sends GET url to a tap; the
// tap relays the request stream to a bare quic-go http3.Server that runs
// listenmock's handler (size bytes of text/plain, behind listen.HSTS with
// the listener's default policy) and relays the answer back. Nothing here
// is on the measured path: the server and the client only replay the
// bytes.
func capture(ctx context.Context, url string, size int) (*exchangeBytes, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cert, err := throwawayCert()
	if err != nil {
		return nil, err
	}
	serverTLS := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h3"}, Certificates: []tls.Certificate{*cert}}
	clientTLS := &tls.Config{NextProtos: []string{"h3"}, InsecureSkipVerify: true}

	// The HTTP/3 server that answers.
	body := []byte(strings.Repeat("x", size))
	h := listen.HSTS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}), listen.HSTSPolicy{MaxAge: 365 * 24 * time.Hour})
	upLn, err := quic.ListenAddrEarly("127.0.0.1:0", serverTLS, quicConfig())
	if err != nil {
		return nil, err
	}
	defer upLn.Close()
	srv := &http3.Server{Handler: h}
	defer srv.Close()
	go srv.ServeListener(upLn)

	// The tap between them.
	tapLn, err := quic.ListenAddr("127.0.0.1:0", serverTLS, quicConfig())
	if err != nil {
		return nil, err
	}
	defer tapLn.Close()
	type tapped struct {
		ex  *exchangeBytes
		err error
	}
	tapc := make(chan tapped, 1)
	clientDone := make(chan struct{})
	defer close(clientDone)
	go func() {
		ex, err := tap(ctx, tapLn, upLn.Addr().String(), clientTLS, clientDone)
		tapc <- tapped{ex, err}
	}()

	// The client, loadclient's, dialling the tap whatever the URL says, so
	// that the request's :authority is the one of the real run.
	rt := listen.NewHTTP3Transport(clientTLS).(*http3.Transport)
	defer rt.Close()
	rt.Dial = func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
		return quic.DialAddrEarly(ctx, tapLn.Addr().String(), tc, qc)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s through the tap: %w", url, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 || len(got) != size {
		return nil, fmt.Errorf("GET %s through the tap: status %d, %d bytes; want 200 and %d", url, resp.StatusCode, len(got), size)
	}
	select {
	case clientDone <- struct{}{}:
	case <-ctx.Done():
	}
	t := <-tapc
	if t.err != nil {
		return nil, t.err
	}
	if err := checkAnswer(t.ex.response, size); err != nil {
		return nil, err
	}
	return t.ex, nil
}

// tap accepts one HTTP/3 connection, reads its first request stream to the
// end, sends the same bytes to the HTTP/3 server at up on a raw QUIC
// connection, and relays that answer back. It keeps the client's
// connection open until clientDone says the client has read the answer.
func tap(ctx context.Context, ln *quic.Listener, up string, clientTLS *tls.Config, clientDone <-chan struct{}) (*exchangeBytes, error) {
	down, err := ln.Accept(ctx)
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	defer down.CloseWithError(0x100, "") // H3_NO_ERROR
	if err := openControl(ctx, down); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	ds, err := down.AcceptStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	req, err := io.ReadAll(ds)
	if err != nil {
		return nil, fmt.Errorf("tap: reading the request: %w", err)
	}

	uc, err := quic.DialAddr(ctx, up, clientTLS, clientQUICConfig())
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	defer uc.CloseWithError(0x100, "")
	if err := openControl(ctx, uc); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	us, err := uc.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	if _, err := us.Write(req); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	us.Close()
	resp, err := io.ReadAll(us)
	if err != nil {
		return nil, fmt.Errorf("tap: reading the answer: %w", err)
	}
	if _, err := ds.Write(resp); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	ds.Close()
	select {
	case <-clientDone:
	case <-ctx.Done():
	}
	if len(req) == 0 || len(resp) == 0 {
		return nil, errors.New("tap: an empty request or answer")
	}
	return &exchangeBytes{request: req, response: resp}, nil
}

func throwawayCert() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
