// Package modules keeps the WASM plugin modules an origin stores: uploads
// (checked before they are stored), the listing with what uses each module,
// deletion of unused ones, the origin's own module source (admission at
// deploy, regional endpoints), and the download edges fetch modules with.
//
// Modules are stored by content: the key is "sha256:" and the hex SHA-256
// of the bytes, the same digest a policy names its module with, so a module
// is uploaded once however many policies use it.
package modules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/store"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/runtime"
)

// Buckets, in the origin's store.
const (
	BucketModules = "wasm_modules"     // digest -> module bytes
	BucketInfo    = "wasm_module_info" // digest -> Info (without UsedBy)
)

// Info describes a stored module.
type Info struct {
	Digest     string    `json:"digest"`
	Size       int       `json:"size"`
	Name       string    `json:"name,omitempty"` // the file name given at upload, for people
	UploadedAt time.Time `json:"uploadedAt"`
	// UsedBy is filled in when a module is listed or read.
	UsedBy *Usage `json:"usedBy,omitempty"`
}

// Usage says what refers to a module. A module is in use while any of it
// is non-empty.
type Usage struct {
	// Deployments whose frozen API (API-level or route policies) names the
	// module, with the stages serving each. Deployments are kept for
	// rollback, so an old one still counts.
	Deployments []DeploymentUse `json:"deployments"`
	// Stages ("API/STAGE") whose own policies name it.
	Stages []string `json:"stages"`
	// APIs whose current, possibly undeployed, policies name it.
	APIs []string `json:"apis"`
}

// DeploymentUse is one deployment that uses a module.
type DeploymentUse struct {
	ID     string   `json:"id"`
	API    string   `json:"api"`
	Stages []string `json:"stages,omitempty"`
}

func (u *Usage) empty() bool {
	return len(u.Deployments) == 0 && len(u.Stages) == 0 && len(u.APIs) == 0
}

// Options configure a Service.
type Options struct {
	Store *store.Store
	// Check admits an upload before it is stored: it must compile and be a
	// proxy-wasm module. NewChecker returns one.
	Check func(ctx context.Context, module []byte) error
	// MaxBytes caps a module; zero means runtime.DefaultMaxModuleBytes.
	// Keep it equal to the edges' cap, or edges refuse what the origin
	// accepted.
	MaxBytes int
	Logger   *slog.Logger
	Now      func() time.Time
}

// Service stores modules.
type Service struct {
	store    *store.Store
	check    func(context.Context, []byte) error
	maxBytes int
	log      *slog.Logger
	now      func() time.Time
}

// New returns a Service over an opened store.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Check == nil {
		return nil, errors.New("modules: a store and a module check are required")
	}
	s := &Service{store: o.Store, check: o.Check, maxBytes: o.MaxBytes, log: o.Logger, now: o.Now}
	if s.maxBytes <= 0 {
		s.maxBytes = runtime.DefaultMaxModuleBytes
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	err := s.store.Update(context.Background(), func(tx *store.Tx) error {
		if err := tx.EnsureBucket(BucketModules); err != nil {
			return err
		}
		return tx.EnsureBucket(BucketInfo)
	})
	if err != nil {
		return nil, fmt.Errorf("modules: %w", err)
	}
	return s, nil
}

// MaxBytes is the size cap of a module.
func (s *Service) MaxBytes() int { return s.maxBytes }

// Digest returns a module's digest: "sha256:" and 64 lower-case hex digits.
func Digest(module []byte) string {
	sum := sha256.Sum256(module)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseDigest accepts "sha256:<hex>" or the bare 64 hex digits (as in a
// URL path) and returns the "sha256:<hex>" form.
func ParseDigest(s string) (string, error) {
	h := strings.TrimPrefix(s, "sha256:")
	if len(h) != 64 || strings.ToLower(h) != h {
		return "", fmt.Errorf("%q is not a module digest: write sha256: followed by the 64 lower-case hex digits of the module's SHA-256 (sha256sum plugin.wasm)", s)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", fmt.Errorf("%q is not a module digest: the digest is not hex", s)
	}
	return "sha256:" + h, nil
}

// Upload checks a module and stores it. It reports false, and the stored
// module's info, when the same module was uploaded before.
func (s *Service) Upload(ctx context.Context, name string, module []byte) (*Info, bool, error) {
	if len(module) == 0 {
		return nil, false, &control.Error{Kind: control.Invalid, Msg: "the module is empty; send the .wasm file as the request body"}
	}
	if len(module) > s.maxBytes {
		return nil, false, &TooLargeError{Size: len(module), Max: s.maxBytes}
	}
	if len(name) > 200 || strings.ContainsAny(name, "\x00\r\n") {
		return nil, false, &control.Error{Kind: control.Invalid, Msg: "the module name must be at most 200 characters on one line"}
	}
	digest := Digest(module)
	if info, err := s.info(ctx, digest); err == nil {
		return info, false, nil
	}
	// Compiling takes up to seconds for a large module: do it before the
	// transaction, which holds the store's only writer.
	if err := s.check(ctx, module); err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return nil, false, &control.Error{Kind: control.Invalid, Msg: "the module cannot be used as a plugin", Err: err}
	}
	info := &Info{Digest: digest, Size: len(module), Name: name, UploadedAt: s.now().UTC().Truncate(time.Second)}
	created := true
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		var old Info
		if err := tx.GetJSON(BucketInfo, digest, &old); err == nil {
			info, created = &old, false
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.PutRaw(BucketModules, digest, module); err != nil {
			return err
		}
		return tx.PutJSON(BucketInfo, digest, info)
	})
	if err != nil {
		return nil, false, err
	}
	if created {
		s.log.Info("module uploaded", "digest", digest, "bytes", len(module), "name", name)
	}
	return info, created, nil
}

