package admin

import (
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Schemas holds the admin API's JSON schemas by name. Other parts of the
// origin add theirs with AddSchema when they register routes.
type schemaSet map[string]any

func obj(props map[string]any, required ...string) map[string]any {
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }
func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }
func arr(items any) map[string]any   { return map[string]any{"type": "array", "items": items} }
func strMap() map[string]any {
	return map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}}
}

func coreSchemas() schemaSet {
	policy := obj(map[string]any{"type": str("policy type, e.g. api-key, throttle, jwt, cache"), "config": map[string]any{"description": "the policy's own configuration"}}, "type")
	integration := obj(map[string]any{
		"type":       map[string]any{"type": "string", "enum": []string{"http", "http_proxy", "mock"}},
		"method":     str("method toward the backend; empty means the client's"),
		"uri":        str("backend URL with ${stageVariables.NAME} and {param} placeholders"),
		"timeout":    str("Go duration, e.g. 29s"),
		"parameters": strMap(),
		"mock":       obj(map[string]any{"status": map[string]any{"type": "integer"}, "headers": strMap(), "body": str("")}),
		"responses":  arr(obj(map[string]any{"pattern": str("regexp on the backend status"), "status": map[string]any{"type": "integer"}, "headers": strMap()})),
	})
	route := obj(map[string]any{
		"method": str("HTTP method or ANY"), "path": str("path template"), "operationId": str(""),
		"integration": integration, "policies": arr(ref("Policy")), "cacheKeyParameters": arr(str("")), "pointer": str("JSON pointer of the operation in the source document"),
	}, "method", "path", "integration")
	api := obj(map[string]any{
		"id": str(""), "name": str(""), "description": str(""), "version": str(""), "routes": arr(route),
		"policies": arr(ref("Policy")), "sourceDigest": str("SHA-256 of the imported document"), "createdAt": str(""), "updatedAt": str(""),
	}, "id", "name", "routes")
	stage := obj(map[string]any{
		"apiId": str(""), "name": str(""), "description": str(""), "variables": strMap(), "deploymentId": str(""),
		"policies": arr(ref("Policy")), "createdAt": str(""), "updatedAt": str(""),
	}, "apiId", "name")
	mapping := obj(map[string]any{"basePath": str("\"\" is the root"), "apiId": str(""), "stage": str("")})
	cert := obj(map[string]any{"certFile": str(""), "keyFile": str(""), "managed": map[string]any{"type": "boolean"}})
	domainProps := map[string]any{
		"endpointType":    map[string]any{"type": "string", "enum": []string{"edge", "regional", "private"}},
		"plainHttp":       map[string]any{"type": "string", "enum": []string{"redirect", "serve"}},
		"certificate":     cert,
		"allowedNetworks": arr(str("CIDR")),
	}
	domain := obj(maps.Clone(domainProps))
	domain["properties"].(map[string]any)["name"] = str("")
	domain["properties"].(map[string]any)["mappings"] = arr(mapping)
	site := obj(map[string]any{"name": str(""), "region": str(""), "addresses": arr(str(""))}, "name")
	deployment := obj(map[string]any{"id": str(""), "apiId": str(""), "description": str(""), "createdAt": str(""), "api": ref("API")}, "id", "apiId", "api")
	deploymentInfo := obj(map[string]any{"id": str(""), "apiId": str(""), "description": str(""), "createdAt": str(""), "routes": map[string]any{"type": "integer"}, "stages": arr(str(""))})
	return schemaSet{
		"Error":          obj(map[string]any{"message": str("what went wrong and what to do")}, "message"),
		"Policy":         policy,
		"PolicyList":     obj(map[string]any{"policies": arr(ref("Policy"))}, "policies"),
		"API":            api,
		"APIList":        obj(map[string]any{"apis": arr(obj(map[string]any{"id": str(""), "name": str(""), "description": str(""), "version": str(""), "routes": map[string]any{"type": "integer"}, "updatedAt": str("")}))}),
		"ImportResult":   obj(map[string]any{"api": ref("API"), "created": map[string]any{"type": "boolean"}, "unchanged": map[string]any{"type": "boolean"}}),
		"Stage":          stage,
		"StageList":      obj(map[string]any{"stages": arr(ref("Stage"))}),
		"StageInput":     obj(map[string]any{"description": str(""), "variables": strMap(), "policies": arr(ref("Policy"))}),
		"DeployInput":    obj(map[string]any{"description": str("")}),
		"RollbackInput":  obj(map[string]any{"deploymentId": str("the deployment to point at; the previous one when empty")}),
		"Deployment":     deployment,
		"DeploymentList": obj(map[string]any{"deployments": arr(deploymentInfo)}),
		"Domain":         domain,
		"DomainList":     obj(map[string]any{"domains": arr(ref("Domain"))}),
		"DomainInput":    obj(domainProps),
		"MappingInput":   obj(map[string]any{"api": str("API name or ID"), "stage": str("")}, "api", "stage"),
		"EdgeSite":       site,
		"EdgeSiteList":   obj(map[string]any{"edgeSites": arr(ref("EdgeSite"))}),
		"TokenList":      obj(map[string]any{"tokens": arr(obj(map[string]any{"kind": str(""), "name": str(""), "createdAt": str(""), "hashPrefix": str("")}))}),
		"TokenInput":     obj(map[string]any{"kind": map[string]any{"type": "string", "enum": []string{"admin", "edge"}}, "name": str("")}, "kind", "name"),
		"NewToken":       obj(map[string]any{"kind": str(""), "name": str(""), "token": str("the secret, shown once"), "note": str("")}),
		"ApplyInput":     obj(map[string]any{"path": str("the config file's name, used in error messages"), "config": str("the config file's text (YAML or JSON)"), "documents": strMap()}, "config"),
		"ApplyReport":    obj(map[string]any{"imported": arr(str("")), "deployed": arr(str("")), "domains": arr(str(""))}),
		"Snapshot":       obj(map[string]any{"version": str("content digest"), "apis": arr(map[string]any{"type": "object"}), "deployments": arr(ref("Deployment")), "domains": arr(ref("Domain")), "edgeSites": arr(ref("EdgeSite"))}),
	}
}

