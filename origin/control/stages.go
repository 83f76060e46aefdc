package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/store"
	"github.com/portico-edge/portico/plugins"
)

// StageInput is what a caller sets on a stage.
type StageInput struct {
	Description string              `json:"description,omitempty"`
	Variables   map[string]string   `json:"variables,omitempty"`
	Policies    []config.PolicySpec `json:"policies,omitempty"`
}

// PutStage creates a stage or replaces its settings. The stage keeps its
// deployment; changing variables that the deployed routes use takes effect
// at once (as in API Gateway), so a variable they need cannot be removed.
func (c *Control) PutStage(ctx context.Context, apiRef, name string, in StageInput) (*config.Stage, bool, error) {
	var out *config.Stage
	var created bool
	err := c.update(ctx, func(tx *store.Tx) error {
		var err error
		out, created, err = c.putStageTx(ctx, tx, apiRef, name, in)
		return err
	})
	return out, created, err
}

func (c *Control) putStageTx(ctx context.Context, tx *store.Tx, apiRef, name string, in StageInput) (*config.Stage, bool, error) {
	if err := config.CheckStageName(name); err != nil {
		return nil, false, &Error{Kind: Invalid, Msg: err.Error()}
	}
	for k, v := range in.Variables {
		if err := config.CheckStageVariable(k, v); err != nil {
			return nil, false, &Error{Kind: Invalid, Msg: err.Error()}
		}
	}
	if err := checkPolicySpecs(in.Policies); err != nil {
		return nil, false, err
	}
	api, err := resolveAPI(tx, apiRef)
	if err != nil {
		return nil, false, err
	}
	now := c.now().UTC()
	st, err := getStage(tx, api, name)
	created := false
	switch {
	case KindOf(err) == NotFound:
		st = &config.Stage{APIID: api.ID, Name: name, CreatedAt: now}
		created = true
	case err != nil:
		return nil, false, err
	}
	st.Description, st.Variables, st.Policies, st.UpdatedAt = in.Description, in.Variables, in.Policies, now
	if st.DeploymentID != "" {
		var d config.Deployment
		if err := tx.GetJSON(store.BucketDeployments, st.DeploymentID, &d); err != nil {
			return nil, false, err
		}
		if err := c.admit(ctx, &d, st); err != nil {
			return nil, false, err
		}
	}
	if err := tx.PutJSON(store.BucketStages, store.StageKey(api.ID, name), st); err != nil {
		return nil, false, err
	}
	return st, created, nil
}

// Stages lists the stages of an API.
func (c *Control) Stages(ctx context.Context, apiRef string) ([]config.Stage, error) {
	var out []config.Stage
	err := c.store.View(ctx, func(tx *store.Tx) error {
		api, err := resolveAPI(tx, apiRef)
		if err != nil {
			return err
		}
		out, err = store.List[config.Stage](tx, store.BucketStages, api.ID+"/")
		return err
	})
	return out, err
}

// Stage returns one stage.
func (c *Control) Stage(ctx context.Context, apiRef, name string) (*config.Stage, error) {
	var out *config.Stage
	err := c.store.View(ctx, func(tx *store.Tx) error {
		api, err := resolveAPI(tx, apiRef)
		if err != nil {
			return err
		}
		out, err = getStage(tx, api, name)
		return err
	})
	return out, err
}

// DeleteStage deletes a stage that no domain maps. Its deployments stay,
// listed under the API, until the API is deleted.
func (c *Control) DeleteStage(ctx context.Context, apiRef, name string) error {
	return c.update(ctx, func(tx *store.Tx) error {
		api, err := resolveAPI(tx, apiRef)
		if err != nil {
			return err
		}
		if _, err := getStage(tx, api, name); err != nil {
			return err
		}
		if uses, err := mappingsOf(tx, api.ID, name); err != nil {
			return err
		} else if len(uses) > 0 {
			return errorf(Conflict, "stage %q of API %q is still mapped on %s; delete those base path mappings first", name, api.Name, strings.Join(uses, ", "))
		}
		if plans, err := plansCovering(tx, api.ID, name); err != nil {
			return err
		} else if len(plans) > 0 {
			return errorf(Conflict, "stage %q of API %q is covered by usage plan(s) %s; remove it from those plans first", name, api.Name, strings.Join(plans, ", "))
		}
		if err := tx.Delete(store.BucketStageHistory, store.StageKey(api.ID, name)); err != nil {
			return err
		}
		return tx.Delete(store.BucketStages, store.StageKey(api.ID, name))
	})
}

