package origin

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/heartbeat"
	"github.com/portico-edge/portico/origin/admin"
	"github.com/portico-edge/portico/origin/fleet"
	"github.com/portico-edge/portico/plugins"
)

// maxHeartbeatBytes bounds one heartbeat (a node with many domains).
const maxHeartbeatBytes = 1 << 20

// registerFleet wires heartbeats from edges into the registry and the
// admin calls that show it.
func (o *Origin) registerFleet() {
	o.Data.HandleEdgeCall("POST "+heartbeat.Path, func(w http.ResponseWriter, r *http.Request) {
		var hb fleet.Heartbeat
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxHeartbeatBytes))
		if err := dec.Decode(&hb); err != nil {
			plugins.WriteError(w, http.StatusBadRequest, "the heartbeat is not valid JSON: "+err.Error())
			return
		}
		if hb.Node == "" || len(hb.Node) > 128 || strings.ContainsFunc(hb.Node, func(c rune) bool { return c < 0x21 || c == 0x7f }) {
			plugins.WriteError(w, http.StatusBadRequest, "the heartbeat's node name must be 1-128 printable characters without spaces")
			return
		}
		if !o.Fleet.Record(hb, r.RemoteAddr) {
			plugins.WriteError(w, http.StatusServiceUnavailable, "the origin tracks too many nodes")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	node := map[string]any{"type": "object", "properties": map[string]any{
		"node": map[string]any{"type": "string"}, "site": map[string]any{"type": "string"}, "role": map[string]any{"type": "string"},
		"version": map[string]any{"type": "string", "description": "snapshot version the node serves"}, "build": map[string]any{"type": "string"},
		"startedAt": map[string]any{"type": "string"}, "lastSeen": map[string]any{"type": "string"}, "address": map[string]any{"type": "string"},
		"behind": map[string]any{"type": "boolean", "description": "the node serves another snapshot than the current one"},
	}}
	o.Admin.AddSchema("NodeList", map[string]any{"type": "object", "properties": map[string]any{
		"current": map[string]any{"type": "string", "description": "the current snapshot version"},
		"nodes":   map[string]any{"type": "array", "items": node},
	}})
	o.Admin.AddSchema("CertificateList", map[string]any{"type": "object", "properties": map[string]any{
		"domain": map[string]any{"type": "string"},
		"certificates": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
			"node": map[string]any{"type": "string"}, "role": map[string]any{"type": "string"}, "lastSeen": map[string]any{"type": "string"},
			"domain": map[string]any{"type": "string"}, "source": map[string]any{"type": "string", "enum": []string{"acme", "files", "default"}},
			"issuer": map[string]any{"type": "string"}, "notAfter": map[string]any{"type": "string"}, "lastError": map[string]any{"type": "string"},
		}}},
	}})
	o.Admin.Handle(admin.Route{Method: "GET", Path: "/v1/nodes", Tag: "edges", Summary: "List the nodes (edges, regional endpoints) that reported in the last day, with the snapshot version each serves", Response: "NodeList",
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			cur := o.Control.Snapshot().Version
			type row struct {
				fleet.Node
				Behind bool `json:"behind"`
			}
			out := []row{}
			for _, n := range o.Fleet.Nodes() {
				out = append(out, row{Node: n, Behind: n.Version != cur})
			}
			return admin.WriteJSON(w, http.StatusOK, map[string]any{"current": cur, "nodes": out})
		}})
	o.Admin.Handle(admin.Route{Method: "GET", Path: "/v1/domains/{domain}/certificates", Tag: "domains", Summary: "Show each node's certificate for a domain: issuer, expiry, last error", Response: "CertificateList",
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			name, err := config.NormalizeDomainName(r.PathValue("domain"))
			if err != nil {
				return admin.BadRequest("%v", err)
			}
			if _, err := o.Control.Domain(r.Context(), name); err != nil {
				return err
			}
			certs := o.Fleet.Certificates(name)
			if certs == nil {
				certs = []fleet.DomainCertificate{}
			}
			return admin.WriteJSON(w, http.StatusOK, map[string]any{"domain": name, "certificates": certs})
		}})
}