// TooLargeError is an upload over the size cap.
type TooLargeError struct{ Size, Max int }

func (e *TooLargeError) Error() string {
	if e.Size < 0 {
		return fmt.Sprintf("the module is larger than the %d-byte limit; strip debug sections (-Wl,--strip-all, wasm-opt --strip-debug) or raise --wasm-max-module-bytes on the origin and every edge", e.Max)
	}
	return fmt.Sprintf("the module has %d bytes, over the %d-byte limit; strip debug sections (-Wl,--strip-all, wasm-opt --strip-debug) or raise --wasm-max-module-bytes on the origin and every edge", e.Size, e.Max)
}

func (s *Service) info(ctx context.Context, digest string) (*Info, error) {
	var info Info
	err := s.store.View(ctx, func(tx *store.Tx) error { return tx.GetJSON(BucketInfo, digest, &info) })
	if err != nil {
		return nil, err
	}
	return &info, nil
}

// List returns every stored module with what uses it, newest first.
func (s *Service) List(ctx context.Context) ([]Info, error) {
	var out []Info
	err := s.store.View(ctx, func(tx *store.Tx) error {
		infos, err := store.List[Info](tx, BucketInfo, "")
		if err != nil {
			return err
		}
		uses, err := usages(tx)
		if err != nil {
			return err
		}
		for _, in := range infos {
			u := uses[in.Digest]
			if u == nil {
				u = &Usage{}
			}
			in.UsedBy = u.sorted()
			out = append(out, in)
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b Info) int { return b.UploadedAt.Compare(a.UploadedAt) })
	return out, err
}

// Get returns one module's info with what uses it.
func (s *Service) Get(ctx context.Context, ref string) (*Info, error) {
	digest, err := ParseDigest(ref)
	if err != nil {
		return nil, &control.Error{Kind: control.Invalid, Msg: err.Error()}
	}
	var out *Info
	err = s.store.View(ctx, func(tx *store.Tx) error {
		var info Info
		if err := tx.GetJSON(BucketInfo, digest, &info); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return notUploaded(digest)
			}
			return err
		}
		uses, err := usages(tx)
		if err != nil {
			return err
		}
		u := uses[digest]
		if u == nil {
			u = &Usage{}
		}
		info.UsedBy = u.sorted()
		out = &info
		return nil
	})
	return out, err
}

// Delete removes a module no deployment, stage or API refers to.
func (s *Service) Delete(ctx context.Context, ref string) error {
	digest, err := ParseDigest(ref)
	if err != nil {
		return &control.Error{Kind: control.Invalid, Msg: err.Error()}
	}
	return s.store.Update(ctx, func(tx *store.Tx) error {
		var info Info
		if err := tx.GetJSON(BucketInfo, digest, &info); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return notUploaded(digest)
			}
			return err
		}
		uses, err := usages(tx)
		if err != nil {
			return err
		}
		if u := uses[digest]; u != nil && !u.empty() {
			return &control.Error{Kind: control.Conflict, Msg: fmt.Sprintf("module %s is in use by %s; detach it from those stages and APIs first. Deployments are kept for rollback: a module an old deployment uses can only go with its API", digest, u.sorted().describe())}
		}
		if err := tx.Delete(BucketModules, digest); err != nil {
			return err
		}
		return tx.Delete(BucketInfo, digest)
	})
}