func mappingsOf(tx *store.Tx, apiID, stage string) ([]string, error) {
	domains, err := store.List[config.Domain](tx, store.BucketDomains, "")
	if err != nil {
		return nil, err
	}
	var uses []string
	for _, d := range domains {
		for _, m := range d.Mappings {
			if m.APIID == apiID && (stage == "" || m.Stage == stage) {
				bp := m.BasePath
				if bp == "" {
					bp = "(none)"
				}
				uses = append(uses, d.Name+"/"+bp)
			}
		}
	}
	return uses, nil
}

// Deploy freezes the API's current routes and policies into a new
// deployment and points the stage at it. Everything an edge would check is
// checked here first: every route has a valid integration, every stage
// variable the integrations use is set, and every policy builds.
func (c *Control) Deploy(ctx context.Context, apiRef, stage, description string) (*config.Deployment, error) {
	var out *config.Deployment
	err := c.update(ctx, func(tx *store.Tx) error {
		var err error
		out, err = c.deployTx(ctx, tx, apiRef, stage, description)
		return err
	})
	return out, err
}

func (c *Control) deployTx(ctx context.Context, tx *store.Tx, apiRef, stageName, description string) (*config.Deployment, error) {
	api, err := resolveAPI(tx, apiRef)
	if err != nil {
		return nil, err
	}
	st, err := getStage(tx, api, stageName)
	if err != nil {
		return nil, err
	}
	d := &config.Deployment{ID: store.NewID("d"), APIID: api.ID, Description: description, CreatedAt: c.now().UTC(), API: *api}
	if err := c.admit(ctx, d, st); err != nil {
		return nil, err
	}
	if err := tx.PutJSON(store.BucketDeployments, d.ID, d); err != nil {
		return nil, err
	}
	return d, c.pointStage(tx, st, d.ID)
}

func (c *Control) pointStage(tx *store.Tx, st *config.Stage, depID string) error {
	key := store.StageKey(st.APIID, st.Name)
	var hist []string
	if err := tx.GetJSON(store.BucketStageHistory, key, &hist); err != nil && !isNotFound(err) {
		return err
	}
	hist = append(hist, depID)
	if len(hist) > 100 {
		hist = hist[len(hist)-100:]
	}
	if err := tx.PutJSON(store.BucketStageHistory, key, hist); err != nil {
		return err
	}
	st.DeploymentID = depID
	st.UpdatedAt = c.now().UTC()
	return tx.PutJSON(store.BucketStages, key, st)
}

// admit checks that a deployment can be served on a stage.
func (c *Control) admit(ctx context.Context, d *config.Deployment, st *config.Stage) error {
	var problems []string
	for i := range d.API.Routes {
		r := &d.API.Routes[i]
		where := r.Key()
		if r.Pointer != "" {
			where += " (" + r.Pointer + ")"
		}
		if err := r.Integration.Validate(config.PathParams(r.Path)); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		for _, v := range r.Integration.StageVariablesUsed() {
			if _, ok := st.Variables[v]; !ok {
				problems = append(problems, fmt.Sprintf("%s: uses stage variable %q, which stage %q does not set; set it on the stage", where, v, st.Name))
			}
		}
	}
	if c.policies != nil && len(problems) == 0 {
		// Every route's chain stays built until all are: policies that
		// share state across routes (a WASM plugin attached to the API
		// is one running plugin for all its routes) are then started once
		// for the whole deployment rather than once per route. Closing
		// them at the end leaves nothing running that admission started.
		var all []plugins.Policy
		seen := map[string]bool{} // an API or stage policy fails the same way on every route
		for i := range d.API.Routes {
			r := &d.API.Routes[i]
			_, built, err := c.policies.Build(ctx, plugins.Attachments(d, st, r), plugins.HandlerFunc(func(http.ResponseWriter, *plugins.Exchange) {}))
			all = append(all, built...)
			if err != nil && !seen[err.Error()] {
				seen[err.Error()] = true
				problems = append(problems, fmt.Sprintf("%s: %v", r.Key(), err))
			}
		}
		plugins.CloseAll(all)
	}
	if len(problems) == 0 {
		return nil
	}
	if len(problems) > 20 {
		problems = append(problems[:20], fmt.Sprintf("... and %d more", len(problems)-20))
	}
	return &Error{Kind: Invalid, Msg: fmt.Sprintf("API %q cannot be deployed to stage %q", d.API.Name, st.Name), Err: errors.New(strings.Join(problems, "; "))}
}

