package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileVersion is the only value the "portico" key of a config file may have
// today. It exists so that a later, incompatible format can be told apart.
const FileVersion = "v1"

// File is the declarative configuration a person writes (portico.yaml or
// portico.json). Applying it imports each API's OpenAPI document, creates or
// updates its stages, deploys stages whose API changed, and sets up domains.
type File struct {
	Portico   string       `yaml:"portico"`
	APIs      []FileAPI    `yaml:"apis"`
	Domains   []FileDomain `yaml:"domains"`
	EdgeSites []EdgeSite   `yaml:"edgeSites"`

	// Path is where the file was read from; relative OpenAPI paths are
	// resolved against its directory.
	Path string `yaml:"-"`
}

// FileAPI declares one API.
type FileAPI struct {
	Name        string       `yaml:"name"`
	Description string       `yaml:"description"`
	OpenAPI     string       `yaml:"openapi"`
	Policies    []FilePolicy `yaml:"policies"`
	Stages      []FileStage  `yaml:"stages"`
}

// FileStage declares one stage of an API.
type FileStage struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description"`
	Variables   map[string]string `yaml:"variables"`
	Policies    []FilePolicy      `yaml:"policies"`
}

// FileDomain declares a custom domain.
type FileDomain struct {
	Name            string             `yaml:"name"`
	EndpointType    string             `yaml:"endpointType"`
	PlainHTTP       string             `yaml:"plainHttp"`
	Certificate     *FileCertificate   `yaml:"certificate"`
	AllowedNetworks []string           `yaml:"allowedNetworks"`
	Mappings        []FileBasePathSpec `yaml:"mappings"`
}

// FileCertificate names a domain's certificate source.
type FileCertificate struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	Managed  bool   `yaml:"managed"`
}

// FileBasePathSpec maps a base path of a domain to an API stage, by name.
type FileBasePathSpec struct {
	BasePath string `yaml:"basePath"`
	API      string `yaml:"api"`
	Stage    string `yaml:"stage"`
}

// FilePolicy attaches a policy; Config is kept as written and handed to the
// policy, which validates it.
type FilePolicy struct {
	Type   string    `yaml:"type"`
	Config yaml.Node `yaml:"config"`
}

// Spec converts the policy to its stored form.
func (p FilePolicy) Spec() (PolicySpec, error) {
	spec := PolicySpec{Type: p.Type}
	if p.Config.Kind == 0 {
		return spec, nil
	}
	var v any
	if err := p.Config.Decode(&v); err != nil {
		return spec, err
	}
	b, err := json.Marshal(jsonCompatible(v))
	if err != nil {
		return spec, err
	}
	spec.Config = b
	return spec, nil
}

// LocationError is a configuration error with the place it was found.
type LocationError struct {
	File   string // path of the file
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based; 0 when unknown
	Field  string // dotted path such as apis[0].stages[1].name
	Err    error
}

func (e *LocationError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *LocationError) Unwrap() error { return e.Err }

// LoadFile reads and validates a config file, including that the OpenAPI
// documents it names can be read. YAML and JSON are both accepted (JSON is
// read as YAML, which keeps line numbers for both). Every problem found is
// returned, joined, each with its location.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseFile(path, data, true)
}

// ParseFile validates a config file already read, without touching the
// file system: the admin API uses it for files whose documents arrive in
// the same request. path is used in messages and to resolve relative paths.
func ParseFile(path string, data []byte) (*File, error) {
	return parseFile(path, data, false)
}

func parseFile(path string, data []byte, checkFiles bool) (*File, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &LocationError{File: path, Err: fmt.Errorf("not valid YAML or JSON: %w", err)}
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, &LocationError{File: path, Err: errors.New("the file is empty; start it with \"portico: v1\"")}
	}
	doc := root.Content[0]
	var errs []error
	checkKnownFields(path, doc, reflect.TypeFor[File](), "", &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	f := &File{}
	if err := doc.Decode(f); err != nil {
		return nil, &LocationError{File: path, Err: err}
	}
	f.Path = path
	v := &validator{file: path, root: doc, checkFiles: checkFiles}
	v.validate(f)
	if len(v.errs) > 0 {
		return nil, errors.Join(v.errs...)
	}
	return f, nil
}

