package importer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The importer reads a document once into its own tree and works on that
// tree only: the checks that give pointers and lines, the route extraction,
// and the JSON handed to kin-openapi for validation all come from the same
// parse, so no YAML quirk (merge keys, aliases, duplicate keys, tags) can make
// the validator see a different document than the one that was checked.

// Bounds on the work one document may cause. Size is bounded by
// Options.MaxDocumentBytes.
const (
	// maxDepth bounds nesting. Real documents stay well under 64; the
	// bound keeps recursive walkers (ours and kin-openapi's) far from
	// exhausting the stack.
	maxDepth = 200
	// maxNodes bounds the values a document expands to, counting every
	// use of a YAML alias: a small document of nested aliases (a "billion
	// laughs") would otherwise expand to gigabytes. GitHub's 13 MB
	// description has about 260,000, nested 22 deep.
	maxNodes = 2_000_000
	// maxAliasNodes bounds the values produced by expanding YAML aliases,
	// which real documents use for a few shared responses or parameters.
	maxAliasNodes = 200_000
)

type kind uint8

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kObject
	kArray
)

func (k kind) String() string {
	switch k {
	case kNull:
		return "null"
	case kBool:
		return "a boolean"
	case kNumber:
		return "a number"
	case kString:
		return "a string"
	case kObject:
		return "an object"
	case kArray:
		return "an array"
	}
	return "unknown"
}

// node is one value of the document. Scalars keep their text: a string's
// value, a number's literal, "true" or "false".
type node struct {
	kind  kind
	text  string
	keys  []string       // object keys, in document order
	vals  []*node        // object values (parallel to keys) or array items
	index map[string]int // key -> position, for objects with many keys
	line  int32
}

const indexFrom = 12