// Rollback points a stage at an earlier deployment of its API: the given
// one, or, when deploymentID is empty, the one it pointed at before the
// current one.
func (c *Control) Rollback(ctx context.Context, apiRef, stageName, deploymentID string) (*config.Stage, error) {
	var out *config.Stage
	err := c.update(ctx, func(tx *store.Tx) error {
		api, err := resolveAPI(tx, apiRef)
		if err != nil {
			return err
		}
		st, err := getStage(tx, api, stageName)
		if err != nil {
			return err
		}
		if deploymentID == "" {
			var hist []string
			if err := tx.GetJSON(store.BucketStageHistory, store.StageKey(api.ID, stageName), &hist); err != nil && !isNotFound(err) {
				return err
			}
			for i := len(hist) - 1; i >= 0; i-- {
				if hist[i] != st.DeploymentID {
					deploymentID = hist[i]
					break
				}
			}
			if deploymentID == "" {
				return errorf(Conflict, "stage %q of API %q has no earlier deployment to roll back to", stageName, api.Name)
			}
		}
		var d config.Deployment
		if err := tx.GetJSON(store.BucketDeployments, deploymentID, &d); err != nil {
			if isNotFound(err) {
				return errorf(NotFound, "deployment %q does not exist", deploymentID)
			}
			return err
		}
		if d.APIID != api.ID {
			return errorf(Invalid, "deployment %q belongs to another API, not %q", deploymentID, api.Name)
		}
		if err := c.admit(ctx, &d, st); err != nil {
			return err
		}
		out = st
		return c.pointStage(tx, st, d.ID)
	})
	return out, err
}

// DeploymentInfo is a deployment as listed: without its routes, with the
// stages that point at it.
type DeploymentInfo struct {
	ID          string   `json:"id"`
	APIID       string   `json:"apiId"`
	Description string   `json:"description,omitempty"`
	CreatedAt   string   `json:"createdAt"`
	Routes      int      `json:"routes"`
	Stages      []string `json:"stages,omitempty"`
}

// Deployments lists an API's deployments, newest first.
func (c *Control) Deployments(ctx context.Context, apiRef string) ([]DeploymentInfo, error) {
	var out []DeploymentInfo
	err := c.store.View(ctx, func(tx *store.Tx) error {
		api, err := resolveAPI(tx, apiRef)
		if err != nil {
			return err
		}
		deps, err := store.List[config.Deployment](tx, store.BucketDeployments, "")
		if err != nil {
			return err
		}
		stages, err := store.List[config.Stage](tx, store.BucketStages, api.ID+"/")
		if err != nil {
			return err
		}
		slices.SortFunc(deps, func(a, b config.Deployment) int { return b.CreatedAt.Compare(a.CreatedAt) })
		for _, d := range deps {
			if d.APIID != api.ID {
				continue
			}
			info := DeploymentInfo{ID: d.ID, APIID: d.APIID, Description: d.Description, CreatedAt: d.CreatedAt.Format("2006-01-02T15:04:05Z07:00"), Routes: len(d.API.Routes)}
			for _, s := range stages {
				if s.DeploymentID == d.ID {
					info.Stages = append(info.Stages, s.Name)
				}
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// Deployment returns one deployment by ID, whichever API it belongs to.
func (c *Control) Deployment(ctx context.Context, id string) (*config.Deployment, error) {
	if d := c.Snapshot().Deployment(id); d != nil {
		return d, nil
	}
	var d config.Deployment
	err := c.store.View(ctx, func(tx *store.Tx) error {
		return tx.GetJSON(store.BucketDeployments, id, &d)
	})
	if isNotFound(err) {
		return nil, errorf(NotFound, "deployment %q does not exist", id)
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}
