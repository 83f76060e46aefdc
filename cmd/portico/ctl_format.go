package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portico-edge/portico/config"
)

// Tables: aligned columns, upper-case headers, "-" for an empty cell, and
// times in RFC 3339 (UTC, seconds), the form the admin API sends.

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// table writes rows under a header, aligned in columns.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := newTable(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// block writes "Key:  value" lines, aligned.
func block(w io.Writer, kv ...string) error {
	tw := newTable(w)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[i], cell(kv[i+1]))
	}
	return tw.Flush()
}

// cell keeps a table cell on one line.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// truncate shortens long free text for a table cell.
func truncate(s string, n int) string {
	s = cell(s)
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// fmtVars writes stage variables as "k=v, k2=v2", sorted by name.
func fmtVars(vars map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		parts = append(parts, k+"="+vars[k])
	}
	return strings.Join(parts, ", ")
}

// fmtBasePath shows a base path as clients see it: "/v1", "/" for the root.
func fmtBasePath(bp string) string { return "/" + bp }

// integrationTarget says where a route goes: the backend URL (with the
// method toward it when it differs from the client's), or the mock's status.
func integrationTarget(in config.Integration) string {
	switch in.Type {
	case config.IntegrationMock:
		if in.Mock == nil {
			return "status 200"
		}
		return "status " + strconv.Itoa(in.Mock.Status)
	default:
		if in.Method != "" {
			return in.Method + " " + in.URI
		}
		return in.URI
	}
}

func routeTable(w io.Writer, routes []config.Route) error {
	rows := make([][]string, 0, len(routes))
	for _, r := range routes {
		rows = append(rows, []string{r.Method, r.Path, r.OperationID, string(r.Integration.Type), integrationTarget(r.Integration)})
	}
	return table(w, []string{"METHOD", "PATH", "OPERATION", "INTEGRATION", "TARGET"}, rows)
}

func policyTable(w io.Writer, ps []config.PolicySpec) error {
	rows := make([][]string, 0, len(ps))
	for _, p := range ps {
		rows = append(rows, []string{p.Type, compactJSON(p.Config)})
	}
	return table(w, []string{"POLICY", "CONFIG"}, rows)
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
