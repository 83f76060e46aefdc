package importer

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
)

// validateWithKin loads the document with kin-openapi and validates it, so
// that a document Portico accepts is one the validators built on kin-openapi
// can load later. It runs only on documents that passed the scan: no
// external or dangling references, no composition cycles.
//
// Findings that the importer's own checks make with better pointers (path
// parameters, colliding paths, undefined security schemes) are left out,
// and so are the ones about examples, which describe documentation, not
// behaviour.
func validateWithKin(ctx context.Context, root *node, format string, probs *problems) error {
	data := appendJSON(make([]byte, 0, 1<<16), root)
	loader := openapi3.NewLoader()
	loader.Context = ctx
	loader.IsExternalRefsAllowed = false
	var doc *openapi3.T
	if format == FormatSwagger20 {
		var doc2 openapi2.T
		if err := json.Unmarshal(data, &doc2); err != nil {
			probs.add("", nil, "the document does not have the structure of a Swagger 2.0 document: %s", cleanKin(err))
			return nil
		}
		d, err := openapi2conv.ToV3WithLoader(&doc2, loader, nil)
		if err != nil {
			ptr := ""
			if strings.Contains(err.Error(), "invalid host") {
				ptr = "/host"
			}
			probs.add(ptr, nil, "%s", cleanKin(err))
			return nil
		}
		doc = d
	} else {
		doc = &openapi3.T{}
		if err := json.Unmarshal(data, doc); err != nil {
			probs.add("", nil, "the document does not have the structure of an OpenAPI 3 document: %s", cleanKin(err))
			return nil
		}
		if err := loader.ResolveRefsIn(doc, nil); err != nil {
			probs.add("", nil, "%s", cleanKin(err))
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := doc.Validate(ctx,
		openapi3.EnableMultiError(),
		openapi3.DisableExamplesValidation(),
	)
	if err == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var list []error
	var me openapi3.MultiError
	if errors.As(err, &me) {
		list = flatten(me)
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var coded openapi3.CodedError
		if errors.As(e, &coded) && ownChecks[coded.Code()] {
			continue
		}
		ptr, msg := locate(e, format == FormatSwagger20)
		var extra *openapi3.ExtraSiblingFieldsError
		if format == FormatOpenAPI31 && ptr == "/components" && errors.As(e, &extra) && len(extra.Fields) == 1 && extra.Fields[0] == "pathItems" {
			// kin-openapi resolves references to components/pathItems
			// but does not list the field among the ones it knows.
			continue
		}
		probs.add(ptr, nil, "%s", msg)
	}
	return nil
}

// ownChecks are kin-openapi findings the importer makes itself. Its
// "conflicting paths" check in particular is stricter than Portico's:
// /a/{x} and /a/{y} conflict for Portico only when routed for the same
// method, as in GitHub's own description.
var ownChecks = map[string]bool{
	"conflicting-paths":                     true,
	"path-parameters-mismatch":              true,
	"path-must-start-with-slash":            true,
	"security-requirement-scheme-undefined": true,
	"unresolved-ref":                        true,
	"query-field-for-3-2-plus":              true,
	"example-violates-schema":               true,
}

func flatten(me openapi3.MultiError) []error {
	var out []error
	for _, e := range me {
		var sub openapi3.MultiError
		if errors.As(e, &sub) && len(sub) > 0 && !isWrapper(e) {
			out = append(out, flatten(sub)...)
			continue
		}
		out = append(out, e)
	}
	return out
}

func isWrapper(e error) bool {
	switch e.(type) {
	case *openapi3.SectionValidationError, *openapi3.PathValidationError, *openapi3.OperationValidationError, *openapi3.ComponentValidationError, *openapi3.WebhookValidationError:
		return true
	}
	return false
}

var componentSections = map[string]string{
	"schema": "schemas", "parameter": "parameters", "header": "headers", "request body": "requestBodies",
	"response": "responses", "security scheme": "securitySchemes", "example": "examples",
	"link": "links", "callback": "callbacks", "path item": "pathItems",
}

// swaggerComponents maps where kin-openapi's conversion put Swagger 2.0
// definitions back to where they are written.
var swaggerComponents = map[string]string{
	"schemas": "/definitions", "parameters": "/parameters", "requestBodies": "/parameters",
	"responses": "/responses", "securitySchemes": "/securityDefinitions",
}

// locate turns kin-openapi's context wrappers into a JSON pointer, and
// returns the message of what they wrap.
func locate(err error, swagger bool) (string, string) {
	var ptr strings.Builder
	for {
		switch e := err.(type) {
		case *openapi3.SectionValidationError:
			ptr.WriteString("/" + escapeToken(e.Section))
			err = e.Cause
			continue
		case *openapi3.PathValidationError:
			ptr.WriteString("/" + escapeToken(e.Path))
			err = e.Cause
			continue
		case *openapi3.OperationValidationError:
			ptr.WriteString("/" + strings.ToLower(e.Method))
			err = e.Cause
			continue
		case *openapi3.ComponentValidationError:
			section := componentSections[e.Section]
			if section == "" {
				break
			}
			if swagger {
				if p := swaggerComponents[section]; p != "" && strings.HasSuffix(ptr.String(), "/components") {
					s := strings.TrimSuffix(ptr.String(), "/components")
					ptr.Reset()
					ptr.WriteString(s + p + "/" + escapeToken(e.Name))
					err = e.Cause
					continue
				}
			}
			ptr.WriteString("/" + section + "/" + escapeToken(e.Name))
			err = e.Cause
			continue
		case *openapi3.WebhookValidationError:
			ptr.WriteString("/" + escapeToken(e.Name))
			err = e.Cause
			continue
		}
		break
	}
	return ptr.String(), "the document is not valid OpenAPI: " + cleanKin(err)
}

// cleanKin shortens kin-openapi's messages, which may embed whole schemas.
func cleanKin(err error) string {
	s := err.Error()
	if i := strings.Index(s, "\nSchema:"); i >= 0 {
		s = s[:i]
	}
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}
