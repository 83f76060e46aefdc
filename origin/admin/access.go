package admin

import (
	"net/http"

	"github.com/portico-edge/portico/origin/control"
)

// registerAccess adds the calls for API keys, usage plans, usage and SigV4
// access keys.
func (s *Server) registerAccess() {
	usageQuery := []Param{
		{Name: "from", Description: "first day, YYYY-MM-DD (UTC); default 29 days before to", Type: "string"},
		{Name: "to", Description: "last day, YYYY-MM-DD (UTC), inclusive; default today", Type: "string"},
	}
	for _, r := range []Route{
		{Method: "GET", Path: "/v1/api-keys", Tag: "api-keys", Summary: "List API keys (never the keys themselves)", Response: "APIKeyList", Handler: s.listAPIKeys},
		{Method: "POST", Path: "/v1/api-keys", Tag: "api-keys", Summary: "Create an API key; the key is in this response only", Request: "APIKeyInput", Response: "NewAPIKey", Status: 201, Handler: s.createAPIKey},
		{Method: "POST", Path: "/v1/api-keys/import", Tag: "api-keys", Summary: "Store an existing API key (20-128 printable characters); only its hash is kept", Request: "APIKeyImport", Response: "APIKey", Status: 201, Handler: s.importAPIKey},
		{Method: "GET", Path: "/v1/api-keys/{id}", Tag: "api-keys", Summary: "Get an API key", Response: "APIKey", Handler: s.getAPIKey},
		{Method: "PATCH", Path: "/v1/api-keys/{id}", Tag: "api-keys", Summary: "Rename, enable or disable an API key (edges apply it within a second)", Request: "APIKeyPatch", Response: "APIKey", Handler: s.patchAPIKey},
		{Method: "DELETE", Path: "/v1/api-keys/{id}", Tag: "api-keys", Summary: "Delete an API key with its usage", Handler: s.deleteAPIKey},
		{Method: "GET", Path: "/v1/api-keys/{id}/usage", Tag: "usage", Summary: "Get an API key's requests per day, across its plans, with the total", Response: "Usage", Query: usageQuery, Handler: s.apiKeyUsage},

		{Method: "GET", Path: "/v1/usage-plans", Tag: "usage-plans", Summary: "List usage plans", Response: "UsagePlanList", Handler: s.listPlans},
		{Method: "POST", Path: "/v1/usage-plans", Tag: "usage-plans", Summary: "Create a usage plan (every API stage it names must exist; apiId takes the API's name or ID)", Request: "UsagePlanInput", Response: "UsagePlan", Status: 201, Handler: s.createPlan},
		{Method: "GET", Path: "/v1/usage-plans/{plan}", Tag: "usage-plans", Summary: "Get a usage plan", Response: "UsagePlan", Handler: s.getPlan},
		{Method: "PUT", Path: "/v1/usage-plans/{plan}", Tag: "usage-plans", Summary: "Replace a usage plan's settings (refused when a key on it would be on two plans for one stage)", Request: "UsagePlanInput", Response: "UsagePlan", Handler: s.putPlan},
		{Method: "DELETE", Path: "/v1/usage-plans/{plan}", Tag: "usage-plans", Summary: "Delete a usage plan (refused while keys are on it)", Handler: s.deletePlan},
		{Method: "PUT", Path: "/v1/usage-plans/{plan}/keys/{key}", Tag: "usage-plans", Summary: "Put an API key on a usage plan (one plan per API stage)", Response: "APIKey", Handler: s.attachKey},
		{Method: "DELETE", Path: "/v1/usage-plans/{plan}/keys/{key}", Tag: "usage-plans", Summary: "Take an API key off a usage plan", Handler: s.detachKey},
		{Method: "GET", Path: "/v1/usage-plans/{plan}/usage", Tag: "usage", Summary: "Get the requests per key per day made under a usage plan, with totals", Response: "Usage",
			Query: append([]Param{{Name: "keyId", Description: "only this API key", Type: "string"}}, usageQuery...), Handler: s.planUsage},

		{Method: "GET", Path: "/v1/access-keys", Tag: "access-keys", Summary: "List SigV4 access keys (never their secrets)", Response: "AccessKeyList", Handler: s.listAccessKeys},
		{Method: "POST", Path: "/v1/access-keys", Tag: "access-keys", Summary: "Create a SigV4 access key for a principal; the secret is in this response only", Request: "AccessKeyInput", Response: "NewAccessKey", Status: 201, Handler: s.createAccessKey},
		{Method: "PATCH", Path: "/v1/access-keys/{id}", Tag: "access-keys", Summary: "Enable or disable an access key or change its principal", Request: "AccessKeyPatch", Response: "AccessKey", Handler: s.patchAccessKey},
		{Method: "DELETE", Path: "/v1/access-keys/{id}", Tag: "access-keys", Summary: "Delete an access key", Handler: s.deleteAccessKey},
	} {
		s.Handle(r)
	}
	for name, schema := range accessSchemas() {
		s.AddSchema(name, schema)
	}
}

