package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
)

// API keys, usage plans, usage and SigV4 access keys.

func ctlKeyCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "keys list", summary: "list API keys (never the keys themselves)",
			calls: []string{"GET /v1/api-keys"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						APIKeys []control.APIKeyInfo `json:"apiKeys"`
					}
					res, err := x.call(ctx, "GET", "/v1/api-keys", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, k := range out.APIKeys {
							rows = append(rows, []string{k.ID, k.Name, enabledWord(k.Enabled), strings.Join(k.PlanIDs, ", "), fmtTime(k.CreatedAt)})
						}
						return table(w, []string{"ID", "NAME", "STATE", "PLANS", "CREATED"}, rows)
					})
				}
			},
		},
		{
			name: "keys create", summary: "create an API key; the key is shown once",
			detail: `Portico generates the key (ptk_ and 40 letters and digits) and stores only
its SHA-256. Put it on usage plans with --plan here or later with
'plans attach': the api-key policy accepts a key only on stages one of its
plans covers (unless the policy says requirePlan: false).`,
			calls:    []string{"POST /v1/api-keys"},
			required: []string{"name"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				name := fs.String("name", "", "`NAME` saying who holds the key, such as the app")
				plans := listFlag(fs, "plan", "usage `PLAN` to put the key on", nil)
				disabled := fs.Bool("disabled", false, "create the key disabled")
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out control.NewAPIKey
					res, err := x.call(ctx, "POST", "/v1/api-keys", nil, map[string]any{"name": *name, "enabled": !*disabled, "planIds": plans.vals}, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "Created API key %s (%s). The key is shown only now and cannot be read back; store it now:\n\n  %s\n\n", out.ID, out.Name, out.Key)
						if len(out.PlanIDs) == 0 {
							fmt.Fprintf(w, "It is on no usage plan yet: portico ctl plans attach PLAN %s\n", out.ID)
						} else {
							fmt.Fprintf(w, "On usage %s %s.\n", pluralWord(len(out.PlanIDs), "plan", "plans"), strings.Join(out.PlanIDs, ", "))
						}
						_, err := fmt.Fprintln(w, "Callers send it in the header (or query parameter) the api-key policy names, x-api-key by default.")
						return err
					})
				}
			},
		},
		{
			name: "keys import", summary: "store an existing API key (for example one from API Gateway); only its hash is kept",
			detail: `The key must have 20 to 128 printable ASCII characters. Give it in a file
(--value-file FILE, or - for standard input) rather than with --value, which
other users of the machine can see in the process list.`,
			calls:    []string{"POST /v1/api-keys/import"},
			required: []string{"name"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				name := fs.String("name", "", "`NAME` saying who holds the key")
				valueFile := fs.String("value-file", "", "`FILE` holding the key (- for standard input)")
				value := fs.String("value", "", "the key `VALUE` itself")
				plans := listFlag(fs, "plan", "usage `PLAN` to put the key on", nil)
				disabled := fs.Bool("disabled", false, "import the key disabled")
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					if (*value == "") == (*valueFile == "") {
						return ctlUsage(x.cmd, "give the key with --value-file FILE or --value VALUE (one of them)")
					}
					key := *value
					if *valueFile != "" {
						var b []byte
						var err error
						if *valueFile == "-" {
							b, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
						} else {
							b, err = os.ReadFile(*valueFile)
						}
						if err != nil {
							return fmt.Errorf("read the key: %w", err)
						}
						key = strings.TrimSpace(string(b))
					}
					if err := config.CheckAPIKeyValue(key); err != nil {
						return ctlUsage(x.cmd, "%v", err)
					}
					var out control.APIKeyInfo
					res, err := x.call(ctx, "POST", "/v1/api-keys/import", nil, map[string]any{"name": *name, "value": key, "enabled": !*disabled, "planIds": plans.vals}, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "Imported API key %s (%s); only its hash is stored.\n\n", out.ID, out.Name)
						return keyBlock(w, &out)
					})
				}
			},
		},
		{
			name: "keys get", args: []string{"KEY"}, summary: "show an API key",
			calls: []string{"GET /v1/api-keys/{id}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var k control.APIKeyInfo
					res, err := x.call(ctx, "GET", apiPath("/v1/api-keys/%s", args[0]), nil, nil, &k)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error { return keyBlock(w, &k) })
				}
			},
		},
		keyPatchCommand("keys enable", "enable an API key", true, "Enabled"),
		keyPatchCommand("keys disable", "disable an API key; edges refuse it within a second", false, "Disabled"),
		{
			name: "keys rename", args: []string{"KEY", "NAME"}, summary: "rename an API key",
			calls: []string{"PATCH /v1/api-keys/{id}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var k control.APIKeyInfo
					res, err := x.call(ctx, "PATCH", apiPath("/v1/api-keys/%s", args[0]), nil, map[string]any{"name": args[1]}, &k)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "API key %s is now named %s.\n", k.ID, k.Name)
						return err
					})
				}
			},
		},
		{
			name: "keys delete", args: []string{"KEY"}, summary: "delete an API key with its usage",
			calls: []string{"DELETE /v1/api-keys/{id}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/api-keys/%s", args[0]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deleted API key %s and its usage.\n", args[0])
						return err
					})
				}
			},
		},
		{
			name: "keys usage", args: []string{"KEY"}, summary: "show an API key's requests per day, across its plans",
			detail: `Days are UTC. Edges report usage every 10 seconds (portico edge
--usage-interval), so the last seconds may be missing.`,
			calls: []string{"GET /v1/api-keys/{id}/usage"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				from, to := usageRangeFlags(fs)
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var u control.Usage
					res, err := x.call(ctx, "GET", apiPath("/v1/api-keys/%s/usage", args[0]), usageQuery(*from, *to, ""), nil, &u)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						name := args[0]
						if len(u.Keys) == 1 && u.Keys[0].Name != "" {
							name += " (" + u.Keys[0].Name + ")"
						}
						fmt.Fprintf(w, "API key %s made %s from %s to %s (UTC).\n", name, pluralWord64(u.Total, "request", "requests"), u.From, u.To)
						if u.Total == 0 {
							return nil
						}
						fmt.Fprintln(w)
						var rows [][]string
						for _, k := range u.Keys {
							for _, d := range k.Days {
								rows = append(rows, []string{d.Day, strconv.FormatInt(d.Count, 10)})
							}
						}
						return table(w, []string{"DAY", "REQUESTS"}, rows)
					})
				}
			},
		},
	}
}

