package main

// portico ctl: the admin API's command-line client. Every admin call has a
// command (ctlCommands lists them with the calls they make; a test checks
// that the admin server has no call without one). Commands print readable
// tables by default and, with -o json, the admin API's JSON unchanged.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// ctlCommand is one `portico ctl` command.
type ctlCommand struct {
	name string // the words after "ctl": "apis import"
	// args names the positional arguments. "[X]" is optional and "X..."
	// takes any number; both only at the end.
	args []string
	// required names the flags that must be given.
	required []string
	summary  string
	detail   string // more help, shown by `portico ctl help COMMAND`
	// calls are the admin calls the command makes, written as the admin
	// server's routes are ("PUT /v1/apis/{api}").
	calls []string
	// setup declares the command's own flags and returns what runs it.
	setup func(fs *flag.FlagSet) ctlRunFunc
}

type ctlRunFunc func(ctx context.Context, x *ctlEnv, args []string) error

// ctlCommands returns every command, in the order help lists them.
func ctlCommands() []ctlCommand {
	var cmds []ctlCommand
	cmds = append(cmds, ctlAPICommands()...)
	cmds = append(cmds, ctlStageCommands()...)
	cmds = append(cmds, ctlDeploymentCommands()...)
	cmds = append(cmds, ctlPluginCommands()...)
	cmds = append(cmds, ctlDomainCommands()...)
	cmds = append(cmds, ctlEdgeSiteCommands()...)
	cmds = append(cmds, ctlTokenCommands()...)
	cmds = append(cmds, ctlKeyCommands()...)
	cmds = append(cmds, ctlPlanCommands()...)
	cmds = append(cmds, ctlAccessKeyCommands()...)
	cmds = append(cmds, ctlCacheCommands()...)
	cmds = append(cmds, ctlStateCommands()...)
	cmds = append(cmds, ctlNodeCommands()...)
	cmds = append(cmds, ctlCommand{
		name: "help", args: []string{"[COMMAND...]"}, summary: "show the commands, or one command's flags and admin calls",
		setup: func(*flag.FlagSet) ctlRunFunc {
			return func(_ context.Context, x *ctlEnv, args []string) error { return ctlHelp(x.out, args) }
		},
	})
	return cmds
}

// ctlGlobal holds the flags every command accepts, before or after the
// command's name.
type ctlGlobal struct {
	adminURL, token, output string
	timeout                 time.Duration
}

func (g *ctlGlobal) register(fs *flag.FlagSet) {
	fs.StringVar(&g.adminURL, "admin-url", "", "the admin API's `URL` (default $PORTICO_ADMIN_URL, then adminUrl in the ctl config file, then http://127.0.0.1:9900)")
	fs.StringVar(&g.token, "token", "", "the admin `TOKEN` (default $PORTICO_TOKEN, then token in the ctl config file)")
	fs.StringVar(&g.output, "o", "table", "output `FORMAT`: table, or json for the admin API's JSON unchanged")
	fs.StringVar(&g.output, "output", "table", "the same as -o `FORMAT`")
	fs.DurationVar(&g.timeout, "timeout", 60*time.Second, "how long a command may take (a Go `DURATION`: 30s, 2m)")
}