// get returns the value of key in an object, or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != kObject {
		return nil
	}
	if n.index != nil {
		if i, ok := n.index[key]; ok {
			return n.vals[i]
		}
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

// has reports whether an object holds key.
func (n *node) has(key string) bool { return n.get(key) != nil }

// str returns a string value and whether n is a string.
func (n *node) str() (string, bool) {
	if n == nil || n.kind != kString {
		return "", false
	}
	return n.text, true
}

// set adds a key to an object under construction; it reports false when the
// key is already there.
func (n *node) set(key string, v *node) bool {
	if n.index != nil {
		if _, dup := n.index[key]; dup {
			return false
		}
	} else {
		for _, k := range n.keys {
			if k == key {
				return false
			}
		}
	}
	n.keys = append(n.keys, key)
	n.vals = append(n.vals, v)
	if n.index != nil {
		n.index[key] = len(n.keys) - 1
	} else if len(n.keys) == indexFrom {
		n.index = make(map[string]int, 2*indexFrom)
		for i, k := range n.keys {
			n.index[k] = i
		}
	}
	return true
}

// parseError is a document that cannot be read at all.
type parseError struct {
	line int
	msg  string
}

// parseDocument reads JSON or YAML bytes into a tree.
func parseDocument(doc []byte) (*node, *parseError) {
	if !utf8.Valid(doc) {
		return nil, &parseError{msg: "the document is not valid UTF-8 text; save it as UTF-8 JSON or YAML"}
	}
	// A byte order mark is allowed by YAML and common in files saved on
	// Windows; the JSON decoder would refuse it.
	doc = bytes.TrimPrefix(doc, []byte("\ufeff"))
	trimmed := bytes.TrimLeft(doc, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &parseError{msg: "the document is empty; import an OpenAPI 3.0, 3.1 or Swagger 2.0 document"}
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		return parseJSON(doc)
	}
	return parseYAML(doc)
}

// jsonParser builds a tree from JSON tokens, tracking lines.
type jsonParser struct {
	src   []byte
	dec   *json.Decoder
	off   int // offset up to which lines were counted
	line  int32
	nodes int
}

func parseJSON(doc []byte) (*node, *parseError) {
	p := &jsonParser{src: doc, dec: json.NewDecoder(bytes.NewReader(doc)), line: 1}
	p.dec.UseNumber()
	root, perr := p.value(0)
	if perr != nil {
		return nil, perr
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, &parseError{line: p.lineAt(int(p.dec.InputOffset())), msg: "the JSON document has more content after its end; a document is exactly one JSON object"}
	}
	return root, nil
}

// lineAt returns the line of offset off, which never decreases between calls.
func (p *jsonParser) lineAt(off int) int {
	if off > len(p.src) {
		off = len(p.src)
	}
	if off > p.off {
		p.line += int32(bytes.Count(p.src[p.off:off], []byte{'\n'}))
		p.off = off
	}
	return int(p.line)
}

// startLine returns the line at which the next token starts.
func (p *jsonParser) startLine() int32 {
	off := int(p.dec.InputOffset())
	for off < len(p.src) {
		switch p.src[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return int32(p.lineAt(off))
}

func (p *jsonParser) syntax(err error) *parseError {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// Counted afresh: startLine may have skipped past the offending
		// byte when it is a ',' or ':'.
		off := min(int(se.Offset), len(p.src))
		line := 1 + bytes.Count(p.src[:max(off-1, 0)], []byte{'\n'})
		return &parseError{line: line, msg: "the document is not valid JSON: " + se.Error()}
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return &parseError{line: p.lineAt(len(p.src)), msg: "the JSON document ends in the middle of a value; it may have been cut off"}
	}
	return &parseError{line: p.lineAt(int(p.dec.InputOffset())), msg: "the document is not valid JSON: " + err.Error()}
}

func (p *jsonParser) value(depth int) (*node, *parseError) {
	if depth > maxDepth {
		return nil, &parseError{line: int(p.startLine()), msg: fmt.Sprintf("the document nests deeper than %d levels; Portico refuses such documents to bound the work of an import", maxDepth)}
	}
	p.nodes++
	if p.nodes > maxNodes {
		return nil, &parseError{line: int(p.startLine()), msg: fmt.Sprintf("the document holds more than %d values; Portico refuses such documents to bound the work of an import: split the API", maxNodes)}
	}
	line := p.startLine()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(err)
	}
	n := &node{line: line}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n.kind = kObject
			for p.dec.More() {
				kline := p.startLine()
				kt, err := p.dec.Token()
				if err != nil {
					return nil, p.syntax(err)
				}
				key, _ := kt.(string)
				v, perr := p.value(depth + 1)
				if perr != nil {
					return nil, perr
				}
				if !n.set(key, v) {
					return nil, &parseError{line: int(kline), msg: fmt.Sprintf("key %q appears twice in the same object; JSON parsers disagree on which one wins, so remove one", key)}
				}
			}
		case '[':
			n.kind = kArray
			for p.dec.More() {
				v, perr := p.value(depth + 1)
				if perr != nil {
					return nil, perr
				}
				n.vals = append(n.vals, v)
			}
		}
		if _, err := p.dec.Token(); err != nil { // the closing delimiter
			return nil, p.syntax(err)
		}
	case string:
		n.kind, n.text = kString, t
	case json.Number:
		n.kind, n.text = kNumber, string(t)
	case bool:
		n.kind, n.text = kBool, strconv.FormatBool(t)
	case nil:
		n.kind = kNull
	}
	return n, nil
}

// yamlConverter turns a yaml.v3 node tree into ours, expanding aliases and
// merge keys under the node budget.
type yamlConverter struct {
	nodes int
	// aliased counts values produced while expanding aliases; inAlias
	// says an alias is being expanded.
	aliased int
	inAlias int
	busy    map[*yaml.Node]bool // aliases being expanded, to refuse cycles
}

var yamlLineRe = regexp.MustCompile(`line (\d+)`)

func parseYAML(doc []byte) (*node, *parseError) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		pe := &parseError{msg: "the document is neither valid JSON nor valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
		if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
			pe.line, _ = strconv.Atoi(m[1])
		}
		return nil, pe
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil, &parseError{msg: "the document is empty; import an OpenAPI 3.0, 3.1 or Swagger 2.0 document"}
	}
	c := &yamlConverter{busy: make(map[*yaml.Node]bool)}
	return c.convert(root.Content[0], 0)
}

