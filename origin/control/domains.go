package control

import (
	"context"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/store"
)

// DomainInput is what a caller sets on a domain. Mappings are managed with
// PutMapping and DeleteMapping and are kept when a domain is updated.
type DomainInput struct {
	EndpointType    config.EndpointType       `json:"endpointType,omitempty"`
	PlainHTTP       string                    `json:"plainHttp,omitempty"`
	Certificate     *config.CertificateSource `json:"certificate,omitempty"`
	AllowedNetworks []string                  `json:"allowedNetworks,omitempty"`
}

// PutDomain creates a custom domain or updates its settings.
func (c *Control) PutDomain(ctx context.Context, name string, in DomainInput) (*config.Domain, bool, error) {
	var out *config.Domain
	var created bool
	err := c.update(ctx, func(tx *store.Tx) error {
		var err error
		out, created, err = c.putDomainTx(tx, name, in)
		return err
	})
	return out, created, err
}

func (c *Control) putDomainTx(tx *store.Tx, name string, in DomainInput) (*config.Domain, bool, error) {
	n, err := config.NormalizeDomainName(name)
	if err != nil {
		return nil, false, &Error{Kind: Invalid, Msg: err.Error()}
	}
	if in.EndpointType == "" {
		in.EndpointType = config.EndpointEdge
	}
	if err := config.CheckEndpointType(in.EndpointType); err != nil {
		return nil, false, &Error{Kind: Invalid, Msg: err.Error()}
	}
	switch in.PlainHTTP {
	case "", config.PlainHTTPRedirect, config.PlainHTTPServe:
	default:
		return nil, false, errorf(Invalid, "plainHttp %q is not valid: use \"redirect\" or \"serve\"", in.PlainHTTP)
	}
	for _, cidr := range in.AllowedNetworks {
		if _, err := config.CheckCIDR(cidr); err != nil {
			return nil, false, &Error{Kind: Invalid, Msg: err.Error()}
		}
	}
	if in.EndpointType == config.EndpointPrivate && len(in.AllowedNetworks) == 0 {
		return nil, false, errorf(Invalid, "a private endpoint needs allowedNetworks: the CIDRs that may reach it")
	}
	if cs := in.Certificate; cs != nil {
		if cs.Managed && (cs.CertFile != "" || cs.KeyFile != "") {
			return nil, false, errorf(Invalid, "certificate: set either managed or certFile and keyFile, not both")
		}
		if !cs.Managed && (cs.CertFile == "" || cs.KeyFile == "") {
			return nil, false, errorf(Invalid, "certificate: certFile and keyFile go together; set both (or managed: true)")
		}
	}
	now := c.now().UTC()
	var d config.Domain
	created := false
	if err := tx.GetJSON(store.BucketDomains, n, &d); err != nil {
		if !isNotFound(err) {
			return nil, false, err
		}
		d = config.Domain{Name: n, CreatedAt: now}
		created = true
	}
	d.EndpointType, d.PlainHTTP, d.Certificate, d.AllowedNetworks, d.UpdatedAt = in.EndpointType, in.PlainHTTP, in.Certificate, in.AllowedNetworks, now
	return &d, created, tx.PutJSON(store.BucketDomains, n, &d)
}

// Domains lists custom domains.
func (c *Control) Domains(ctx context.Context) ([]config.Domain, error) {
	var out []config.Domain
	err := c.store.View(ctx, func(tx *store.Tx) error {
		var err error
		out, err = store.List[config.Domain](tx, store.BucketDomains, "")
		return err
	})
	return out, err
}

// Domain returns one domain.
func (c *Control) Domain(ctx context.Context, name string) (*config.Domain, error) {
	var out *config.Domain
	err := c.store.View(ctx, func(tx *store.Tx) error {
		var err error
		out, err = getDomain(tx, name)
		return err
	})
	return out, err
}

func getDomain(tx *store.Tx, name string) (*config.Domain, error) {
	n, err := config.NormalizeDomainName(name)
	if err != nil {
		return nil, &Error{Kind: Invalid, Msg: err.Error()}
	}
	var d config.Domain
	if err := tx.GetJSON(store.BucketDomains, n, &d); err != nil {
		if isNotFound(err) {
			return nil, errorf(NotFound, "domain %q does not exist", n)
		}
		return nil, err
	}
	return &d, nil
}

