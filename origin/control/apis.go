package control

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/store"
)

// ImportResult says what an import did.
type ImportResult struct {
	API       config.API `json:"api"`
	Created   bool       `json:"created"`
	Unchanged bool       `json:"unchanged"` // the same document was already imported
}

// ImportAPI imports an OpenAPI document as a new API, or, with overwrite,
// replaces the routes of the existing API of the same name. Deployed stages
// keep serving their deployments until the API is deployed again.
func (c *Control) ImportAPI(ctx context.Context, doc []byte, opts ImportOptions, overwrite bool) (*ImportResult, error) {
	api, err := c.parse(ctx, doc, opts)
	if err != nil {
		return nil, err
	}
	var res *ImportResult
	err = c.update(ctx, func(tx *store.Tx) error {
		var err error
		res, err = c.importTx(tx, api, doc, overwrite)
		return err
	})
	return res, err
}

func (c *Control) parse(ctx context.Context, doc []byte, opts ImportOptions) (*config.API, error) {
	if opts.Name != "" {
		if err := config.CheckAPIName(opts.Name); err != nil {
			return nil, &Error{Kind: Invalid, Msg: err.Error()}
		}
	}
	api, err := c.importer(ctx, doc, opts)
	if err != nil {
		return nil, &Error{Kind: Invalid, Msg: "the document cannot be imported", Err: err}
	}
	if opts.Name != "" {
		api.Name = opts.Name
	}
	if err := config.CheckAPIName(api.Name); err != nil {
		return nil, &Error{Kind: Invalid, Msg: err.Error() + "; pass a name with the import"}
	}
	return api, nil
}

func (c *Control) importTx(tx *store.Tx, api *config.API, doc []byte, overwrite bool) (*ImportResult, error) {
	now := c.now().UTC()
	existingID := tx.GetRaw(store.BucketAPINames, api.Name)
	if existingID != nil {
		if !overwrite {
			return nil, errorf(Conflict, "an API named %q already exists; import with overwrite to replace its routes, or choose another name", api.Name)
		}
		var old config.API
		if err := tx.GetJSON(store.BucketAPIs, string(existingID), &old); err != nil {
			return nil, err
		}
		if old.SourceDigest == api.SourceDigest && old.SourceDigest != "" {
			return &ImportResult{API: old, Unchanged: true}, nil
		}
		api.ID, api.CreatedAt, api.Policies = old.ID, old.CreatedAt, mergePolicies(old.Policies, api.Policies)
	} else {
		api.ID = store.NewID("a")
		api.CreatedAt = now
	}
	api.UpdatedAt = now
	if err := tx.PutJSON(store.BucketAPIs, api.ID, api); err != nil {
		return nil, err
	}
	if err := tx.PutRaw(store.BucketAPINames, api.Name, []byte(api.ID)); err != nil {
		return nil, err
	}
	if err := tx.PutRaw(store.BucketSources, api.ID, doc); err != nil {
		return nil, err
	}
	return &ImportResult{API: *api, Created: existingID == nil}, nil
}

// mergePolicies keeps API-level policies attached through the admin API or
// config file when the document is re-imported; policies the document
// itself declares win for their type.
func mergePolicies(old, fromDoc []config.PolicySpec) []config.PolicySpec {
	out := slices.Clone(fromDoc)
	for _, p := range old {
		if !slices.ContainsFunc(out, func(q config.PolicySpec) bool { return q.Type == p.Type }) {
			out = append(out, p)
		}
	}
	return out
}