// ctlGlobalFlags are the global flags' names; all of them take a value.
var ctlGlobalFlags = []string{"admin-url", "token", "o", "output", "timeout"}

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := ctlCommands()
	cmd, rest, err := findCtlCommand(cmds, args)
	if err != nil {
		// "portico ctl apis -h": the group's commands.
		if words := leadingWords(args); len(words) == 1 && len(ctlSubcommands(cmds, words[0])) > 0 && wantsHelp(args) {
			if err := ctlHelp(stdout, words); err != nil {
				return err
			}
			return errHelp
		}
		return err
	}
	if cmd == nil {
		// No command: the overview, as `portico` alone prints its own.
		return ctlHelp(stdout, nil)
	}
	var g ctlGlobal
	fs := ctlFlagSet(cmd)
	run := cmd.setup(fs)
	g.register(fs)
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		printCtlCommandHelp(stdout, cmd)
		return errHelp
	}
	if err != nil {
		return ctlUsage(cmd, "%v", err)
	}
	if err := checkCtlArgs(cmd, pos); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range cmd.required {
		if !set[name] {
			return ctlUsage(cmd, "%s is required", flagSyntax(fs.Lookup(name)))
		}
	}
	if g.output != "table" && g.output != "json" {
		return ctlUsage(cmd, "-o %q: use table or json", g.output)
	}
	if g.timeout <= 0 {
		return ctlUsage(cmd, "--timeout %v: give a positive duration such as 30s", g.timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	x := &ctlEnv{out: stdout, errOut: stderr, json: g.output == "json", global: g, cmd: cmd}
	return run(ctx, x, pos)
}

// findCtlCommand finds the command named by the leading words of args,
// skipping the global flags (and their values) that may come first, and
// returns the arguments without those words.
func findCtlCommand(cmds []ctlCommand, args []string) (*ctlCommand, []string, error) {
	var idx []int
	for i := 0; i < len(args) && len(idx) < 2; i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if slices.Contains(ctlGlobalFlags, name) {
				if !hasValue {
					i++ // its value
				}
				continue
			}
			if name == "h" || name == "help" {
				continue
			}
			break // a command's own flag: its name is complete
		}
		idx = append(idx, i)
	}
	words := make([]string, len(idx))
	for i, j := range idx {
		words[i] = args[j]
	}
	if len(words) == 0 {
		return nil, nil, nil
	}
	without := func(n int) []string {
		var rest []string
		for i, a := range args {
			if !slices.Contains(idx[:n], i) {
				rest = append(rest, a)
			}
		}
		return rest
	}
	for n := len(words); n >= 1; n-- {
		name := strings.Join(words[:n], " ")
		for i := range cmds {
			if cmds[i].name == name {
				return &cmds[i], without(n), nil
			}
		}
	}
	if subs := ctlSubcommands(cmds, words[0]); len(subs) > 0 {
		if len(words) == 1 {
			return nil, nil, usageError{fmt.Sprintf("%q needs a subcommand: %s\nusage: portico ctl %s <%s> ...", words[0], strings.Join(subs, ", "), words[0], strings.Join(subs, "|"))}
		}
		return nil, nil, usageError{fmt.Sprintf("unknown command \"%s %s\": %s has %s\nusage: portico ctl %s <%s> ...", words[0], words[1], words[0], strings.Join(subs, ", "), words[0], strings.Join(subs, "|"))}
	}
	return nil, nil, usageError{fmt.Sprintf("unknown command %q; `portico ctl help` lists the commands", words[0])}
}

func wantsHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "--help" || a == "-help" })
}

// leadingWords returns the arguments that are not flags, up to the first
// flag that is not a global one.
func leadingWords(args []string) []string {
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && a != "-" {
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if slices.Contains(ctlGlobalFlags, name) && !hasValue {
				i++
			}
			continue
		}
		words = append(words, a)
	}
	return words
}

// ctlSubcommands returns the second words of the commands in a group.
func ctlSubcommands(cmds []ctlCommand, group string) []string {
	var subs []string
	for _, c := range cmds {
		if g, sub, ok := strings.Cut(c.name, " "); ok && g == group {
			subs = append(subs, sub)
		}
	}
	return subs
}