func keyPatchCommand(name, summary string, enabled bool, verb string) ctlCommand {
	return ctlCommand{
		name: name, args: []string{"KEY"}, summary: summary,
		calls: []string{"PATCH /v1/api-keys/{id}"},
		setup: func(*flag.FlagSet) ctlRunFunc {
			return func(ctx context.Context, x *ctlEnv, args []string) error {
				var k control.APIKeyInfo
				res, err := x.call(ctx, "PATCH", apiPath("/v1/api-keys/%s", args[0]), nil, map[string]any{"enabled": enabled}, &k)
				if err != nil {
					return err
				}
				return x.show(res, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "%s API key %s (%s).\n", verb, k.ID, k.Name)
					return err
				})
			}
		},
	}
}

func keyBlock(w io.Writer, k *control.APIKeyInfo) error {
	return block(w, "ID", k.ID, "Name", k.Name, "State", enabledWord(k.Enabled), "Plans", strings.Join(k.PlanIDs, ", "), "Created", fmtTime(k.CreatedAt))
}

func enabledWord(on bool) string {
	if on {
		return "enabled"
	}
	return "disabled"
}

func usageRangeFlags(fs *flag.FlagSet) (from, to *string) {
	from, to = new(string), new(string)
	day := func(dst *string) func(string) error {
		return func(v string) error {
			if d, err := time.Parse(time.DateOnly, v); err != nil || d.Format(time.DateOnly) != v {
				return fmt.Errorf("%q is not a date: write YYYY-MM-DD", v)
			}
			*dst = v
			return nil
		}
	}
	fs.Func("from", "first `DAY` (YYYY-MM-DD, UTC; default 29 days before --to)", day(from))
	fs.Func("to", "last `DAY` (YYYY-MM-DD, UTC, inclusive; default today)", day(to))
	return from, to
}

