package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ctlEnv is what a running command works with.
type ctlEnv struct {
	out, errOut io.Writer
	json        bool // -o json
	global      ctlGlobal
	cmd         *ctlCommand
	c           *ctlClient // made on first use: `help` and local checks need no token
}

// ctlSettings are where ctl sends its calls, and where each setting came
// from, so that messages can say which one to fix.
type ctlSettings struct {
	adminURL, urlFrom string
	token, tokenFrom  string
}

// ctlConfigFile is the optional config file (ctl.yaml).
type ctlConfigFile struct {
	AdminURL string `yaml:"adminUrl"`
	Token    string `yaml:"token"`
}

// ctlConfigPath returns where ctl looks for its config file:
// $XDG_CONFIG_HOME/portico/ctl.yaml, else ~/.config/portico/ctl.yaml.
func ctlConfigPath() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "portico", "ctl.yaml")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".config", "portico", "ctl.yaml")
}

// loadCtlConfig reads the config file; a missing file is no error.
func loadCtlConfig(path string, warn io.Writer) (*ctlConfigFile, error) {
	var cf ctlConfigFile
	if path == "" {
		return &cf, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &cf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ctl config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("ctl config %s: %w (it holds adminUrl: and token:)", path, err)
	}
	if cf.Token != "" {
		if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(warn, "warning: %s holds an admin token and others can read it; run: chmod 600 %s\n", path, path)
		}
	}
	return &cf, nil
}

// resolveCtlSettings picks the admin URL and token: flags, then the
// environment, then the config file, then (for the URL) the default.
func resolveCtlSettings(flagURL, flagToken string, warn io.Writer) (ctlSettings, error) {
	s := ctlSettings{adminURL: flagURL, urlFrom: "--admin-url", token: flagToken, tokenFrom: "--token"}
	if s.adminURL == "" {
		s.adminURL, s.urlFrom = os.Getenv("PORTICO_ADMIN_URL"), "$PORTICO_ADMIN_URL"
	}
	if s.token == "" {
		s.token, s.tokenFrom = os.Getenv("PORTICO_TOKEN"), "$PORTICO_TOKEN"
	}
	if s.adminURL == "" || s.token == "" {
		path := ctlConfigPath()
		cf, err := loadCtlConfig(path, warn)
		if err != nil {
			return s, err
		}
		if s.adminURL == "" && cf.AdminURL != "" {
			s.adminURL, s.urlFrom = cf.AdminURL, path
		}
		if s.token == "" && cf.Token != "" {
			s.token, s.tokenFrom = cf.Token, path
		}
	}
	if s.adminURL == "" {
		s.adminURL, s.urlFrom = "http://127.0.0.1:9900", "the default"
	}
	if s.token == "" {
		return s, usageError{fmt.Sprintf(`no admin token: pass --token, set PORTICO_TOKEN, or put "token: ..." in %s.
  With portico dev: source .data/dev/env (it writes the admin URL and a fresh token there at every start).
  With portico origin: it printed an admin token at its first start; with that token,
  portico ctl tokens create --kind admin --name NAME makes more.`, displayPath(ctlConfigPath()))}
	}
	u, err := url.Parse(s.adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return s, usageError{fmt.Sprintf("admin URL %q (from %s) is not an http:// or https:// URL such as http://127.0.0.1:9900", s.adminURL, s.urlFrom)}
	}
	return s, nil
}

func displayPath(p string) string {
	if p == "" {
		return "~/.config/portico/ctl.yaml"
	}
	return p
}

// ctlClient calls the admin API.
type ctlClient struct {
	set  ctlSettings
	base *url.URL
	http *http.Client
}

func (x *ctlEnv) client() (*ctlClient, error) {
	if x.c != nil {
		return x.c, nil
	}
	set, err := resolveCtlSettings(x.global.adminURL, x.global.token, x.errOut)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(set.adminURL) // checked by resolveCtlSettings
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	x.c = &ctlClient{set: set, base: u, http: &http.Client{}}
	return x.c, nil
}

// apiError is an error the admin API answered with: its message, as is,
// with the status.
type apiError struct {
	Status  int
	Message string
	hint    string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	if e.hint != "" {
		s += "\n  " + e.hint
	}
	return s
}

// ctlResponse is a successful answer.
type ctlResponse struct {
	status      int
	contentType string
	body        []byte
}

// rawBody is a request body sent as is.
type rawBody struct {
	data        []byte
	contentType string
}

// apiPath builds a path from a pattern with %s for each segment, escaping
// the segments, so a base path like "v1/beta" stays one segment.
func apiPath(pattern string, segs ...string) string {
	esc := make([]any, len(segs))
	for i, s := range segs {
		esc[i] = url.PathEscape(s)
	}
	return fmt.Sprintf(pattern, esc...)
}

// call makes one admin call. path is already escaped (apiPath). body is
// nil, a rawBody, or a value sent as JSON. When out is not nil, a JSON
// answer is decoded into it.
func (x *ctlEnv) call(ctx context.Context, method, path string, query url.Values, body any, out any) (*ctlResponse, error) {
	c, err := x.client()
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(c.base.String() + path)
	if err != nil {
		return nil, fmt.Errorf("build the URL for %s: %w", path, err)
	}
	u.RawQuery = query.Encode()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case rawBody:
		rd, contentType = bytes.NewReader(b.data), b.contentType
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, contentType = bytes.NewReader(enc), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.set.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "portico-ctl/"+version)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer from the admin API at %s within --timeout %v", c.base, x.global.timeout)
		}
		return nil, fmt.Errorf("cannot reach the admin API at %s (from %s): %w; is the origin running and is that its admin address?", c.base, c.set.urlFrom, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("read the admin API's answer to %s %s: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		e := &apiError{Status: res.StatusCode}
		var msg struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &msg) == nil && msg.Message != "" {
			e.Message = msg.Message
		} else {
			e.Message = strings.TrimSpace(string(raw))
		}
		if res.StatusCode == http.StatusUnauthorized {
			e.hint = fmt.Sprintf("(ctl sent the token from %s to %s)", c.set.tokenFrom, c.base)
		}
		return nil, e
	}
	r := &ctlResponse{status: res.StatusCode, contentType: res.Header.Get("Content-Type"), body: raw}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("the admin API's answer to %s %s is not what ctl expects (%w); are ctl and the origin the same version?", method, path, err)
		}
	}
	return r, nil
}

// show prints an answer: pretty JSON with -o json, else the table.
func (x *ctlEnv) show(res *ctlResponse, table func(w io.Writer) error) error {
	if x.json {
		return writeJSON(x.out, res.body)
	}
	return table(x.out)
}

// writeJSON writes a JSON answer indented, keeping its content and key
// order; an empty answer (204) prints nothing.
func writeJSON(w io.Writer, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("the admin API's answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}
