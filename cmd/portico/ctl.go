package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// ctlClient calls the admin API.
type ctlClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

func newCtlClient(adminURL, token string) (*ctlClient, error) {
	if adminURL == "" {
		adminURL = envOr("PORTICO_ADMIN_URL", "http://127.0.0.1:9900")
	}
	if token == "" {
		token = os.Getenv("PORTICO_TOKEN")
	}
	if token == "" {
		return nil, usageError{"no admin token: set PORTICO_TOKEN or pass --token (the origin printed one at its first start; portico dev prints one at every start)"}
	}
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Sprintf("admin URL %q is not an http:// or https:// URL", adminURL)}
	}
	return &ctlClient{base: u, token: token, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// apiError is an error the admin API answered with.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// do calls the admin API. body may be nil, a []byte (sent as is with
// contentType) or a value encoded as JSON. out, when not nil, receives
// the decoded JSON response.
func (c *ctlClient) do(ctx context.Context, method, path string, query url.Values, body any, contentType string, out any) error {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query.Encode()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(enc)
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the admin API at %s: %w", c.base, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode >= 300 {
		var e struct{ Message string }
		if json.Unmarshal(raw, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return &apiError{Status: res.StatusCode, Message: e.Message}
	}
	if out != nil && len(raw) > 0 {
		if p, ok := out.(*[]byte); ok {
			*p = raw
			return nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("the admin API sent a response ctl cannot read: %w", err)
		}
	}
	return nil
}

// table writes rows aligned in columns.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ctl", stderr)
	adminURL := fs.String("admin-url", "", "admin API URL (default $PORTICO_ADMIN_URL or http://127.0.0.1:9900)")
	token := fs.String("token", "", "admin token (default $PORTICO_TOKEN)")
	output := fs.String("o", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	rest := fs.Args()
	if len(rest) < 2 || rest[0] != "apis" || rest[1] != "list" {
		return usageError{"usage: portico ctl [flags] apis list"}
	}
	c, err := newCtlClient(*adminURL, *token)
	if err != nil {
		return err
	}
	var out struct {
		APIs []struct {
			ID, Name, Version string
			Routes            int
		} `json:"apis"`
	}
	var raw []byte
	if err := c.do(ctx, "GET", "/v1/apis", nil, nil, "", &raw); err != nil {
		return err
	}
	if *output == "json" {
		_, err := stdout.Write(raw)
		return err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return err
	}
	var rows [][]string
	for _, a := range out.APIs {
		rows = append(rows, []string{a.Name, a.ID, a.Version, fmt.Sprint(a.Routes)})
	}
	table(stdout, []string{"NAME", "ID", "VERSION", "ROUTES"}, rows)
	return nil
}