func usageQuery(from, to, key string) url.Values {
	q := url.Values{}
	if from != "" {
		q.Set("from", from)
	}
	if to != "" {
		q.Set("to", to)
	}
	if key != "" {
		q.Set("keyId", key)
	}
	return q
}

// planFlags are the flags that shape a usage plan.
type planFlags struct {
	fs                  *flag.FlagSet
	id, name, desc      *string
	rate                *float64
	burst, quota        *int64
	period, file        *string
	stages, methodRates *stringList
}

func registerPlanFlags(fs *flag.FlagSet, withID bool) *planFlags {
	p := &planFlags{fs: fs}
	if withID {
		p.id = fs.String("id", "", "the plan's `ID`, such as gold (generated when not given)")
	}
	p.name = fs.String("name", "", "the plan's `NAME`")
	p.desc = fs.String("description", "", "the plan's description `TEXT`")
	p.rate = fs.Float64("rate", 0, "default throttle per key: requests per second on average (`N`; 0: no throttle)")
	p.burst = fs.Int64("burst", 0, "default throttle per key: requests at once (`N`)")
	p.quota = fs.Int64("quota", 0, "requests per key per --period (`N`; 0: no quota)")
	p.period = fs.String("period", "", "quota `PERIOD`: DAY, WEEK or MONTH (UTC; weeks start on Monday)")
	p.stages = listFlag(fs, "stage", "an API stage the plan covers, `API:STAGE` or API:STAGE=RATE/BURST to override the throttle there", func(v string) error {
		_, err := parseStageFlag(v)
		return err
	})
	p.methodRates = listFlag(fs, "method-throttle", "a route's throttle on a stage, `API:STAGE:METHOD PATH=RATE/BURST`, as \"pets:prod:GET /pets/{id}=5/10\"", func(v string) error {
		_, _, _, _, err := parseMethodThrottle(v)
		return err
	})
	p.file = fs.String("f", "", "plan `FILE` (YAML or JSON, the admin API's UsagePlanInput) instead of the flags above")
	return p
}

// planFlagNames are the flags registerPlanFlags declares.
var planFlagNames = []string{"id", "name", "description", "rate", "burst", "quota", "period", "stage", "method-throttle", "f"}

// set reports which plan flags were given (not the global ones).
func (p *planFlags) set() map[string]bool {
	set := map[string]bool{}
	p.fs.Visit(func(f *flag.Flag) {
		if slices.Contains(planFlagNames, f.Name) {
			set[f.Name] = true
		}
	})
	return set
}

// input builds the plan to send: from -f, or from base (the stored plan,
// for update; empty for create) changed by the flags given.
func (p *planFlags) input(cmd *ctlCommand, base control.UsagePlanInput) (control.UsagePlanInput, error) {
	set := p.set()
	if set["f"] {
		for _, name := range []string{"name", "description", "rate", "burst", "quota", "period", "stage", "method-throttle"} {
			if set[name] {
				return base, ctlUsage(cmd, "-f FILE holds the whole plan; do not give --%s with it", name)
			}
		}
		in, err := readPlanFile(*p.file)
		if err != nil {
			return base, err
		}
		if p.id != nil && set["id"] {
			in.ID = *p.id
		}
		return in, nil
	}
	in := base
	if p.id != nil && set["id"] {
		in.ID = *p.id
	}
	if set["name"] {
		in.Name = *p.name
	}
	if set["description"] {
		in.Description = *p.desc
	}
	if set["rate"] {
		in.Rate = *p.rate
	}
	if set["burst"] {
		in.Burst = int(*p.burst)
	}
	if set["quota"] || set["period"] {
		switch {
		case set["quota"] && *p.quota == 0:
			if set["period"] {
				return in, ctlUsage(cmd, "--quota 0 removes the quota; do not give --period with it")
			}
			in.Quota = nil
		default:
			q := config.Quota{}
			if in.Quota != nil {
				q = *in.Quota
			}
			if set["quota"] {
				q.Limit = *p.quota
			}
			if set["period"] {
				q.Period = config.QuotaPeriod(strings.ToUpper(*p.period))
			}
			if q.Limit <= 0 {
				return in, ctlUsage(cmd, "--period needs --quota N (requests per period)")
			}
			if q.Period == "" {
				return in, ctlUsage(cmd, "--quota needs --period DAY, WEEK or MONTH")
			}
			if err := oneOf("period", string(q.Period), "DAY", "WEEK", "MONTH"); err != nil {
				return in, ctlUsage(cmd, "%v", err)
			}
			in.Quota = &q
		}
	}
	if set["stage"] {
		in.Stages = nil
		for _, v := range p.stages.vals {
			s, _ := parseStageFlag(v) // checked when the flag was set
			if slices.ContainsFunc(in.Stages, func(o config.PlanStage) bool { return o.APIID == s.APIID && o.Stage == s.Stage }) {
				return in, ctlUsage(cmd, "--stage %s:%s is given twice", s.APIID, s.Stage)
			}
			in.Stages = append(in.Stages, s)
		}
	}
	if set["method-throttle"] {
		// The flags give every route throttle: those stored before are
		// replaced.
		for i := range in.Stages {
			in.Stages[i].Methods = nil
		}
		for _, v := range p.methodRates.vals {
			api, stage, route, th, _ := parseMethodThrottle(v) // checked when the flag was set
			i := slices.IndexFunc(in.Stages, func(s config.PlanStage) bool { return s.APIID == api && s.Stage == stage })
			if i < 0 {
				return in, ctlUsage(cmd, "--method-throttle %q: the plan does not cover %s:%s; add --stage %s:%s", v, api, stage, api, stage)
			}
			if in.Stages[i].Methods == nil {
				in.Stages[i].Methods = map[string]config.Throttle{}
			}
			in.Stages[i].Methods[route] = th
		}
	}
	return in, nil
}

