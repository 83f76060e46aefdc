package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/modules"
	"github.com/portico-edge/portico/test/requiretool"
)

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// testCtlPlugins runs the plugins commands against the origin of
// TestCtlCommands: upload (refusals too), list, get, attach to an API and a
// stage, deploy, refusal at deploy, and delete.
func testCtlPlugins(t *testing.T, to *testOrigin, dir, shopDoc string) {
	allow := filepath.Join("testdata", "plugins", "allow.wasm")
	refuse := filepath.Join("testdata", "plugins", "refuse.wasm")
	allowDigest, refuseDigest := fileDigest(t, allow), fileDigest(t, refuse)

	// A fresh API with a stage to attach to.
	to.ok(t, "apis", "import", shopDoc, "--name", "plugged")
	to.ok(t, "stages", "put", "plugged", "dev", "--var", "backend=127.0.0.1:9")

	t.Run("upload", func(t *testing.T) {
		out := to.ok(t, "plugins", "upload", allow)
		wantContains(t, out, "Uploaded module "+allowDigest+" (235 bytes) from allow.wasm.", "portico ctl plugins attach --api API")
		out = to.ok(t, "plugins", "upload", allow)
		wantContains(t, out, "Module "+allowDigest+" (235 bytes) was already uploaded on ")
		var info modules.Info
		to.json(t, &info, "plugins", "upload", allow)
		if info.Digest != allowDigest || info.Size != 235 || info.Name != "allow.wasm" || info.UploadedAt.IsZero() {
			t.Errorf("plugins upload -o json: %+v", info)
		}

		// Refusals carry the check's reason.
		_, _, err := to.run("plugins", "upload", filepath.Join("testdata", "plugins", "notproxy.wasm"))
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(err.Error(), "the module cannot be used as a plugin: module exports no proxy_abi_version_0_2_1") {
			t.Errorf("a module that is not proxy-wasm: %v", err)
		}
		text := writeFile(t, dir, "plugin.wat", "(module)")
		_, _, err = to.run("plugins", "upload", text)
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(err.Error(), "not a WebAssembly binary module") {
			t.Errorf("a text file: %v", err)
		}
		broken := writeFile(t, dir, "broken.wasm", "\x00asm\x01\x00\x00\x00\x01\xff\xff")
		_, _, err = to.run("plugins", "upload", broken)
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(err.Error(), "the module cannot be used as a plugin:") {
			t.Errorf("a damaged module: %v", err)
		}
		empty := writeFile(t, dir, "empty.wasm", "")
		if _, _, err = to.run("plugins", "upload", empty); err == nil || !strings.Contains(err.Error(), "the module is empty") {
			t.Errorf("an empty file: %v", err)
		}
	})

	t.Run("list and get", func(t *testing.T) {
		out := to.ok(t, "plugins", "list")
		wantRow(t, out, "DIGEST", "BYTES", "NAME", "UPLOADED", "USED BY")
		if !regexp.MustCompile(`(?m)^` + allowDigest + `\s+235\s+allow\.wasm\s+\S+Z\s+unused$`).MatchString(out) {
			t.Errorf("plugins list:\n%s", out)
		}
		if strings.Contains(out, "notproxy") {
			t.Errorf("a refused module was stored:\n%s", out)
		}
		out = to.ok(t, "plugins", "get", allowDigest)
		wantRow(t, out, "Digest:", allowDigest)
		wantRow(t, out, "Used by:", "unused")
		// The bare hex digest is accepted too.
		to.ok(t, "plugins", "get", strings.TrimPrefix(allowDigest, "sha256:"))
	})

	var deployed string
	t.Run("attach", func(t *testing.T) {
		out := to.ok(t, "plugins", "attach", "--api", "plugged", "--type", "wasm-authorizer", "--module", allowDigest, "--config", `{"config": "x", "instances": 1}`)
		wantContains(t, out, "Attached a wasm-authorizer policy with module "+allowDigest+" on API plugged; it takes effect at the API's next deployment: portico ctl deploy plugged STAGE")
		wantRow(t, out, "wasm-authorizer", `{"config":"x","instances":1,"module":"`+allowDigest+`"}`)
		out = to.ok(t, "plugins", "attach", "--api", "plugged", "--type", "wasm-authorizer", "--module", allowDigest, "--config", `{"config": "y", "instances": 1}`)
		wantContains(t, out, "Replaced the wasm-authorizer policy")
		var a config.API
		to.json(t, &a, "apis", "get", "plugged")
		if len(a.Policies) != 1 || !strings.Contains(compactJSON(a.Policies[0].Config), `"config":"y"`) {
			t.Errorf("attaching the same module again should replace its policy: %+v", a.Policies)
		}

		// --deploy on an API without a deployed stage says what to do.
		_, _, err := to.run("plugins", "attach", "--api", "plugged", "--type", "wasm-authorizer", "--module", allowDigest, "--deploy")
		if err == nil || !strings.Contains(err.Error(), "API plugged has no deployed stage to deploy to") {
			t.Errorf("--deploy without a deployed stage: %v", err)
		}

		// A stage policy from a YAML file, on a stage not yet deployed.
		cfg := writeFile(t, dir, "transform.yaml", "instances: 1\nfailurePolicy: open\n")
		out = to.ok(t, "plugins", "attach", "--api", "plugged", "--stage", "dev", "--type", "wasm-transform", "--module", allowDigest, "--config", "@"+cfg)
		wantContains(t, out, "Attached a wasm-transform policy with module "+allowDigest+" on stage dev of API plugged.", "The stage serves nothing until it is deployed: portico ctl deploy plugged dev")
		var st config.Stage
		to.json(t, &st, "stages", "get", "plugged", "dev")
		if st.Variables["backend"] != "127.0.0.1:9" || len(st.Policies) != 1 || st.Policies[0].Type != "wasm-transform" {
			t.Errorf("attaching to a stage must keep its variables and add the policy: %+v", st)
		}

		// Deploying starts the plugin on the origin with its config.
		out = to.ok(t, "deploy", "plugged", "dev")
		deployed = deploymentID.FindStringSubmatch(out)[1]
		mark := to.mark()
		out = to.ok(t, "plugins", "attach", "--api", "plugged", "--type", "wasm-authorizer", "--module", allowDigest, "--config", `{"config": "z"}`, "--deploy")
		wantContains(t, out, "Replaced the wasm-authorizer policy with module "+allowDigest+" on API plugged.", "Deployed API plugged to stage dev: deployment d")
		calls := to.callsSince(mark)
		want := []string{"GET /v1/apis/plugged", "PUT /v1/apis/plugged/policies", "GET /v1/apis/plugged/stages", "POST /v1/apis/plugged/stages/dev/deployments"}
		if strings.Join(calls, "\n") != strings.Join(want, "\n") {
			t.Errorf("attach --deploy made %q, want %q", calls, want)
		}
		out = to.ok(t, "plugins", "attach", "--api", "plugged", "--stage", "dev", "--type", "wasm-transform", "--module", allowDigest, "--config", `{"instances": 2}`)
		wantContains(t, out, "Replaced the wasm-transform policy", "It runs on the stage's deployment d")
		// Admission started each plugin and stopped it again: the origin
		// (which serves no regional endpoint here) runs none.
		if n := to.n.WASM.Plugins(); n != 0 {
			t.Errorf("admission left %d plugins running on the origin", n)
		}
	})

	t.Run("refused at deploy", func(t *testing.T) {
		to.ok(t, "plugins", "upload", refuse)
		before := to.ok(t, "stages", "get", "plugged", "dev", "-o", "json")
		_, _, err := to.run("plugins", "attach", "--api", "plugged", "--stage", "dev", "--type", "wasm-authorizer", "--module", refuseDigest)
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest ||
			!strings.Contains(err.Error(), `cannot be deployed to stage "dev"`) ||
			!strings.Contains(err.Error(), "module "+refuseDigest+": plugin start-up failed in proxy_on_configure: the plugin refused its configuration (returned false)") {
			t.Errorf("a plugin refusing its configuration: %v", err)
		}
		if after := to.ok(t, "stages", "get", "plugged", "dev", "-o", "json"); after != before {
			t.Errorf("a refused stage change was saved:\n%s", after)
		}
		// A module that was never uploaded.
		missing := "sha256:" + strings.Repeat("ab", 32)
		_, _, err = to.run("plugins", "attach", "--api", "plugged", "--stage", "dev", "--type", "wasm-authorizer", "--module", missing)
		if err == nil || !strings.Contains(err.Error(), "no module "+missing+" is uploaded to this origin; upload the module file with `portico ctl plugins upload FILE`") {
			t.Errorf("a module that is not uploaded: %v", err)
		}
	})

	t.Run("usage and delete", func(t *testing.T) {
		out := to.ok(t, "plugins", "list")
		if !regexp.MustCompile(`(?m)^` + allowDigest + `\s+235\s+allow\.wasm\s+\S+Z\s+2 deployments, 1 stage, 1 API$`).MatchString(out) {
			t.Errorf("plugins list after attaching:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^` + refuseDigest + `\s+156\s+refuse\.wasm\s+\S+Z\s+unused$`).MatchString(out) {
			t.Errorf("plugins list: the refused attachment left a use:\n%s", out)
		}
		out = to.ok(t, "plugins", "get", allowDigest)
		wantRow(t, out, "DEPLOYMENT", "API", "SERVING STAGES")
		wantRow(t, out, deployed, "plugged", "-")
		wantRow(t, out, "stage", "plugged/dev")
		wantRow(t, out, "API", "plugged")
		var info modules.Info
		to.json(t, &info, "plugins", "get", allowDigest)
		if info.UsedBy == nil || len(info.UsedBy.Deployments) != 2 || len(info.UsedBy.Stages) != 1 || len(info.UsedBy.APIs) != 1 {
			t.Errorf("plugins get -o json: %+v", info.UsedBy)
		}

		_, _, err := to.run("plugins", "delete", allowDigest)
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(err.Error(), "module "+allowDigest+" is in use by deployment ") ||
			!strings.Contains(err.Error(), "deployment "+deployed+" of API plugged") || !strings.Contains(err.Error(), "the policies of stage plugged/dev, the policies of API plugged") {
			t.Errorf("deleting a module in use: %v", err)
		}
		wantContains(t, to.ok(t, "plugins", "delete", refuseDigest), "Deleted module "+refuseDigest+".")
		_, _, err = to.run("plugins", "get", refuseDigest)
		if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			t.Errorf("a deleted module: %v", err)
		}
		if out := to.ok(t, "plugins", "upload", refuse, "-o", "json"); !strings.Contains(out, refuseDigest) {
			t.Errorf("uploading again after a delete: %s", out)
		}
		if out := to.ok(t, "plugins", "delete", refuseDigest, "-o", "json"); out != "" {
			t.Errorf("plugins delete -o json printed %q", out)
		}
		// Deleting the API removes its deployments, and the module is free.
		to.ok(t, "apis", "delete", "plugged")
		wantContains(t, to.ok(t, "plugins", "delete", allowDigest), "Deleted module "+allowDigest+".")
	})

	t.Run("usage mistakes", func(t *testing.T) {
		mark := to.mark()
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"plugins", "attach", "--api", "a", "--type", "jwt", "--module", allowDigest}, `--type "jwt": use wasm-authorizer or wasm-transform`},
			{[]string{"plugins", "attach", "--api", "a", "--type", "wasm-authorizer", "--module", "abc"}, `--module: "abc" is not a module digest`},
			{[]string{"plugins", "attach", "--api", "a", "--type", "wasm-authorizer", "--module", allowDigest, "--config", "[1]"}, "--config must be the policy's config as a JSON object"},
			{[]string{"plugins", "attach", "--api", "a", "--type", "wasm-authorizer", "--module", allowDigest, "--config", `{"module": "sha256:00"}`}, "leave module out of --config"},
			{[]string{"plugins", "attach", "--type", "wasm-authorizer", "--module", allowDigest}, "--api API is required"},
			{[]string{"plugins", "get", "sha256:XYZ"}, "is not a module digest"},
			{[]string{"plugins", "upload"}, "missing FILE"},
		} {
			_, _, err := to.run(tc.args...)
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q: %v (exit %d), want usage error with %q", tc.args, err, exitCode(err), tc.want)
			}
		}
		if calls := to.callsSince(mark); len(calls) > 0 {
			t.Errorf("usage mistakes reached the admin API: %q", calls)
		}
	})
}

// TestCtlTestdataModules checks that the committed test modules are what
// their WebAssembly text builds to.
func TestCtlTestdataModules(t *testing.T) {
	wat2wasm := requiretool.Path(t, "wat2wasm", "apt-get install -y wabt")
	for _, name := range []string{"allow", "refuse", "notproxy"} {
		src := filepath.Join("testdata", "plugins", name+".wat")
		out := filepath.Join(t.TempDir(), name+".wasm")
		if b, err := exec.Command(wat2wasm, src, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", src, err, b)
		}
		built, _ := os.ReadFile(out)
		committed, _ := os.ReadFile(filepath.Join("testdata", "plugins", name+".wasm"))
		if !bytes.Equal(built, committed) {
			t.Errorf("testdata/plugins/%s.wasm is not what %s.wat builds to; run: wat2wasm %s -o %s.wasm", name, name, src, filepath.Join("testdata", "plugins", name))
		}
	}
}
