package importer

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

func TestAWSExportSupported(t *testing.T) {
	res := mustImport(t, readTestdata(t, "aws-export-supported.yaml"), Options{})
	if res.API.Name != "petstore-api-gateway-export" || res.API.Version != "2024-05-13T09:12:54Z" {
		t.Errorf("name %q version %q", res.API.Name, res.API.Version)
	}
	sec := func(d time.Duration) config.Duration { return config.Duration(d) }
	want := []config.Route{
		{
			Method: "GET", Path: "/health", OperationID: "Health", Pointer: "/paths/~1health/get",
			Integration: config.Integration{Type: config.IntegrationMock, Mock: &config.MockResponse{
				Status:  503,
				Headers: map[string]string{"Retry-After": "120", "Content-Type": "application/json"},
				Body:    `{"status": "maintenance"}`,
			}},
		},
		{
			Method: "GET", Path: "/pets", OperationID: "ListPets", Pointer: "/paths/~1pets/get",
			Integration: config.Integration{
				Type: config.IntegrationHTTP, Method: "GET",
				URI:     "http://${stageVariables.backend}/petstore/pets",
				Timeout: sec(10 * time.Second),
				Parameters: map[string]string{
					"query.page":      "request.query.page",
					"query.type":      "request.query.type",
					"header.X-Source": "'apigateway'",
					"header.X-Tenant": "stageVariables.tenant",
				},
				Responses: []config.IntegrationResponse{
					{Pattern: `4\d{2}`, Status: 400},
					{Status: 200, Headers: map[string]string{
						"Access-Control-Allow-Origin": "'*'",
						"X-Backend-Version":           "integration.response.header.X-Version",
					}},
				},
			},
			Policies:           []config.PolicySpec{{Type: "api-key", Config: []byte(`{"source":"header","name":"x-api-key"}`)}},
			CacheKeyParameters: []string{"method.request.querystring.page", "method.request.querystring.type"},
		},
		{
			Method: "OPTIONS", Path: "/pets", Pointer: "/paths/~1pets/options",
			Integration: config.Integration{Type: config.IntegrationMock, Mock: &config.MockResponse{
				Status: 200,
				Headers: map[string]string{
					"Access-Control-Allow-Methods": "POST,GET,OPTIONS",
					"Access-Control-Allow-Headers": "Content-Type,Authorization,X-Amz-Date,X-Api-Key,X-Amz-Security-Token",
					"Access-Control-Allow-Origin":  "*",
				},
			}},
		},
		{
			Method: "POST", Path: "/pets", OperationID: "CreatePet", Pointer: "/paths/~1pets/post",
			Integration: config.Integration{
				Type: config.IntegrationHTTPProxy, Method: "POST",
				URI:     "https://petstore-demo-endpoint.execute-api.com/petstore/pets",
				Timeout: sec(29 * time.Second),
			},
			Policies: []config.PolicySpec{{Type: "sigv4"}},
		},
		{
			Method: "GET", Path: "/pets/{petId}", OperationID: "GetPet", Pointer: "/paths/~1pets~1{petId}/get",
			Integration: config.Integration{
				Type: config.IntegrationHTTP, Method: "GET",
				URI:        "http://petstore-demo-endpoint.execute-api.com/petstore/pets/{id}",
				Timeout:    sec(29 * time.Second),
				Parameters: map[string]string{"path.id": "request.path.petId"},
				Responses:  []config.IntegrationResponse{{Status: 200}},
			},
			CacheKeyParameters: []string{"method.request.path.petId"},
		},
		{
			Method: "ANY", Path: "/{proxy+}", Pointer: "/paths/~1{proxy+}/x-amazon-apigateway-any-method",
			Integration: config.Integration{
				Type:       config.IntegrationHTTPProxy,
				URI:        "http://${stageVariables.backend}/{proxy}",
				Timeout:    sec(29 * time.Second),
				Parameters: map[string]string{"path.proxy": "request.path.proxy"},
			},
			CacheKeyParameters: []string{"method.request.path.proxy"},
		},
	}
	if len(res.API.Routes) != len(want) {
		t.Fatalf("got %d routes, want %d", len(res.API.Routes), len(want))
	}
	for i, w := range want {
		g := res.API.Routes[i]
		if !reflect.DeepEqual(g, w) {
			t.Errorf("route %d:\n got  %+v\n want %+v", i, g, w)
			if g.Integration.Mock != nil && w.Integration.Mock != nil {
				t.Errorf("mock: got %+v want %+v", *g.Integration.Mock, *w.Integration.Mock)
			}
		}
	}

	// With BasePath prepend, the server URL's path (its basePath variable's
	// default, /prod) goes in front of every route.
	res = mustImport(t, readTestdata(t, "aws-export-supported.yaml"), Options{BasePath: BasePathPrepend})
	var paths []string
	for _, r := range res.API.Routes {
		paths = append(paths, r.Method+" "+r.Path)
	}
	wantPaths := "GET /prod/health GET /prod/pets OPTIONS /prod/pets POST /prod/pets GET /prod/pets/{petId} ANY /prod/{proxy+}"
	if strings.Join(paths, " ") != wantPaths {
		t.Errorf("prepended paths: %s\nwant %s", strings.Join(paths, " "), wantPaths)
	}
}

