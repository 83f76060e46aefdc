package main

import (
	"context"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/importer"
	"github.com/portico-edge/portico/plugins"
)

// importDocument adapts the OpenAPI importer to the control plane.
func importDocument(ctx context.Context, doc []byte, o control.ImportOptions) (*config.API, error) {
	res, err := importer.Import(ctx, doc, importer.Options{
		Name:           o.Name,
		DefaultBackend: o.DefaultBackend,
		IgnoreSecurity: o.IgnoreSecurity,
		BasePath:       o.BasePath,
	})
	if err != nil {
		return nil, err
	}
	return &res.API, nil
}

// policyRegistry returns the policy factories this build supports.
func policyRegistry() (*plugins.Registry, error) {
	return plugins.NewRegistry()
}