// ResolvePath resolves a path written in the file relative to the file's directory.
func (f *File) ResolvePath(p string) string {
	if filepath.IsAbs(p) || f.Path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(f.Path), p)
}

// checkKnownFields reports keys that the target type does not have, with
// the list of keys it does have, because a misspelt key silently ignored is
// the most common config mistake there is.
func checkKnownFields(file string, n *yaml.Node, t reflect.Type, field string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeFor[yaml.Node]() || n.Kind != yaml.MappingNode {
			return
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			tag := strings.Split(sf.Tag.Get("yaml"), ",")[0]
			if tag == "-" || !sf.IsExported() {
				continue
			}
			if tag == "" {
				tag = strings.ToLower(sf.Name)
			}
			fields[tag] = sf.Type
			names = append(names, tag)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			sub := joinField(field, k.Value)
			if !ok {
				msg := fmt.Sprintf("unknown field %q; the fields here are: %s", k.Value, strings.Join(names, ", "))
				if s := closest(k.Value, names); s != "" {
					msg = fmt.Sprintf("unknown field %q; did you mean %q?", k.Value, s)
				}
				*errs = append(*errs, &LocationError{File: file, Line: k.Line, Column: k.Column, Field: sub, Err: errors.New(msg)})
				continue
			}
			checkKnownFields(file, val, ft, sub, errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkKnownFields(file, c, t.Elem(), field+"["+strconv.Itoa(i)+"]", errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKnownFields(file, n.Content[i+1], t.Elem(), joinField(field, n.Content[i].Value), errs)
		}
	}
}

func joinField(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// closest returns the candidate within edit distance 2 of s, ignoring case.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// jsonCompatible turns YAML-decoded values into values encoding/json can
// write (YAML allows non-string map keys).
func jsonCompatible(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonCompatible(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonCompatible(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonCompatible(e)
		}
		return x
	}
	return v
}

// validator checks a decoded File and records errors with the location of
// the offending node.
type validator struct {
	file       string
	root       *yaml.Node
	checkFiles bool
	errs       []error
}

// fail records an error at the node found by following path (keys and
// indices) from the document root; when the node is missing it falls back
// to the nearest existing parent, so the line is still useful.
func (v *validator) fail(path []any, format string, args ...any) {
	n := v.root
	var field strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if field.Len() > 0 {
				field.WriteByte('.')
			}
			field.WriteString(p)
			if n != nil && n.Kind == yaml.MappingNode {
				var next *yaml.Node
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
					}
				}
				if next != nil {
					n = next
				}
			}
		case int:
			fmt.Fprintf(&field, "[%d]", p)
			if n != nil && n.Kind == yaml.SequenceNode && p < len(n.Content) {
				n = n.Content[p]
			}
		}
	}
	e := &LocationError{File: v.file, Field: field.String(), Err: fmt.Errorf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	v.errs = append(v.errs, e)
}