// Every form Portico refuses is reported at the place it is written.
func TestAWSExportUnsupported(t *testing.T) {
	probs := mustFail(t, readTestdata(t, "aws-export-unsupported.yaml"), Options{})
	const i = "/x-amazon-apigateway-integration"
	wantProblems(t, probs, map[string]string{
		"/x-amazon-apigateway-gateway-responses":  "x-amazon-apigateway-gateway-responses is not supported",
		"/x-amazon-apigateway-request-validators": "x-amazon-apigateway-request-validators is not supported",
		"/x-amazon-apigateway-request-validator":  "Portico does not validate requests",
		"/x-amazon-apigateway-policy":             "IAM resource policies do not exist in Portico",
		"/x-amazon-apigateway-binary-media-types": "can be removed",
		"/x-amazon-apigateway-api-key-source":     "is not supported",

		"/paths/~1lambda-proxy/get" + i + "/type":                                                           `integration type "aws_proxy"`,
		"/paths/~1service/get" + i + "/type":                                                                `integration type "aws"`,
		"/paths/~1vpc/get" + i + "/connectionType":                                                          "Portico has no VPC links",
		"/paths/~1vpc/get" + i + "/connectionId":                                                            "names a VPC link",
		"/paths/~1credentials/get" + i + "/credentials":                                                     "IAM role",
		"/paths/~1request-template/post" + i + "/requestTemplates/application~1json":                        "VTL mapping templates are not supported",
		"/paths/~1response-template/get" + i + "/responses/default/responseTemplates/application~1json":     "VTL mapping templates are not supported",
		"/paths/~1mock-vtl-request/get" + i + "/requestTemplates/application~1json":                         "VTL mapping templates are not supported",
		"/paths/~1mock-vtl-response/get" + i + "/responses/default/responseTemplates/application~1json":     "a mock body must be static text",
		"/paths/~1passthrough-never/post" + i + "/passthroughBehavior":                                      "passthroughBehavior NEVER",
		"/paths/~1convert-to-binary/post" + i + "/contentHandling":                                          "CONVERT_TO_BINARY",
		"/paths/~1context-parameter/get" + i + "/requestParameters/integration.request.header.X-Request-Id": "$context variables are not supported",
		"/paths/~1multivalue-parameter/get" + i + "/requestParameters/integration.request.querystring.tag":  "multi-value parameters are not supported",
		"/paths/~1proxy-responses/get" + i + "/responses":                                                   "integration responses do not apply",
		"/paths/~1unknown-field/get" + i + "/integrationSubtype":                                            "is not a field of x-amazon-apigateway-integration",
		"/paths/~1insecure-tls/get" + i + "/tlsConfig/insecureSkipVerification":                             "always verifies backend certificates",
		"/paths/~1bad-cache-key/get" + i + "/cacheKeyParameters/0":                                          "must be method.request.querystring.NAME",
		"/paths/~1timeout/get" + i + "/timeoutInMillis":                                                     "out of range",
		"/paths/~1both/get": "both x-portico-integration and x-amazon-apigateway-integration",
		"/paths/~1validator/get/x-amazon-apigateway-request-validator":      "is not supported",
		"/paths/~1authorizer/get/security/0/lambda":                         "cannot enforce",
		"/paths/~1host-placeholder~1{tenant}/get" + i + "/uri":              "let clients choose the host",
		"/components/securitySchemes/lambda/x-amazon-apigateway-authtype":   `authtype "custom"`,
		"/components/securitySchemes/lambda/x-amazon-apigateway-authorizer": "Lambda and Cognito authorizers are not run by Portico",
	})
}