// APIs lists all APIs, sorted by name.
func (c *Control) APIs(ctx context.Context) ([]config.API, error) {
	var out []config.API
	err := c.store.View(ctx, func(tx *store.Tx) error {
		var err error
		out, err = store.List[config.API](tx, store.BucketAPIs, "")
		return err
	})
	slices.SortFunc(out, func(a, b config.API) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// API returns one API by name or ID.
func (c *Control) API(ctx context.Context, ref string) (*config.API, error) {
	var out *config.API
	err := c.store.View(ctx, func(tx *store.Tx) error {
		var err error
		out, err = resolveAPI(tx, ref)
		return err
	})
	return out, err
}

// Source returns the document an API was imported from.
func (c *Control) Source(ctx context.Context, ref string) ([]byte, error) {
	var out []byte
	err := c.store.View(ctx, func(tx *store.Tx) error {
		api, err := resolveAPI(tx, ref)
		if err != nil {
			return err
		}
		out = tx.GetRaw(store.BucketSources, api.ID)
		if out == nil {
			return errorf(NotFound, "API %q has no stored source document", api.Name)
		}
		return nil
	})
	return out, err
}

// DeleteAPI deletes an API with its stages and deployments. An API that a
// domain still maps is not deleted: remove the mapping first, so that no
// traffic is dropped by accident.
func (c *Control) DeleteAPI(ctx context.Context, ref string) error {
	return c.update(ctx, func(tx *store.Tx) error {
		api, err := resolveAPI(tx, ref)
		if err != nil {
			return err
		}
		domains, err := store.List[config.Domain](tx, store.BucketDomains, "")
		if err != nil {
			return err
		}
		var uses []string
		for _, d := range domains {
			for _, m := range d.Mappings {
				if m.APIID == api.ID {
					uses = append(uses, d.Name+"/"+m.BasePath)
				}
			}
		}
		if len(uses) > 0 {
			return errorf(Conflict, "API %q is still mapped on %s; delete those base path mappings first", api.Name, strings.Join(uses, ", "))
		}
		if plans, err := plansCovering(tx, api.ID, ""); err != nil {
			return err
		} else if len(plans) > 0 {
			return errorf(Conflict, "API %q is covered by usage plan(s) %s; remove its stages from those plans first", api.Name, strings.Join(plans, ", "))
		}
		prefix := api.ID + "/"
		for _, b := range []string{store.BucketStages, store.BucketStageHistory} {
			var keys []string
			if err := tx.ForEach(b, prefix, func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
				return err
			}
			for _, k := range keys {
				if err := tx.Delete(b, k); err != nil {
					return err
				}
			}
		}
		deps, err := store.List[config.Deployment](tx, store.BucketDeployments, "")
		if err != nil {
			return err
		}
		for _, d := range deps {
			if d.APIID == api.ID {
				if err := tx.Delete(store.BucketDeployments, d.ID); err != nil {
					return err
				}
			}
		}
		for _, b := range []string{store.BucketAPIs, store.BucketSources} {
			if err := tx.Delete(b, api.ID); err != nil {
				return err
			}
		}
		return tx.Delete(store.BucketAPINames, api.Name)
	})
}

// SetAPIPolicies replaces the API-level policies. They take effect at the
// next deployment, like every change to an API.
func (c *Control) SetAPIPolicies(ctx context.Context, ref string, ps []config.PolicySpec) (*config.API, error) {
	if err := checkPolicySpecs(ps); err != nil {
		return nil, err
	}
	var out *config.API
	err := c.update(ctx, func(tx *store.Tx) error {
		api, err := resolveAPI(tx, ref)
		if err != nil {
			return err
		}
		api.Policies = ps
		api.UpdatedAt = c.now().UTC()
		out = api
		return tx.PutJSON(store.BucketAPIs, api.ID, api)
	})
	return out, err
}

func checkPolicySpecs(ps []config.PolicySpec) error {
	for i, p := range ps {
		if p.Type == "" {
			return errorf(Invalid, "policy %d has no type", i)
		}
	}
	return nil
}

// isNotFound reports whether err is a store miss.
func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// plansCovering names the usage plans that cover an API (any stage, when
// stage is empty) so that deleting it cannot leave plans pointing nowhere.
func plansCovering(tx *store.Tx, apiID, stage string) ([]string, error) {
	plans, err := store.List[config.UsagePlan](tx, store.BucketUsagePlans, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range plans {
		for _, s := range p.Stages {
			if s.APIID == apiID && (stage == "" || s.Stage == stage) {
				out = append(out, p.Name)
				break
			}
		}
	}
	return out, nil
}
