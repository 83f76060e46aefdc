package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/store"
)

// ApplyReport lists what Apply changed.
type ApplyReport struct {
	Imported []string `json:"imported,omitempty"` // APIs created or whose document changed
	Deployed []string `json:"deployed,omitempty"` // "api/stage -> deployment"
	Domains  []string `json:"domains,omitempty"`
}

// Documents maps the "openapi" path of each API in a config file to its
// content. ReadDocuments fills it from disk; the admin API receives it in
// the request.
type Documents map[string][]byte

// ReadDocuments reads the OpenAPI documents a config file names.
func ReadDocuments(f *config.File) (Documents, error) {
	docs := Documents{}
	for _, a := range f.APIs {
		b, err := os.ReadFile(f.ResolvePath(a.OpenAPI))
		if err != nil {
			return nil, fmt.Errorf("API %q: read OpenAPI document: %w", a.Name, err)
		}
		docs[a.OpenAPI] = b
	}
	return docs, nil
}

// Apply makes the stored state match a config file, in one transaction: it
// imports each API whose document changed, creates or updates its stages,
// deploys every stage whose API changed since its deployment (or that was
// never deployed), and sets up domains, mappings and edge sites. It creates
// and updates; it never deletes what the file does not mention. If any part
// fails, nothing is changed.
func (c *Control) Apply(ctx context.Context, f *config.File, docs Documents) (*ApplyReport, error) {
	type parsed struct {
		api *config.API
		doc []byte
	}
	var apis []parsed
	for _, fa := range f.APIs {
		doc, ok := docs[fa.OpenAPI]
		if !ok {
			return nil, errorf(Invalid, "API %q: the OpenAPI document %q was not provided", fa.Name, fa.OpenAPI)
		}
		api, err := c.parse(ctx, doc, ImportOptions{Name: fa.Name})
		if err != nil {
			return nil, fmt.Errorf("API %q (%s): %w", fa.Name, fa.OpenAPI, err)
		}
		if fa.Description != "" {
			api.Description = fa.Description
		}
		for _, p := range fa.Policies {
			spec, err := p.Spec()
			if err != nil {
				return nil, errorf(Invalid, "API %q: policy %q: %v", fa.Name, p.Type, err)
			}
			api.Policies = append(api.Policies, spec)
		}
		apis = append(apis, parsed{api, doc})
	}
	rep := &ApplyReport{}
	err := c.update(ctx, func(tx *store.Tx) error {
		for i, fa := range f.APIs {
			p := apis[i]
			res, err := c.importTx(tx, p.api, p.doc, true)
			if err != nil {
				return fmt.Errorf("API %q: %w", fa.Name, err)
			}
			api := &res.API
			if !samePolicies(api.Policies, p.api.Policies) {
				// The file is the source of truth for API-level policies.
				api.Policies = p.api.Policies
				if err := tx.PutJSON(store.BucketAPIs, api.ID, api); err != nil {
					return err
				}
			}
			if !res.Unchanged {
				rep.Imported = append(rep.Imported, fa.Name)
			}
			for _, fs := range fa.Stages {
				in := StageInput{Description: fs.Description, Variables: fs.Variables}
				for _, pol := range fs.Policies {
					spec, err := pol.Spec()
					if err != nil {
						return errorf(Invalid, "API %q stage %q: policy %q: %v", fa.Name, fs.Name, pol.Type, err)
					}
					in.Policies = append(in.Policies, spec)
				}
				st, _, err := c.putStageUndeployedTx(ctx, tx, api, fs.Name, in)
				if err != nil {
					return fmt.Errorf("API %q stage %q: %w", fa.Name, fs.Name, err)
				}
				need, err := needsDeploy(tx, api, st)
				if err != nil {
					return err
				}
				if need {
					d, err := c.deployTx(ctx, tx, api.ID, fs.Name, "applied from "+f.Path)
					if err != nil {
						return fmt.Errorf("API %q stage %q: %w", fa.Name, fs.Name, err)
					}
					rep.Deployed = append(rep.Deployed, fmt.Sprintf("%s/%s -> %s", fa.Name, fs.Name, d.ID))
				}
			}
		}
		for _, fd := range f.Domains {
			in := DomainInput{EndpointType: config.EndpointType(fd.EndpointType), PlainHTTP: fd.PlainHTTP, AllowedNetworks: fd.AllowedNetworks}
			if fd.Certificate != nil {
				in.Certificate = &config.CertificateSource{CertFile: fd.Certificate.CertFile, KeyFile: fd.Certificate.KeyFile, Managed: fd.Certificate.Managed}
				if in.Certificate.CertFile != "" {
					in.Certificate.CertFile = f.ResolvePath(in.Certificate.CertFile)
					in.Certificate.KeyFile = f.ResolvePath(in.Certificate.KeyFile)
				}
			}
			if _, _, err := c.putDomainTx(tx, fd.Name, in); err != nil {
				return fmt.Errorf("domain %q: %w", fd.Name, err)
			}
			for _, m := range fd.Mappings {
				if _, err := c.putMappingTx(tx, fd.Name, m.BasePath, m.API, m.Stage); err != nil {
					return fmt.Errorf("domain %q base path %q: %w", fd.Name, m.BasePath, err)
				}
			}
			rep.Domains = append(rep.Domains, fd.Name)
		}
		for _, s := range f.EdgeSites {
			if err := tx.PutJSON(store.BucketEdgeSites, s.Name, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// putStageUndeployedTx is putStageTx without admitting the current
// deployment: Apply deploys right after when the API changed, and admits
// then.
func (c *Control) putStageUndeployedTx(ctx context.Context, tx *store.Tx, api *config.API, name string, in StageInput) (*config.Stage, bool, error) {
	st, err := getStage(tx, api, name)
	if err == nil && st.DeploymentID != "" {
		need, err := needsDeploy(tx, api, st)
		if err != nil {
			return nil, false, err
		}
		if need {
			// Save the settings without admission; deployTx admits the
			// new deployment with them.
			st.Description, st.Variables, st.Policies, st.UpdatedAt = in.Description, in.Variables, in.Policies, c.now().UTC()
			return st, false, tx.PutJSON(store.BucketStages, store.StageKey(api.ID, name), st)
		}
	}
	return c.putStageTx(ctx, tx, api.ID, name, in)
}

// needsDeploy reports whether the stage's deployment differs from the API.
func needsDeploy(tx *store.Tx, api *config.API, st *config.Stage) (bool, error) {
	if st.DeploymentID == "" {
		return true, nil
	}
	var d config.Deployment
	if err := tx.GetJSON(store.BucketDeployments, st.DeploymentID, &d); err != nil {
		return false, err
	}
	a, err := json.Marshal([]any{d.API.Routes, d.API.Policies})
	if err != nil {
		return false, err
	}
	b, err := json.Marshal([]any{api.Routes, api.Policies})
	if err != nil {
		return false, err
	}
	return !bytes.Equal(a, b), nil
}

func samePolicies(a, b []config.PolicySpec) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
