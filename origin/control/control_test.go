package control

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/importer"
	"github.com/portico-edge/portico/origin/store"
)

const petsDoc = `openapi: 3.0.3
info: {title: Pets, version: "1"}
paths:
  /pets:
    get:
      x-portico-integration: {type: http_proxy, uri: "http://${stageVariables.backend}/pets"}
      responses: {"200": {description: ok}}
  /v:
    get:
      x-portico-integration: {type: mock, status: 200, body: "VERSION"}
      responses: {"200": {description: ok}}
`

func doc(version string) []byte { return []byte(strings.Replace(petsDoc, "VERSION", version, 1)) }

func realImporter(ctx context.Context, d []byte, o ImportOptions) (*config.API, error) {
	res, err := importer.Import(ctx, d, importer.Options{Name: o.Name, IgnoreSecurity: o.IgnoreSecurity, DefaultBackend: o.DefaultBackend, BasePath: o.BasePath})
	if err != nil {
		return nil, err
	}
	return &res.API, nil
}

func newControl(t *testing.T) (*Control, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := New(context.Background(), Options{Store: st, Importer: realImporter})
	if err != nil {
		t.Fatal(err)
	}
	return c, st
}

func TestImportDeployRollback(t *testing.T) {
	ctx := context.Background()
	c, _ := newControl(t)
	v0 := c.Snapshot().Version
	res, err := c.ImportAPI(ctx, doc("one"), ImportOptions{Name: "pets"}, false)
	if err != nil || !res.Created {
		t.Fatalf("import: %v %+v", err, res)
	}
	if _, err := c.ImportAPI(ctx, doc("one"), ImportOptions{Name: "pets"}, false); KindOf(err) != Conflict {
		t.Errorf("second import without overwrite: %v", err)
	}
	again, err := c.ImportAPI(ctx, doc("one"), ImportOptions{Name: "pets"}, true)
	if err != nil || !again.Unchanged {
		t.Errorf("re-import of the same document: %v %+v", err, again)
	}
	// A stage without the variable its routes need cannot be deployed.
	if _, _, err := c.PutStage(ctx, "pets", "prod", StageInput{}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Deploy(ctx, "pets", "prod", "")
	if KindOf(err) != Invalid || !strings.Contains(err.Error(), `stage variable "backend"`) {
		t.Fatalf("deploy without variable: %v", err)
	}
	if c.Snapshot().Version != v0 && len(c.Snapshot().Deployments) != 0 {
		t.Error("a refused deploy changed the snapshot's deployments")
	}
	if _, _, err := c.PutStage(ctx, "pets", "prod", StageInput{Variables: map[string]string{"backend": "127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	d1, err := c.Deploy(ctx, "pets", "prod", "first")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportAPI(ctx, doc("two"), ImportOptions{Name: "pets"}, true); err != nil {
		t.Fatal(err)
	}
	// The import alone does not change what is served.
	if body := mockBody(c.Snapshot(), d1.ID); body != "one" {
		t.Errorf("served %q before deploying", body)
	}
	d2, err := c.Deploy(ctx, "pets", "prod", "second")
	if err != nil {
		t.Fatal(err)
	}
	snap := c.Snapshot()
	if snap.Deployment(d1.ID) != nil || mockBody(snap, d2.ID) != "two" {
		t.Error("after deploy, the snapshot should hold only the new deployment")
	}
	st, err := c.Rollback(ctx, "pets", "prod", "")
	if err != nil || st.DeploymentID != d1.ID {
		t.Fatalf("rollback: %v %+v", err, st)
	}
	if _, err := c.Rollback(ctx, "pets", "prod", "d-nope"); KindOf(err) != NotFound {
		t.Errorf("rollback to a missing deployment: %v", err)
	}
	list, err := c.Deployments(ctx, "pets")
	if err != nil || len(list) != 2 || list[0].ID != d2.ID || len(list[1].Stages) != 1 {
		t.Errorf("deployments: %v %+v", err, list)
	}
}

func mockBody(s *config.Snapshot, depID string) string {
	d := s.Deployment(depID)
	if d == nil {
		return ""
	}
	for _, r := range d.API.Routes {
		if r.Path == "/v" {
			return r.Integration.Mock.Body
		}
	}
	return ""
}

func TestDomainsAndDeletionGuards(t *testing.T) {
	ctx := context.Background()
	c, _ := newControl(t)
	if _, err := c.ImportAPI(ctx, doc("one"), ImportOptions{Name: "pets"}, false); err != nil {
		t.Fatal(err)
	}
	c.PutStage(ctx, "pets", "prod", StageInput{Variables: map[string]string{"backend": "h:1"}})
	if _, _, err := c.PutDomain(ctx, "API.example.com", DomainInput{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutMapping(ctx, "api.example.com", "v1", "pets", "prod"); KindOf(err) != Conflict {
		t.Errorf("mapping an undeployed stage: %v", err)
	}
	if _, err := c.Deploy(ctx, "pets", "prod", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutMapping(ctx, "api.example.com", "/v1/", "pets", "prod"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAPI(ctx, "pets"); KindOf(err) != Conflict || !strings.Contains(err.Error(), "api.example.com/v1") {
		t.Errorf("delete a mapped API: %v", err)
	}
	if err := c.DeleteStage(ctx, "pets", "prod"); KindOf(err) != Conflict {
		t.Errorf("delete a mapped stage: %v", err)
	}
	if _, _, err := c.PutDomain(ctx, "x.example.com", DomainInput{EndpointType: config.EndpointPrivate}); KindOf(err) != Invalid {
		t.Errorf("private without networks: %v", err)
	}
	if err := c.DeleteMapping(ctx, "api.example.com", "v1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAPI(ctx, "pets"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.API(ctx, "pets"); KindOf(err) != NotFound {
		t.Errorf("deleted API still found: %v", err)
	}
	if len(c.Snapshot().Deployments) != 0 {
		t.Error("deleted API's deployment still in the snapshot")
	}
}

func TestWaitWakesOnChange(t *testing.T) {
	ctx := context.Background()
	c, _ := newControl(t)
	v := c.Snapshot().Version
	var wg sync.WaitGroup
	var got *config.Snapshot
	wg.Add(1)
	go func() {
		defer wg.Done()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got = c.Wait(wctx, v)
	}()
	time.Sleep(20 * time.Millisecond)
	if _, _, err := c.PutDomain(ctx, "a.example.com", DomainInput{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got == nil || got.Version == v {
		t.Fatal("Wait did not return the new snapshot")
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if c.Wait(wctx, got.Version) != nil {
		t.Error("Wait returned without a change")
	}
}

func TestApplyIsAtomic(t *testing.T) {
	ctx := context.Background()
	c, st := newControl(t)
	good := `portico: v1
apis:
  - name: pets
    openapi: pets.yaml
    stages: [{name: prod, variables: {backend: "h:1"}}]
domains:
  - name: a.example.com
    mappings: [{basePath: v1, api: pets, stage: prod}]
`
	f, err := config.ParseFile("p.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.Apply(ctx, f, Documents{"pets.yaml": doc("one")})
	if err != nil || len(rep.Deployed) != 1 {
		t.Fatalf("apply: %v %+v", err, rep)
	}
	// Applying the same again deploys nothing.
	rep, err = c.Apply(ctx, f, Documents{"pets.yaml": doc("one")})
	if err != nil || len(rep.Deployed) != 0 || len(rep.Imported) != 0 {
		t.Errorf("idempotent apply: %v %+v", err, rep)
	}
	before := c.Snapshot().Version
	// The second API's stage is missing a variable: nothing may change,
	// not even the first API's new document.
	bad := good + `  - name: b.example.com
    mappings: [{basePath: v1, api: other, stage: prod}]
`
	bad = strings.Replace(bad, "domains:", `  - name: other
    openapi: other.yaml
    stages: [{name: prod}]
domains:`, 1)
	f2, err := config.ParseFile("p.yaml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Apply(ctx, f2, Documents{"pets.yaml": doc("two"), "other.yaml": doc("x")})
	if err == nil {
		t.Fatal("apply with an undeployable API succeeded")
	}
	if c.Snapshot().Version != before {
		t.Error("a failed apply changed the snapshot")
	}
	var apis []config.API
	st.View(ctx, func(tx *store.Tx) error {
		apis, err = store.List[config.API](tx, store.BucketAPIs, "")
		return err
	})
	if len(apis) != 1 {
		t.Errorf("a failed apply left %d APIs", len(apis))
	}
	if body := mockBody(c.Snapshot(), c.Snapshot().Deployments[0].ID); body != "one" {
		t.Errorf("served %q after a failed apply", body)
	}
}

func TestErrorKinds(t *testing.T) {
	ctx := context.Background()
	c, _ := newControl(t)
	if _, err := c.API(ctx, "nope"); KindOf(err) != NotFound {
		t.Error(err)
	}
	if _, err := c.ImportAPI(ctx, []byte("not: an openapi document"), ImportOptions{Name: "x"}, false); KindOf(err) != Invalid {
		t.Error(err)
	}
	if _, err := c.ImportAPI(ctx, doc("one"), ImportOptions{Name: "bad name"}, false); KindOf(err) != Invalid {
		t.Error(err)
	}
	var e *Error
	if err := c.DeleteDomain(ctx, "none.example.com"); !errors.As(err, &e) || e.Kind != NotFound {
		t.Error(err)
	}
}