// Module returns a stored module's bytes: the origin's wasm.ModuleSource.
//
// Admission runs inside the control plane's write transaction, and this
// opens a read transaction beside it in the same goroutine. That is safe
// with bbolt as long as the read ends before the write commits (a commit
// may remap the file and waits for readers), which it does: the bytes are
// copied out and the read transaction is closed before returning.
func (s *Service) Module(ctx context.Context, digest string) ([]byte, error) {
	d, err := ParseDigest(digest)
	if err != nil {
		return nil, err
	}
	var mod []byte
	err = s.store.View(ctx, func(tx *store.Tx) error {
		mod = tx.GetRaw(BucketModules, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if mod == nil {
		return nil, notUploaded(d)
	}
	return mod, nil
}

func notUploaded(digest string) error {
	return &control.Error{Kind: control.NotFound, Msg: fmt.Sprintf("no module %s is uploaded to this origin; upload the module file with `portico ctl plugins upload FILE` (its digest is the file's sha256sum)", digest)}
}

// usages maps every module digest named by a WASM policy to what names it.
func usages(tx *store.Tx) (map[string]*Usage, error) {
	out := map[string]*Usage{}
	use := func(d string) *Usage {
		u := out[d]
		if u == nil {
			u = &Usage{}
			out[d] = u
		}
		return u
	}
	apis, err := store.List[config.API](tx, store.BucketAPIs, "")
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, a := range apis {
		names[a.ID] = a.Name
		for _, d := range apiModules(&a) {
			use(d).APIs = append(use(d).APIs, a.Name)
		}
	}
	stages, err := store.List[config.Stage](tx, store.BucketStages, "")
	if err != nil {
		return nil, err
	}
	serving := map[string][]string{} // deployment ID -> stages serving it
	for _, st := range stages {
		if st.DeploymentID != "" {
			serving[st.DeploymentID] = append(serving[st.DeploymentID], st.Name)
		}
		for _, d := range policyModules(st.Policies) {
			use(d).Stages = append(use(d).Stages, names[st.APIID]+"/"+st.Name)
		}
	}
	err = tx.ForEach(store.BucketDeployments, "", func(id string, raw []byte) error {
		var dep config.Deployment
		if err := json.Unmarshal(raw, &dep); err != nil {
			return fmt.Errorf("decode deployment %q: %w (the database may be damaged)", id, err)
		}
		for _, d := range apiModules(&dep.API) {
			use(d).Deployments = append(use(d).Deployments, DeploymentUse{ID: dep.ID, API: dep.API.Name, Stages: serving[dep.ID]})
		}
		return nil
	})
	return out, err
}

// apiModules lists the modules an API's policies name, API-level and route.
func apiModules(a *config.API) []string {
	ds := policyModules(a.Policies)
	for i := range a.Routes {
		ds = append(ds, policyModules(a.Routes[i].Policies)...)
	}
	slices.Sort(ds)
	return slices.Compact(ds)
}

// policyModules lists the modules named by WASM policies. Configs are read
// leniently: a config the WASM factory would refuse still names its module.
func policyModules(ps []config.PolicySpec) []string {
	var out []string
	for _, p := range ps {
		if p.Type != wasm.TypeAuthorizer && p.Type != wasm.TypeTransform {
			continue
		}
		var c struct {
			Module string `json:"module"`
		}
		if json.Unmarshal(p.Config, &c) == nil && c.Module != "" {
			out = append(out, c.Module)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (u *Usage) sorted() *Usage {
	out := &Usage{Deployments: slices.Clone(u.Deployments), Stages: slices.Clone(u.Stages), APIs: slices.Clone(u.APIs)}
	if out.Deployments == nil {
		out.Deployments = []DeploymentUse{}
	}
	slices.SortFunc(out.Deployments, func(a, b DeploymentUse) int {
		if c := strings.Compare(a.API, b.API); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	out.Stages = sortedUnique(out.Stages)
	out.APIs = sortedUnique(out.APIs)
	return out
}

func sortedUnique(s []string) []string {
	if s == nil {
		return []string{}
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// describe names what uses a module, briefly, for an error message.
func (u *Usage) describe() string {
	var parts []string
	for _, d := range u.Deployments {
		p := "deployment " + d.ID + " of API " + d.API
		if len(d.Stages) > 0 {
			p += " (serving stage " + strings.Join(d.Stages, ", ") + ")"
		}
		parts = append(parts, p)
	}
	for _, s := range u.Stages {
		parts = append(parts, "the policies of stage "+s)
	}
	for _, a := range u.APIs {
		parts = append(parts, "the policies of API "+a)
	}
	if len(parts) > 10 {
		parts = append(parts[:10], fmt.Sprintf("%d more", len(parts)-10))
	}
	return strings.Join(parts, ", ")
}