func (v *validator) validate(f *File) {
	if f.Portico != FileVersion {
		if f.Portico == "" {
			v.fail([]any{"portico"}, "missing; start the file with \"portico: %s\"", FileVersion)
		} else {
			v.fail([]any{"portico"}, "version %q is not supported; this Portico reads \"%s\"", f.Portico, FileVersion)
		}
	}
	apiStages := map[string][]string{}
	for i, a := range f.APIs {
		p := []any{"apis", i}
		if err := CheckAPIName(a.Name); err != nil {
			v.fail(append(p, "name"), "%v", err)
		} else if _, dup := apiStages[a.Name]; dup {
			v.fail(append(p, "name"), "API %q is declared twice; give each API its own name", a.Name)
		}
		if a.OpenAPI == "" {
			v.fail(p, "no \"openapi\" document; set openapi to the path of the API's OpenAPI or Swagger file, relative to this file")
		} else if _, err := os.Stat(f.ResolvePath(a.OpenAPI)); v.checkFiles && err != nil {
			v.fail(append(p, "openapi"), "cannot read the OpenAPI document: %v", err)
		}
		v.policies(append(p, "policies"), a.Policies)
		var names []string
		for j, s := range a.Stages {
			sp := append(slices.Clone(p), "stages", j)
			if err := CheckStageName(s.Name); err != nil {
				v.fail(append(sp, "name"), "%v", err)
			} else if slices.Contains(names, s.Name) {
				v.fail(append(sp, "name"), "stage %q is declared twice for API %q", s.Name, a.Name)
			}
			names = append(names, s.Name)
			for k, val := range s.Variables {
				if err := CheckStageVariable(k, val); err != nil {
					v.fail(append(sp, "variables", k), "%v", err)
				}
			}
			v.policies(append(sp, "policies"), s.Policies)
		}
		apiStages[a.Name] = names
	}
	var domains []string
	for i, d := range f.Domains {
		p := []any{"domains", i}
		name, err := NormalizeDomainName(d.Name)
		if err != nil {
			v.fail(append(p, "name"), "%v", err)
		} else if slices.Contains(domains, name) {
			v.fail(append(p, "name"), "domain %q is declared twice", name)
		}
		domains = append(domains, name)
		et := EndpointType(d.EndpointType)
		if et == "" {
			et = EndpointEdge
		}
		if err := CheckEndpointType(et); err != nil {
			v.fail(append(p, "endpointType"), "%v", err)
		}
		switch d.PlainHTTP {
		case "", PlainHTTPRedirect, PlainHTTPServe:
		default:
			v.fail(append(p, "plainHttp"), "%q is not valid: use \"redirect\" (send clients to https) or \"serve\"", d.PlainHTTP)
		}
		if c := d.Certificate; c != nil {
			switch {
			case c.Managed && (c.CertFile != "" || c.KeyFile != ""):
				v.fail(append(p, "certificate"), "set either managed: true or certFile and keyFile, not both")
			case !c.Managed && (c.CertFile == "") != (c.KeyFile == ""):
				v.fail(append(p, "certificate"), "certFile and keyFile go together; set both")
			}
		}
		for j, n := range d.AllowedNetworks {
			if _, err := CheckCIDR(n); err != nil {
				v.fail(append(p, "allowedNetworks", j), "%v", err)
			}
		}
		if et == EndpointPrivate && len(d.AllowedNetworks) == 0 {
			v.fail(p, "a private endpoint needs allowedNetworks: the CIDRs that may reach it")
		}
		var paths []string
		for j, m := range d.Mappings {
			mp := append(slices.Clone(p), "mappings", j)
			bp, err := NormalizeBasePath(m.BasePath)
			if err != nil {
				v.fail(append(mp, "basePath"), "%v", err)
			} else if slices.Contains(paths, bp) {
				v.fail(append(mp, "basePath"), "base path %q is mapped twice on domain %q", m.BasePath, d.Name)
			}
			paths = append(paths, bp)
			stages, ok := apiStages[m.API]
			switch {
			case m.API == "":
				v.fail(mp, "no api; name the API this base path serves")
			case !ok:
				v.fail(append(mp, "api"), "API %q is not declared in this file; declare it under apis or fix the name", m.API)
			case m.Stage == "":
				v.fail(mp, "no stage; name the stage of API %q this base path serves", m.API)
			case !slices.Contains(stages, m.Stage):
				v.fail(append(mp, "stage"), "API %q has no stage %q here; its stages are: %s", m.API, m.Stage, strings.Join(stages, ", "))
			}
		}
	}
	var sites []string
	for i, s := range f.EdgeSites {
		if !validIdent(s.Name, 64, "_-.") {
			v.fail([]any{"edgeSites", i, "name"}, "edge site name %q is not valid: use 1-64 letters, digits, '.', '_' or '-'", s.Name)
		} else if slices.Contains(sites, s.Name) {
			v.fail([]any{"edgeSites", i, "name"}, "edge site %q is declared twice", s.Name)
		}
		sites = append(sites, s.Name)
	}
}

func (v *validator) policies(p []any, ps []FilePolicy) {
	for i, pol := range ps {
		if pol.Type == "" {
			v.fail(append(slices.Clone(p), i), "policy without a type; set type to the policy's name")
			continue
		}
		if _, err := pol.Spec(); err != nil {
			v.fail(append(slices.Clone(p), i, "config"), "%v", err)
		}
	}
}