// parseThrottle parses RATE/BURST, such as 10/20 or 0.5/1.
func parseThrottle(v string) (config.Throttle, error) {
	r, b, ok := strings.Cut(v, "/")
	rate, err1 := strconv.ParseFloat(r, 64)
	burst, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return config.Throttle{}, fmt.Errorf("%q is not RATE/BURST, such as 10/20", v)
	}
	th := config.Throttle{Rate: rate, Burst: burst}
	if err := config.CheckThrottle(th); err != nil {
		return th, err
	}
	return th, nil
}

// parseStageFlag parses API:STAGE or API:STAGE=RATE/BURST.
func parseStageFlag(v string) (config.PlanStage, error) {
	ref, th, hasTh := strings.Cut(v, "=")
	api, stage, ok := strings.Cut(ref, ":")
	if !ok || api == "" || stage == "" {
		return config.PlanStage{}, fmt.Errorf("%q is not API:STAGE (or API:STAGE=RATE/BURST), such as pets:prod", v)
	}
	s := config.PlanStage{APIID: api, Stage: stage}
	if hasTh {
		t, err := parseThrottle(th)
		if err != nil {
			return s, fmt.Errorf("%q: %w", v, err)
		}
		s.Throttle = &t
	}
	return s, nil
}

// parseMethodThrottle parses API:STAGE:METHOD PATH=RATE/BURST.
func parseMethodThrottle(v string) (api, stage, route string, th config.Throttle, err error) {
	bad := fmt.Errorf("%q is not API:STAGE:METHOD PATH=RATE/BURST, such as \"pets:prod:GET /pets/{id}=5/10\"", v)
	i := strings.LastIndex(v, "=")
	if i < 0 {
		return "", "", "", th, bad
	}
	if th, err = parseThrottle(v[i+1:]); err != nil {
		return "", "", "", th, fmt.Errorf("%q: %w", v, err)
	}
	parts := strings.SplitN(v[:i], ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", th, bad
	}
	if err := config.CheckRouteKey(parts[2]); err != nil {
		return "", "", "", th, fmt.Errorf("%q: %w", v, err)
	}
	return parts[0], parts[1], parts[2], th, nil
}