func (c *yamlConverter) fail(y *yaml.Node, format string, args ...any) *parseError {
	return &parseError{line: y.Line, msg: fmt.Sprintf(format, args...)}
}

func (c *yamlConverter) convert(y *yaml.Node, depth int) (*node, *parseError) {
	if depth > maxDepth {
		return nil, c.fail(y, "the document nests deeper than %d levels; Portico refuses such documents to bound the work of an import", maxDepth)
	}
	c.nodes++
	if c.nodes > maxNodes {
		return nil, c.fail(y, "the document expands to more than %d values (YAML aliases count each time they are used); Portico refuses such documents to bound the work of an import", maxNodes)
	}
	if c.inAlias > 0 {
		c.aliased++
		if c.aliased > maxAliasNodes {
			return nil, c.fail(y, "the document's YAML aliases expand to more than %d values; Portico refuses such documents to bound the work of an import: use fewer aliases, or $ref", maxAliasNodes)
		}
	}
	switch y.Kind {
	case yaml.AliasNode:
		if c.busy[y.Alias] {
			return nil, c.fail(y, "YAML alias *%s refers to a value that contains it; remove the cycle", y.Value)
		}
		c.busy[y.Alias] = true
		c.inAlias++
		defer func() {
			delete(c.busy, y.Alias)
			c.inAlias--
		}()
		c.nodes-- // the alias itself is not a value; its target is counted
		return c.convert(y.Alias, depth)
	case yaml.MappingNode:
		if err := c.checkTag(y, "!!map"); err != nil {
			return nil, err
		}
		n := &node{kind: kObject, line: int32(y.Line)}
		var merges []*yaml.Node
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				merges = append(merges, v)
				continue
			}
			if k.Kind != yaml.ScalarNode {
				return nil, c.fail(k, "a mapping key is itself a mapping or sequence; OpenAPI keys are strings")
			}
			if err := c.checkTag(k, "!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp"); err != nil {
				return nil, err
			}
			cv, err := c.convert(v, depth+1)
			if err != nil {
				return nil, err
			}
			if !n.set(k.Value, cv) {
				return nil, c.fail(k, "key %q appears twice in the same mapping; remove one", k.Value)
			}
		}
		// Merged keys never override keys written in the mapping itself,
		// and earlier merge sources win over later ones (YAML merge key
		// rules).
		for _, m := range merges {
			sources := []*yaml.Node{m}
			if m.Kind == yaml.SequenceNode {
				sources = m.Content
			}
			for _, s := range sources {
				mv, err := c.convert(s, depth+1)
				if err != nil {
					return nil, err
				}
				if mv.kind != kObject {
					return nil, c.fail(s, "a YAML merge key (<<) must refer to a mapping")
				}
				for i, k := range mv.keys {
					if !n.has(k) {
						n.set(k, mv.vals[i])
					}
				}
			}
		}
		return n, nil
	case yaml.SequenceNode:
		if err := c.checkTag(y, "!!seq"); err != nil {
			return nil, err
		}
		n := &node{kind: kArray, line: int32(y.Line), vals: make([]*node, 0, len(y.Content))}
		for _, item := range y.Content {
			cv, err := c.convert(item, depth+1)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, cv)
		}
		return n, nil
	case yaml.ScalarNode:
		return c.scalar(y)
	}
	return nil, c.fail(y, "unexpected YAML node")
}

func (c *yamlConverter) checkTag(y *yaml.Node, allowed ...string) *parseError {
	if y.Tag == "" || y.Tag == "!" {
		return nil
	}
	tag := y.ShortTag()
	for _, a := range allowed {
		if tag == a {
			return nil
		}
	}
	if strings.HasPrefix(y.Tag, "!") && !strings.HasPrefix(y.Tag, "!!") {
		return c.fail(y, "YAML tag %s is not part of OpenAPI (CloudFormation intrinsic functions such as !Sub and !GetAtt must be resolved before the document is imported)", y.Tag)
	}
	return c.fail(y, "YAML tag %s is not allowed here", y.Tag)
}