// Each integration form, one at a time, in a small document.
func TestAWSIntegrationForms(t *testing.T) {
	doc := func(integration string) []byte {
		return oas30(`paths:
  /items/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      ` + op + `
      x-amazon-apigateway-integration:
` + integration)
	}
	const at = "/paths/~1items~1{id}/get/x-amazon-apigateway-integration"
	t.Run("accepted", func(t *testing.T) {
		for name, tc := range map[string]struct {
			yaml string
			want config.Integration
		}{
			"uri placeholder filled from the same path parameter": {
				`        {type: http_proxy, httpMethod: GET, uri: "https://b.example/items/{id}"}`,
				config.Integration{Type: "http_proxy", Method: "GET", URI: "https://b.example/items/{id}", Timeout: config.Duration(29 * time.Second), Parameters: map[string]string{"path.id": "request.path.id"}},
			},
			"stage variable in the host and a query placeholder": {
				`        {type: http_proxy, uri: "https://${stageVariables.host}:8443/items?id={id}", timeoutInMillis: 50}`,
				config.Integration{Type: "http_proxy", URI: "https://${stageVariables.host}:8443/items?id={id}", Timeout: config.Duration(50 * time.Millisecond), Parameters: map[string]string{"path.id": "request.path.id"}},
			},
			"mock without request template answers its default response": {
				`        {type: mock, responses: {default: {statusCode: 204}}}`,
				config.Integration{Type: "mock", Mock: &config.MockResponse{Status: 204}},
			},
			"mock selects the pattern matching the template's status": {
				`        {type: mock, requestTemplates: {application/json: '{"statusCode": 404}'}, responses: {"2\\d{2}": {statusCode: "200"}, "404": {statusCode: "404", responseTemplates: {text/plain: "not here"}}, default: {statusCode: "500"}}}`,
				config.Integration{Type: "mock", Mock: &config.MockResponse{Status: 404, Headers: map[string]string{"Content-Type": "text/plain"}, Body: "not here"}},
			},
			"passthrough templates listed without a template": {
				`        {type: http, uri: "https://b.example/x", requestTemplates: {application/json: null}, responses: {default: {statusCode: "200", responseTemplates: {application/json: null}}}}`,
				config.Integration{Type: "http", URI: "https://b.example/x", Timeout: config.Duration(29 * time.Second), Responses: []config.IntegrationResponse{{Status: 200}}},
			},
		} {
			t.Run(name, func(t *testing.T) {
				res := mustImport(t, doc(tc.yaml), Options{})
				if got := res.API.Routes[0].Integration; !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got  %+v\nwant %+v", got, tc.want)
					if got.Mock != nil {
						t.Errorf("mock %+v", *got.Mock)
					}
				}
			})
		}
	})
	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			yaml, ptr, text string
		}{
			"no type":                          {`        {uri: "https://b.example/"}`, at, "has no type"},
			"unknown type":                     {`        {type: websocket}`, at + "/type", `integration type "websocket"`},
			"uri placeholder without source":   {`        {type: http_proxy, uri: "https://b.example/{other}"}`, at + "/uri", "neither a path parameter"},
			"mapping to a missing placeholder": {`        {type: http_proxy, uri: "https://b.example/x", requestParameters: {integration.request.path.id: method.request.path.id}}`, at + "/requestParameters/integration.request.path.id", "has no {id} placeholder"},
			"mapping from a path parameter the template lacks": {`        {type: http_proxy, uri: "https://b.example/{x}", requestParameters: {integration.request.path.x: method.request.path.nope}}`, at + "/requestParameters/integration.request.path.x", "has no {nope}"},
			"body mapping source":                              {`        {type: http, uri: "https://b.example/", requestParameters: {integration.request.header.X: method.request.body.name}}`, at + "/requestParameters/integration.request.header.X", "request body"},
			"unsupported mapping target":                       {`        {type: http, uri: "https://b.example/", requestParameters: {integration.request.multivaluequerystring.x: "'a'"}}`, at + "/requestParameters/integration.request.multivaluequerystring.x", "mapping target"},
			"framing header":                                   {`        {type: http, uri: "https://b.example/", requestParameters: {integration.request.header.Content-Length: "'0'"}}`, at + "/requestParameters/integration.request.header.Content-Length", "frames the HTTP message"},
			"mock template that is not a status":               {`        {type: mock, requestTemplates: {application/json: '{"status": 200}'}, responses: {default: {statusCode: "200"}}}`, at + "/requestTemplates/application~1json", `must be {"statusCode": N}`},
			"mock templates selecting different statuses":      {`        {type: mock, requestTemplates: {application/json: '{"statusCode": 200}', application/xml: '{"statusCode": 201}'}, responses: {default: {statusCode: "200"}}}`, at + "/requestTemplates/application~1xml", "different status codes"},
			"mock without responses":                           {`        {type: mock, requestTemplates: {application/json: '{"statusCode": 200}'}}`, at, "needs responses"},
			"mock with no matching response":                   {`        {type: mock, requestTemplates: {application/json: '{"statusCode": 418}'}, responses: {"2\\d{2}": {statusCode: "200"}}}`, at + "/responses", "no integration response matches status 418"},
			"mock header from the backend":                     {`        {type: mock, responses: {default: {statusCode: "200", responseParameters: {method.response.header.X: integration.response.header.Y}}}}`, at + "/responses/default/responseParameters/method.response.header.X", "'quoted literal'"},
			"mock with two bodies":                             {`        {type: mock, responses: {default: {statusCode: "200", responseTemplates: {application/json: "{}", text/html: "<p/>"}}}}`, at + "/responses/default/responseTemplates/text~1html", "keep one response template"},
			"mock with uri":                                    {`        {type: mock, uri: "https://b.example/", responses: {default: {statusCode: "200"}}}`, at + "/uri", "no backend"},
			"http response without status":                     {`        {type: http, uri: "https://b.example/", responses: {default: {responseParameters: {}}}}`, at + "/responses/default", "needs a statusCode"},
			"bad selection pattern":                            {`        {type: http, uri: "https://b.example/", responses: {"(": {statusCode: "500"}}}`, at + "/responses/(", "not a regular expression"},
			"response body mapping":                            {`        {type: http, uri: "https://b.example/", responses: {default: {statusCode: "200", responseParameters: {method.response.header.X: integration.response.body.x}}}}`, at + "/responses/default/responseParameters/method.response.header.X", "integration.response.header.NAME only"},
			"non-header response parameter":                    {`        {type: http, uri: "https://b.example/", responses: {default: {statusCode: "200", responseParameters: {method.response.body: "'x'"}}}}`, at + "/responses/default/responseParameters/method.response.body", "method.response.header.NAME"},
			"credentials in uri":                               {`        {type: http_proxy, uri: "https://user:pw@b.example/"}`, at + "/uri", "credentials"},
			"not http":                                         {`        {type: http_proxy, uri: "ftp://b.example/"}`, at + "/uri", "http:// or https://"},
			"bad stage variable":                               {`        {type: http_proxy, uri: "https://${stageVariables.bad-name}/"}`, at + "/uri", "not a stage variable reference"},
			"other ${} variable":                               {`        {type: http_proxy, uri: "https://${context.domainName}/"}`, at + "/uri", "not a stage variable reference"},
			"cache key for a missing path parameter":           {`        {type: http_proxy, uri: "https://b.example/", cacheKeyParameters: [method.request.path.nope]}`, at + "/cacheKeyParameters/0", `names path parameter "nope"`},
			"duplicate cache key":                              {`        {type: http_proxy, uri: "https://b.example/", cacheKeyParameters: [method.request.header.Accept, method.request.header.Accept]}`, at + "/cacheKeyParameters/1", "listed twice"},
			"server name to verify":                            {`        {type: http_proxy, uri: "https://b.example/", tlsConfig: {serverNameToVerify: other.example}}`, at + "/tlsConfig/serverNameToVerify", "not supported"},
		} {
			t.Run(name, func(t *testing.T) {
				wantProblems(t, mustFail(t, doc(tc.yaml), Options{}), map[string]string{tc.ptr: tc.text})
			})
		}
	})
}