// readPlanFile reads a UsagePlanInput from YAML or JSON, refusing unknown
// fields so that a misspelt one is an error here.
func readPlanFile(path string) (control.UsagePlanInput, error) {
	var in control.UsagePlanInput
	data, err := os.ReadFile(path)
	if err != nil {
		return in, fmt.Errorf("read the plan file: %w", err)
	}
	j, err := yamlToJSON(data)
	if err != nil {
		return in, fmt.Errorf("%s: not valid YAML or JSON: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, fmt.Errorf("%s: %w (a plan has id, name, description, rate, burst, quota {limit, period} and stages [{apiId, stage, throttle, methods}])", path, err)
	}
	return in, nil
}

func planInput(p *config.UsagePlan) control.UsagePlanInput {
	return control.UsagePlanInput{Name: p.Name, Description: p.Description, Rate: p.Rate, Burst: p.Burst, Quota: p.Quota, Stages: p.Stages}
}

func ctlPlanCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "plans list", summary: "list usage plans",
			calls: []string{"GET /v1/usage-plans"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						UsagePlans []config.UsagePlan `json:"usagePlans"`
					}
					res, err := x.call(ctx, "GET", "/v1/usage-plans", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						names := apiNames(ctx, x)
						var rows [][]string
						for _, p := range out.UsagePlans {
							var st []string
							for _, s := range p.Stages {
								st = append(st, names.of(s.APIID)+":"+s.Stage)
							}
							rows = append(rows, []string{p.ID, p.Name, fmtThrottle(p.Rate, p.Burst), fmtQuota(p.Quota), strings.Join(st, " ")})
						}
						return table(w, []string{"ID", "NAME", "THROTTLE", "QUOTA", "STAGES"}, rows)
					})
				}
			},
		},
		{
			name: "plans get", args: []string{"PLAN"}, summary: "show a usage plan with its stages and route throttles",
			calls: []string{"GET /v1/usage-plans/{plan}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var p config.UsagePlan
					res, err := x.call(ctx, "GET", apiPath("/v1/usage-plans/%s", args[0]), nil, nil, &p)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error { return planBlock(ctx, w, x, &p) })
				}
			},
		},
		{
			name: "plans create", summary: "create a usage plan: throttle and quota per key, on the API stages it covers",
			detail: `Every API stage the plan names must exist (the API by name or ID). A key
may be on several plans, but only on one per API stage. Examples:

  portico ctl plans create --id gold --name Gold --rate 50 --burst 100 \
      --quota 100000 --period MONTH --stage pets:prod --stage pets:beta=10/20 \
      --method-throttle "pets:prod:POST /pets=5/10"
  portico ctl plans create -f gold.yaml`,
			calls: []string{"POST /v1/usage-plans"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				pf := registerPlanFlags(fs, true)
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					in, err := pf.input(x.cmd, control.UsagePlanInput{})
					if err != nil {
						return err
					}
					if in.Name == "" {
						return ctlUsage(x.cmd, "--name NAME is required (or -f FILE with a name)")
					}
					var p config.UsagePlan
					res, err := x.call(ctx, "POST", "/v1/usage-plans", nil, in, &p)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "Created usage plan %s. Put keys on it with: portico ctl plans attach %s KEY\n\n", p.ID, p.ID)
						return planBlock(ctx, w, x, &p)
					})
				}
			},
		},
		{
			name: "plans update", args: []string{"PLAN"}, summary: "change a usage plan: the flags given replace those settings, the others are kept",
			detail: `--stage replaces the plan's stages with those given; --method-throttle
replaces every route throttle. --quota 0 removes the quota, --rate 0 the
throttle. With -f FILE the file replaces the whole plan.`,
			calls: []string{"GET /v1/usage-plans/{plan}", "PUT /v1/usage-plans/{plan}"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				pf := registerPlanFlags(fs, false)
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					if len(pf.set()) == 0 {
						return ctlUsage(x.cmd, "nothing to change: give the settings to change, or -f FILE")
					}
					var base control.UsagePlanInput
					if !pf.set()["f"] {
						var cur config.UsagePlan
						if _, err := x.call(ctx, "GET", apiPath("/v1/usage-plans/%s", args[0]), nil, nil, &cur); err != nil {
							return err
						}
						base = planInput(&cur)
					}
					in, err := pf.input(x.cmd, base)
					if err != nil {
						return err
					}
					var p config.UsagePlan
					res, err := x.call(ctx, "PUT", apiPath("/v1/usage-plans/%s", args[0]), nil, in, &p)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "Updated usage plan %s.\n\n", p.ID)
						return planBlock(ctx, w, x, &p)
					})
				}
			},
		},
		{
			name: "plans delete", args: []string{"PLAN"}, summary: "delete a usage plan with its usage (refused while keys are on it)",
			calls: []string{"DELETE /v1/usage-plans/{plan}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/usage-plans/%s", args[0]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deleted usage plan %s.\n", args[0])
						return err
					})
				}
			},
		},
		{
			name: "plans attach", args: []string{"PLAN", "KEY"}, summary: "put an API key on a usage plan (one plan per API stage)",
			calls: []string{"PUT /v1/usage-plans/{plan}/keys/{key}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var k control.APIKeyInfo
					res, err := x.call(ctx, "PUT", apiPath("/v1/usage-plans/%s/keys/%s", args[0], args[1]), nil, nil, &k)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "API key %s (%s) is on usage %s %s.\n", k.ID, k.Name, pluralWord(len(k.PlanIDs), "plan", "plans"), strings.Join(k.PlanIDs, ", "))
						return err
					})
				}
			},
		},
		{
			name: "plans detach", args: []string{"PLAN", "KEY"}, summary: "take an API key off a usage plan (its usage there stays readable)",
			calls: []string{"DELETE /v1/usage-plans/{plan}/keys/{key}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/usage-plans/%s/keys/%s", args[0], args[1]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "API key %s is no longer on usage plan %s.\n", args[1], args[0])
						return err
					})
				}
			},
		},
		{
			name: "plans usage", args: []string{"PLAN"}, summary: "show the requests per key per day made under a usage plan",
			detail: `Lists every key on the plan (and keys that were on it and made requests
in the range), with totals. Days are UTC.`,
			calls: []string{"GET /v1/usage-plans/{plan}/usage"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				from, to := usageRangeFlags(fs)
				key := fs.String("key", "", "only this API `KEY`")
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var u control.Usage
					res, err := x.call(ctx, "GET", apiPath("/v1/usage-plans/%s/usage", args[0]), usageQuery(*from, *to, *key), nil, &u)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "Usage plan %s: %s from %s to %s (UTC).\n\n", args[0], pluralWord64(u.Total, "request", "requests"), u.From, u.To)
						var rows, days [][]string
						for _, k := range u.Keys {
							rows = append(rows, []string{k.KeyID, k.Name, strconv.FormatInt(k.Total, 10)})
							for _, d := range k.Days {
								days = append(days, []string{k.KeyID, d.Day, strconv.FormatInt(d.Count, 10)})
							}
						}
						if err := table(w, []string{"KEY", "NAME", "REQUESTS"}, rows); err != nil || len(days) == 0 {
							return err
						}
						fmt.Fprintln(w)
						return table(w, []string{"KEY", "DAY", "REQUESTS"}, days)
					})
				}
			},
		},
	}
}