func accessSchemas() map[string]map[string]any {
	boolean := map[string]any{"type": "boolean"}
	integer := map[string]any{"type": "integer"}
	number := map[string]any{"type": "number"}
	apiKeyProps := func() map[string]any {
		return map[string]any{"id": str(""), "name": str(""), "enabled": boolean, "planIds": arr(str("")), "createdAt": str("")}
	}
	newKey := apiKeyProps()
	newKey["key"] = str("the key, shown once")
	newKey["note"] = str("")
	throttle := obj(map[string]any{"rate": number, "burst": integer}, "rate", "burst")
	planStage := obj(map[string]any{
		"apiId":    str("the API's ID (in input, its name or ID)"),
		"stage":    str(""),
		"throttle": ref("Throttle"),
		"methods":  map[string]any{"type": "object", "description": "throttle per route key, such as \"GET /pets/{petId}\"", "additionalProperties": ref("Throttle")},
	}, "apiId", "stage")
	quota := obj(map[string]any{"limit": integer, "period": map[string]any{"type": "string", "enum": []string{"DAY", "WEEK", "MONTH"}}}, "limit", "period")
	planProps := func() map[string]any {
		return map[string]any{
			"id": str(""), "name": str(""), "description": str(""),
			"rate": number, "burst": integer, "quota": ref("Quota"), "stages": arr(ref("PlanStage")),
		}
	}
	plan := planProps()
	plan["createdAt"] = str("")
	plan["updatedAt"] = str("")
	accessProps := func() map[string]any {
		return map[string]any{"id": str("the access key ID"), "principal": str("sent to the origin as X-Portico-Principal"), "enabled": boolean, "createdAt": str("")}
	}
	newAccess := accessProps()
	newAccess["secret"] = str("the secret access key, shown once")
	newAccess["note"] = str("")
	dayCount := obj(map[string]any{"day": str("YYYY-MM-DD"), "count": integer})
	keyUsage := obj(map[string]any{"keyId": str(""), "name": str(""), "days": arr(dayCount), "total": integer})
	return map[string]map[string]any{
		"APIKey":         obj(apiKeyProps()),
		"APIKeyList":     obj(map[string]any{"apiKeys": arr(ref("APIKey"))}),
		"NewAPIKey":      obj(newKey),
		"APIKeyInput":    obj(map[string]any{"name": str(""), "enabled": boolean, "planIds": arr(str(""))}, "name"),
		"APIKeyImport":   obj(map[string]any{"name": str(""), "value": str("the key"), "enabled": boolean, "planIds": arr(str(""))}, "name", "value"),
		"APIKeyPatch":    obj(map[string]any{"name": str(""), "enabled": boolean}),
		"Throttle":       throttle,
		"Quota":          quota,
		"PlanStage":      planStage,
		"UsagePlan":      obj(plan),
		"UsagePlanInput": obj(planProps(), "name"),
		"UsagePlanList":  obj(map[string]any{"usagePlans": arr(ref("UsagePlan"))}),
		"Usage":          obj(map[string]any{"planId": str(""), "from": str(""), "to": str(""), "keys": arr(keyUsage), "total": integer}),
		"AccessKey":      obj(accessProps()),
		"AccessKeyList":  obj(map[string]any{"accessKeys": arr(ref("AccessKey"))}),
		"NewAccessKey":   obj(newAccess),
		"AccessKeyInput": obj(map[string]any{"principal": str(""), "enabled": boolean}, "principal"),
		"AccessKeyPatch": obj(map[string]any{"principal": str(""), "enabled": boolean}),
	}
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.ctl.APIKeys(r.Context())
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, map[string]any{"apiKeys": keys})
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name    string   `json:"name"`
		Enabled *bool    `json:"enabled"`
		PlanIDs []string `json:"planIds"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	k, err := s.ctl.CreateAPIKey(r.Context(), control.APIKeyInput{Name: in.Name, Enabled: in.Enabled, PlanIDs: in.PlanIDs})
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, k)
}

func (s *Server) importAPIKey(w http.ResponseWriter, r *http.Request) error {
	var in control.APIKeyInput
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	k, err := s.ctl.ImportAPIKey(r.Context(), in)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, k)
}

func (s *Server) getAPIKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.ctl.APIKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, k)
}

func (s *Server) patchAPIKey(w http.ResponseWriter, r *http.Request) error {
	var p control.APIKeyPatch
	if err := DecodeJSON(r, &p); err != nil {
		return err
	}
	k, err := s.ctl.UpdateAPIKey(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, k)
}

func (s *Server) deleteAPIKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteAPIKey(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiKeyUsage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	u, err := s.ctl.APIKeyUsage(r.Context(), r.PathValue("id"), q.Get("from"), q.Get("to"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, u)
}

func (s *Server) listPlans(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.ctl.UsagePlans(r.Context())
	if err != nil {
		return err
	}
	if ps == nil {
		return WriteJSON(w, 200, map[string]any{"usagePlans": []any{}})
	}
	return WriteJSON(w, 200, map[string]any{"usagePlans": ps})
}

func (s *Server) createPlan(w http.ResponseWriter, r *http.Request) error {
	var in control.UsagePlanInput
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	p, err := s.ctl.CreateUsagePlan(r.Context(), in)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, p)
}

func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) error {
	p, err := s.ctl.UsagePlan(r.Context(), r.PathValue("plan"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, p)
}

func (s *Server) putPlan(w http.ResponseWriter, r *http.Request) error {
	var in control.UsagePlanInput
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	p, err := s.ctl.UpdateUsagePlan(r.Context(), r.PathValue("plan"), in)
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, p)
}

func (s *Server) deletePlan(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteUsagePlan(r.Context(), r.PathValue("plan")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) attachKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.ctl.AttachKey(r.Context(), r.PathValue("plan"), r.PathValue("key"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, k)
}

func (s *Server) detachKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DetachKey(r.Context(), r.PathValue("plan"), r.PathValue("key")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) planUsage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	u, err := s.ctl.PlanUsage(r.Context(), r.PathValue("plan"), q.Get("keyId"), q.Get("from"), q.Get("to"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, u)
}

func (s *Server) listAccessKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.ctl.AccessKeys(r.Context())
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, map[string]any{"accessKeys": ks})
}

func (s *Server) createAccessKey(w http.ResponseWriter, r *http.Request) error {
	var in control.AccessKeyInput
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	a, err := s.ctl.CreateAccessKey(r.Context(), in)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, a)
}

func (s *Server) patchAccessKey(w http.ResponseWriter, r *http.Request) error {
	var p control.AccessKeyPatch
	if err := DecodeJSON(r, &p); err != nil {
		return err
	}
	a, err := s.ctl.UpdateAccessKey(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, a)
}

func (s *Server) deleteAccessKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteAccessKey(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