var pathParam = regexp.MustCompile(`\{([A-Za-z0-9_]+)\}`)

// OpenAPI returns the admin API's own OpenAPI 3.0 document.
func (s *Server) OpenAPI() map[string]any {
	schemas := coreSchemas()
	maps.Copy(schemas, s.extraSchemas)
	paths := map[string]any{}
	routes := slices.Clone(s.routes)
	slices.SortFunc(routes, func(a, b Route) int { return strings.Compare(a.Path+a.Method, b.Path+b.Method) })
	for _, r := range routes {
		item, _ := paths[r.Path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[r.Path] = item
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(r.Path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range r.Query {
			typ := q.Type
			if typ == "" {
				typ = "string"
			}
			params = append(params, map[string]any{"name": q.Name, "in": "query", "description": q.Description, "schema": map[string]any{"type": typ}})
		}
		status := r.Status
		if status == 0 {
			status = 200
			if r.Response == "" {
				status = 204
			}
		}
		success := map[string]any{"description": http.StatusText(status)}
		switch r.Response {
		case "":
		case "document":
			success["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}, "application/yaml": map[string]any{"schema": map[string]any{"type": "string"}}}
		default:
			success["content"] = map[string]any{"application/json": map[string]any{"schema": ref(r.Response)}}
		}
		errResp := func(d string) map[string]any {
			return map[string]any{"description": d, "content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}}
		}
		op := map[string]any{
			"summary":     r.Summary,
			"operationId": operationID(r),
			"tags":        []string{r.Tag},
			"responses": map[string]any{
				strconv.Itoa(status): success,
				"400":                errResp("the request is not valid; the message says why"),
				"401":                errResp("missing or wrong admin token"),
				"404":                errResp("not found"),
				"409":                errResp("conflicts with stored state"),
			},
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch r.Request {
		case "":
		case RequestBinary:
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/wasm": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}},
			}}
		case "document":
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"type": "object"}},
				"application/yaml": map[string]any{"schema": map[string]any{"type": "string"}},
			}}
		default:
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": ref(r.Request)}}}
		}
		item[strings.ToLower(r.Method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Portico admin API",
			"version":     "1",
			"description": "Manage APIs, stages, deployments, domains and tokens of a Portico origin. Every call needs Authorization: Bearer <admin token>.",
		},
		"security": []any{map[string]any{"adminToken": []any{}}},
		"paths":    paths,
		"components": map[string]any{
			"schemas":         schemas,
			"securitySchemes": map[string]any{"adminToken": map[string]any{"type": "http", "scheme": "bearer"}},
		},
	}
}

// AddSchema adds a named schema to the admin API's document.
func (s *Server) AddSchema(name string, schema map[string]any) {
	if s.extraSchemas == nil {
		s.extraSchemas = schemaSet{}
	}
	s.extraSchemas[name] = schema
}

func operationID(r Route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(r.Method))
	for _, seg := range strings.Split(r.Path, "/") {
		if seg == "" || seg == "v1" {
			continue
		}
		if strings.HasPrefix(seg, "{") {
			seg = "By" + strings.Trim(seg, "{}")
		}
		seg = strings.ReplaceAll(seg, "-", "")
		b.WriteString(strings.ToUpper(seg[:1]) + seg[1:])
	}
	return b.String()
}