// apiNameMap maps API IDs to names for display.
type apiNameMap map[string]string

func (m apiNameMap) of(id string) string {
	if n, ok := m[id]; ok {
		return n
	}
	return id
}

// apiNames fetches the API names; when it cannot, tables show IDs.
func apiNames(ctx context.Context, x *ctlEnv) apiNameMap {
	m := apiNameMap{}
	var out struct {
		APIs []apiSummary `json:"apis"`
	}
	if _, err := x.call(ctx, "GET", "/v1/apis", nil, nil, &out); err == nil {
		for _, a := range out.APIs {
			m[a.ID] = a.Name
		}
	}
	return m
}

func fmtThrottle(rate float64, burst int) string {
	if rate == 0 {
		return "none"
	}
	return strconv.FormatFloat(rate, 'f', -1, 64) + "/s, burst " + strconv.Itoa(burst)
}

func fmtQuota(q *config.Quota) string {
	if q == nil {
		return "none"
	}
	return strconv.FormatInt(q.Limit, 10) + " per " + string(q.Period)
}

func planBlock(ctx context.Context, w io.Writer, x *ctlEnv, p *config.UsagePlan) error {
	if err := block(w, "ID", p.ID, "Name", p.Name, "Description", p.Description, "Throttle per key", fmtThrottle(p.Rate, p.Burst),
		"Quota per key", fmtQuota(p.Quota), "Created", fmtTime(p.CreatedAt), "Updated", fmtTime(p.UpdatedAt)); err != nil {
		return err
	}
	if len(p.Stages) == 0 {
		_, err := fmt.Fprintln(w, "\nThe plan covers no API stage yet: its keys are accepted nowhere. Add one with --stage API:STAGE.")
		return err
	}
	fmt.Fprintln(w)
	names := apiNames(ctx, x)
	var rows [][]string
	for _, s := range p.Stages {
		th := "plan's"
		if s.Throttle != nil {
			th = fmtThrottle(s.Throttle.Rate, s.Throttle.Burst)
		}
		rows = append(rows, []string{names.of(s.APIID), s.Stage, "", th})
		routes := make([]string, 0, len(s.Methods))
		for rk := range s.Methods {
			routes = append(routes, rk)
		}
		slices.Sort(routes)
		for _, rk := range routes {
			t := s.Methods[rk]
			rows = append(rows, []string{names.of(s.APIID), s.Stage, rk, fmtThrottle(t.Rate, t.Burst)})
		}
	}
	return table(w, []string{"API", "STAGE", "ROUTE", "THROTTLE"}, rows)
}