// ctlFlagSet returns an empty flag set for a command that reports its
// errors itself rather than printing them.
func ctlFlagSet(cmd *ctlCommand) *flag.FlagSet {
	fs := flag.NewFlagSet("portico ctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// ownFlags returns a command's own flags, without the global ones.
func ownFlags(cmd *ctlCommand) []*flag.Flag {
	fs := ctlFlagSet(cmd)
	cmd.setup(fs)
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

// parseInterspersed parses flags wherever they are among the positional
// arguments, which it returns. "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func checkCtlArgs(cmd *ctlCommand, pos []string) error {
	min, max := 0, 0
	for _, a := range cmd.args {
		switch {
		case strings.HasSuffix(strings.TrimSuffix(a, "]"), "..."):
			max = -1
		case strings.HasPrefix(a, "["):
			max++
		default:
			min++
			max++
		}
	}
	if len(pos) < min {
		return ctlUsage(cmd, "missing %s", strings.Join(cmd.args[len(pos):min], " "))
	}
	if max >= 0 && len(pos) > max {
		return ctlUsage(cmd, "unexpected argument %q", pos[max])
	}
	return nil
}

// ctlUsage is a command-line mistake: the message, then the command's
// usage line; exit status 2.
func ctlUsage(cmd *ctlCommand, format string, args ...any) error {
	return usageError{fmt.Sprintf("ctl %s: %s\nusage: %s", cmd.name, fmt.Sprintf(format, args...), ctlUsageLine(cmd))}
}

// ctlUsageLine is "portico ctl NAME ARGS [--flag VALUE]... [global flags]".
func ctlUsageLine(cmd *ctlCommand) string {
	var b strings.Builder
	b.WriteString("portico ctl " + ctlSynopsis(cmd))
	for _, f := range ownFlags(cmd) {
		if slices.Contains(cmd.required, f.Name) {
			continue
		}
		b.WriteString(" [" + flagSyntax(f) + "]")
		if _, ok := f.Value.(*stringList); ok {
			b.WriteString("...")
		}
	}
	b.WriteString(" [global flags]")
	return b.String()
}

// ctlSynopsis is the command's name, arguments and required flags.
func ctlSynopsis(cmd *ctlCommand) string {
	parts := append([]string{cmd.name}, cmd.args...)
	if len(cmd.required) > 0 {
		fs := ctlFlagSet(cmd)
		cmd.setup(fs)
		for _, name := range cmd.required {
			parts = append(parts, flagSyntax(fs.Lookup(name)))
		}
	}
	return strings.Join(parts, " ")
}

func flagSyntax(f *flag.Flag) string {
	dash := "--"
	if len(f.Name) == 1 {
		dash = "-"
	}
	placeholder, _ := flag.UnquoteUsage(f)
	if placeholder == "" {
		return dash + f.Name
	}
	return dash + f.Name + " " + placeholder
}

// ctlHelp prints the overview, or the help of the command named by words.
func ctlHelp(w io.Writer, words []string) error {
	cmds := ctlCommands()
	if len(words) == 0 {
		fmt.Fprint(w, `portico ctl manages a Portico origin through its admin API.

Usage: portico ctl <command> [arguments] [flags]

Commands:
`)
		tw := newTable(w)
		for i := range cmds {
			fmt.Fprintf(tw, "  %s\t%s\n", ctlSynopsis(&cmds[i]), cmds[i].summary)
		}
		tw.Flush()
		fmt.Fprint(w, "\nGlobal flags (before or after the command):\n")
		printFlags(w, globalFlagList())
		fmt.Fprint(w, `
The admin URL and token come from the flags, else from the environment
(PORTICO_ADMIN_URL, PORTICO_TOKEN), else from the config file
$XDG_CONFIG_HOME/portico/ctl.yaml (or ~/.config/portico/ctl.yaml) with the
keys adminUrl and token. Run 'portico ctl help COMMAND' for a command's flags.
`)
		return nil
	}
	name := strings.Join(words, " ")
	for i := range cmds {
		if cmds[i].name == name {
			printCtlCommandHelp(w, &cmds[i])
			return nil
		}
	}
	if subs := ctlSubcommands(cmds, name); len(subs) > 0 {
		fmt.Fprintf(w, "portico ctl %s <%s>\n\n", name, strings.Join(subs, "|"))
		tw := newTable(w)
		for i := range cmds {
			if strings.HasPrefix(cmds[i].name, name+" ") {
				fmt.Fprintf(tw, "  %s\t%s\n", ctlSynopsis(&cmds[i]), cmds[i].summary)
			}
		}
		return tw.Flush()
	}
	return usageError{fmt.Sprintf("help: there is no command %q; `portico ctl help` lists them", name)}
}

func printCtlCommandHelp(w io.Writer, cmd *ctlCommand) {
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n", ctlUsageLine(cmd), upperFirst(cmd.summary))
	if cmd.detail != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.detail))
	}
	if own := ownFlags(cmd); len(own) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, own)
	}
	fmt.Fprint(w, "\nGlobal flags:\n")
	printFlags(w, globalFlagList())
	if len(cmd.calls) > 0 {
		fmt.Fprintf(w, "\nAdmin API: %s\n", strings.Join(cmd.calls, ", "))
	}
}

func globalFlagList() []*flag.Flag {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	var g ctlGlobal
	g.register(fs)
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

func printFlags(w io.Writer, flags []*flag.Flag) {
	tw := newTable(w)
	for _, f := range flags {
		_, usage := flag.UnquoteUsage(f)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		rep := ""
		if _, ok := f.Value.(*stringList); ok {
			rep = " (repeatable)"
		}
		fmt.Fprintf(tw, "  %s\t%s%s\n", flagSyntax(f), usage, rep)
	}
	tw.Flush()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// stringList is a repeatable flag.
type stringList struct {
	vals  []string
	check func(string) error
}

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.vals, ",")
}

func (l *stringList) Set(v string) error {
	if l.check != nil {
		if err := l.check(v); err != nil {
			return err
		}
	}
	l.vals = append(l.vals, v)
	return nil
}

func listFlag(fs *flag.FlagSet, name, usage string, check func(string) error) *stringList {
	l := &stringList{check: check}
	fs.Var(l, name, usage)
	return l
}

// oneOf checks a flag's value against a set, for flags whose mistakes the
// admin API would otherwise reject only after a round trip.
func oneOf(flagName, v string, allowed ...string) error {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("--%s %q: use %s", flagName, v, strings.Join(allowed, " or "))
}