var jsonNumberRe = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

func (c *yamlConverter) scalar(y *yaml.Node) (*node, *parseError) {
	n := &node{line: int32(y.Line)}
	if strings.HasPrefix(y.Tag, "!") && !strings.HasPrefix(y.Tag, "!!") && y.Tag != "!" {
		return nil, c.checkTag(y)
	}
	if y.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 || y.Tag == "!" {
		n.kind, n.text = kString, y.Value
		return n, nil
	}
	switch y.ShortTag() {
	case "!!null":
		n.kind = kNull
	case "!!bool":
		n.kind = kBool
		n.text = strconv.FormatBool(strings.EqualFold(y.Value, "true"))
	case "!!int":
		n.kind = kNumber
		s := strings.ReplaceAll(y.Value, "_", "")
		if jsonNumberRe.MatchString(s) {
			n.text = s
			break
		}
		if v, err := strconv.ParseInt(s, 0, 64); err == nil {
			n.text = strconv.FormatInt(v, 10)
		} else if u, err := strconv.ParseUint(s, 0, 64); err == nil {
			n.text = strconv.FormatUint(u, 10)
		} else if v, ok := parseOctal(s); ok {
			n.text = strconv.FormatInt(v, 10)
		} else {
			return nil, c.fail(y, "the number %s cannot be represented in JSON", y.Value)
		}
	case "!!float":
		n.kind = kNumber
		s := strings.ReplaceAll(y.Value, "_", "")
		if jsonNumberRe.MatchString(s) {
			n.text = s
			break
		}
		f, err := strconv.ParseFloat(strings.TrimPrefix(s, "+"), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, c.fail(y, "the number %s cannot be represented in JSON; quote it if it is meant as text", y.Value)
		}
		n.text = strconv.FormatFloat(f, 'g', -1, 64)
	case "!!str", "!!timestamp", "!!binary":
		n.kind, n.text = kString, y.Value
	default:
		if err := c.checkTag(y, "!!str"); err != nil {
			return nil, err
		}
		n.kind, n.text = kString, y.Value
	}
	return n, nil
}

// parseOctal reads YAML 1.1 octals such as 0755, which yaml.v3 resolves as
// integers but strconv does not read with base 0 once written as "0o".
func parseOctal(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(s, "+-")
	if !strings.HasPrefix(s, "0") {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0"), 8, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// appendJSON writes n as compact JSON.
func appendJSON(b []byte, n *node) []byte {
	switch n.kind {
	case kNull:
		return append(b, "null"...)
	case kBool, kNumber:
		return append(b, n.text...)
	case kString:
		return appendJSONString(b, n.text)
	case kArray:
		b = append(b, '[')
		for i, v := range n.vals {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, v)
		}
		return append(b, ']')
	case kObject:
		b = append(b, '{')
		for i, k := range n.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSON(b, n.vals[i])
		}
		return append(b, '}')
	}
	return b
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// resolvePointer returns the node a local reference ("#/a/b") names, or an
// explanation of why it names nothing.
func resolvePointer(root *node, ref string) (*node, string) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, "it is not a local reference"
	}
	if f, err := url.PathUnescape(frag); err == nil {
		frag = f
	}
	if frag == "" {
		return nil, "it refers to the whole document"
	}
	if !strings.HasPrefix(frag, "/") {
		return nil, "it is a named anchor; Portico resolves only JSON pointers such as #/components/schemas/Pet"
	}
	n := root
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch n.kind {
		case kObject:
			n = n.get(tok)
		case kArray:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n.vals) {
				return nil, "it points past the end of an array or uses a non-numeric index"
			}
			n = n.vals[i]
		default:
			n = nil
		}
		if n == nil {
			return nil, "nothing in the document is at that place"
		}
	}
	return n, ""
}