// pluralWord is the word alone, where plural writes the number too.
func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func pluralWord64(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

func ctlAccessKeyCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "access-keys list", summary: "list SigV4 access keys (never their secrets)",
			calls: []string{"GET /v1/access-keys"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						AccessKeys []control.AccessKeyInfo `json:"accessKeys"`
					}
					res, err := x.call(ctx, "GET", "/v1/access-keys", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, a := range out.AccessKeys {
							rows = append(rows, []string{a.ID, a.Principal, enabledWord(a.Enabled), fmtTime(a.CreatedAt)})
						}
						return table(w, []string{"ID", "PRINCIPAL", "STATE", "CREATED"}, rows)
					})
				}
			},
		},
		{
			name: "access-keys create", summary: "create a SigV4 access key for a principal; the secret is shown once",
			detail: `The principal is sent to the origin as X-Portico-Principal on every
request the key signs. Callers sign with the access key ID and secret as AWS
SDKs, the AWS CLI's signing helpers or curl --aws-sigv4 do.`,
			calls:    []string{"POST /v1/access-keys"},
			required: []string{"principal"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				principal := fs.String("principal", "", "the `PRINCIPAL` the key stands for, such as arn:portico:user/alice")
				disabled := fs.Bool("disabled", false, "create the key disabled")
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out control.NewAccessKey
					res, err := x.call(ctx, "POST", "/v1/access-keys", nil, map[string]any{"principal": *principal, "enabled": !*disabled}, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "Created access key %s for %s. The secret is shown only now and cannot be read back; store it now:\n\n", out.ID, out.Principal)
						if err := block(w, "  Access key ID", out.ID, "  Secret access key", out.Secret); err != nil {
							return err
						}
						_, err := fmt.Fprintf(w, "\nSign with it, for example: curl --aws-sigv4 \"aws:amz:REGION:execute-api\" --user \"%s:SECRET\" URL\n", out.ID)
						return err
					})
				}
			},
		},
		accessKeyPatchCommand("access-keys enable", "enable an access key", true, "Enabled"),
		accessKeyPatchCommand("access-keys disable", "disable an access key; edges refuse its signatures within a second", false, "Disabled"),
		{
			name: "access-keys delete", args: []string{"ID"}, summary: "delete an access key",
			calls: []string{"DELETE /v1/access-keys/{id}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/access-keys/%s", args[0]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deleted access key %s.\n", args[0])
						return err
					})
				}
			},
		},
	}
}

func accessKeyPatchCommand(name, summary string, enabled bool, verb string) ctlCommand {
	return ctlCommand{
		name: name, args: []string{"ID"}, summary: summary,
		calls: []string{"PATCH /v1/access-keys/{id}"},
		setup: func(*flag.FlagSet) ctlRunFunc {
			return func(ctx context.Context, x *ctlEnv, args []string) error {
				var a control.AccessKeyInfo
				res, err := x.call(ctx, "PATCH", apiPath("/v1/access-keys/%s", args[0]), nil, map[string]any{"enabled": enabled}, &a)
				if err != nil {
					return err
				}
				return x.show(res, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "%s access key %s (%s).\n", verb, a.ID, a.Principal)
					return err
				})
			}
		},
	}
}