// DeleteDomain deletes a domain with its mappings.
func (c *Control) DeleteDomain(ctx context.Context, name string) error {
	return c.update(ctx, func(tx *store.Tx) error {
		d, err := getDomain(tx, name)
		if err != nil {
			return err
		}
		return tx.Delete(store.BucketDomains, d.Name)
	})
}

// PutMapping maps a base path of a domain to a deployed stage of an API.
func (c *Control) PutMapping(ctx context.Context, domain, basePath, apiRef, stage string) (*config.Domain, error) {
	var out *config.Domain
	err := c.update(ctx, func(tx *store.Tx) error {
		var err error
		out, err = c.putMappingTx(tx, domain, basePath, apiRef, stage)
		return err
	})
	return out, err
}

func (c *Control) putMappingTx(tx *store.Tx, domain, basePath, apiRef, stage string) (*config.Domain, error) {
	bp, err := config.NormalizeBasePath(basePath)
	if err != nil {
		return nil, &Error{Kind: Invalid, Msg: err.Error()}
	}
	d, err := getDomain(tx, domain)
	if err != nil {
		return nil, err
	}
	api, err := resolveAPI(tx, apiRef)
	if err != nil {
		return nil, err
	}
	st, err := getStage(tx, api, stage)
	if err != nil {
		return nil, err
	}
	if st.DeploymentID == "" {
		return nil, errorf(Conflict, "stage %q of API %q has never been deployed; deploy it before mapping it", stage, api.Name)
	}
	m := config.BasePathMapping{BasePath: bp, APIID: api.ID, Stage: stage}
	if i := slices.IndexFunc(d.Mappings, func(x config.BasePathMapping) bool { return x.BasePath == bp }); i >= 0 {
		d.Mappings[i] = m
	} else {
		d.Mappings = append(d.Mappings, m)
	}
	slices.SortFunc(d.Mappings, func(a, b config.BasePathMapping) int { return strings.Compare(a.BasePath, b.BasePath) })
	d.UpdatedAt = c.now().UTC()
	return d, tx.PutJSON(store.BucketDomains, d.Name, d)
}

// DeleteMapping removes a base path mapping.
func (c *Control) DeleteMapping(ctx context.Context, domain, basePath string) error {
	bp, err := config.NormalizeBasePath(basePath)
	if err != nil {
		return &Error{Kind: Invalid, Msg: err.Error()}
	}
	return c.update(ctx, func(tx *store.Tx) error {
		d, err := getDomain(tx, domain)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(d.Mappings, func(x config.BasePathMapping) bool { return x.BasePath == bp })
		if i < 0 {
			return errorf(NotFound, "domain %q has no mapping for base path %q", d.Name, basePath)
		}
		d.Mappings = slices.Delete(d.Mappings, i, i+1)
		d.UpdatedAt = c.now().UTC()
		return tx.PutJSON(store.BucketDomains, d.Name, d)
	})
}

// PutEdgeSite creates or replaces an edge site.
func (c *Control) PutEdgeSite(ctx context.Context, s config.EdgeSite) error {
	if !validSiteName(s.Name) {
		return errorf(Invalid, "edge site name %q is not valid: use 1-64 letters, digits, '.', '_' or '-'", s.Name)
	}
	return c.update(ctx, func(tx *store.Tx) error { return tx.PutJSON(store.BucketEdgeSites, s.Name, s) })
}

// EdgeSites lists edge sites.
func (c *Control) EdgeSites(ctx context.Context) ([]config.EdgeSite, error) {
	var out []config.EdgeSite
	err := c.store.View(ctx, func(tx *store.Tx) error {
		var err error
		out, err = store.List[config.EdgeSite](tx, store.BucketEdgeSites, "")
		return err
	})
	return out, err
}

// DeleteEdgeSite deletes an edge site.
func (c *Control) DeleteEdgeSite(ctx context.Context, name string) error {
	return c.update(ctx, func(tx *store.Tx) error {
		if tx.GetRaw(store.BucketEdgeSites, name) == nil {
			return errorf(NotFound, "edge site %q does not exist", name)
		}
		return tx.Delete(store.BucketEdgeSites, name)
	})
}

func validSiteName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