// API Gateway's default export format is Swagger 2.0, with the stage as
// basePath.
func TestAWSExportSwagger(t *testing.T) {
	doc := []byte(`{
  "swagger": "2.0",
  "info": {"version": "2024-05-13T09:12:54Z", "title": "PetStore"},
  "host": "abcd123456.execute-api.eu-west-1.amazonaws.com",
  "basePath": "/prod",
  "schemes": ["https"],
  "paths": {
    "/pets/{petId}": {
      "get": {
        "produces": ["application/json"],
        "parameters": [{"name": "petId", "in": "path", "required": true, "type": "string"}],
        "responses": {"200": {"description": "200 response"}},
        "security": [{"api_key": []}],
        "x-amazon-apigateway-integration": {
          "type": "http", "httpMethod": "GET",
          "uri": "http://petstore-demo-endpoint.execute-api.com/petstore/pets/{petId}",
          "requestParameters": {"integration.request.path.petId": "method.request.path.petId"},
          "responses": {"default": {"statusCode": "200"}},
          "passthroughBehavior": "when_no_match"
        }
      }
    }
  },
  "securityDefinitions": {"api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}
}`)
	res := mustImport(t, doc, Options{BasePath: BasePathPrepend})
	want := config.Route{
		Method: "GET", Path: "/prod/pets/{petId}", Pointer: "/paths/~1pets~1{petId}/get",
		Integration: config.Integration{
			Type: config.IntegrationHTTP, Method: "GET",
			URI:        "http://petstore-demo-endpoint.execute-api.com/petstore/pets/{petId}",
			Timeout:    config.Duration(29 * time.Second),
			Parameters: map[string]string{"path.petId": "request.path.petId"},
			Responses:  []config.IntegrationResponse{{Status: 200}},
		},
		Policies: []config.PolicySpec{{Type: "api-key", Config: []byte(`{"source":"header","name":"x-api-key"}`)}},
	}
	if res.Format != FormatSwagger20 || len(res.API.Routes) != 1 || !reflect.DeepEqual(res.API.Routes[0], want) {
		t.Errorf("got %s %+v\nwant %+v", res.Format, res.API.Routes, want)
	}
}
