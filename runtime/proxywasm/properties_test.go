package proxywasm

import "testing"

func TestBuiltinProperty(t *testing.T) {
	for path, want := range map[string]bool{
		"plugin_name": true, "plugin_root_id": true, "request.path": true, "request.headers.x": true,
		"response.code": true, "source.address": true, "destination.port": true, "connection.mtls": true,
		"portico.principal": false, "plugin": false, "requests.x": false, "src.address": false,
		"": false, "r": false, "custom.request.x": false, "Request.path": false,
	} {
		if got := builtinProperty(path); got != want {
			t.Errorf("builtinProperty(%q) = %v, want %v", path, got, want)
		}
	}
}
