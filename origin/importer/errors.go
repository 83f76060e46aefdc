package importer

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// maxReported caps how many problems one import returns. A document that is
// wrong in a thousand places is usually wrong in the same way a thousand
// times; the first fifty say what to fix.
const maxReported = 50

// Error is one problem found in a document. Pointer is an RFC 6901 JSON
// pointer into the document ("/paths/~1pets~1{petId}/get/..."), "" for the
// document as a whole. Message says what is wrong and what to do about it.
type Error struct {
	Pointer string
	Message string
	// Line is the 1-based line of the offending element in the document
	// when it is known, 0 otherwise. It is not part of Error() because the
	// pointer already names the place exactly; tools that show the
	// document can use it to jump there.
	Line int
}

func (e *Error) Error() string {
	where := e.Pointer
	if where == "" {
		where = "the document root"
	}
	return "at " + where + ": " + e.Message
}

// moreError closes a capped list of problems.
type moreError struct{ n int }

func (e *moreError) Error() string {
	return fmt.Sprintf("and %d more problems (fix the ones above and import again to see them)", e.n)
}

// Problems returns the located problems held by an error returned by
// Import, in the order they were reported. It returns nil for an error that
// holds none.
func Problems(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, sub := range j.Unwrap() {
				walk(sub)
			}
			return
		}
		if u := errors.Unwrap(err); u != nil {
			walk(u)
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// problems collects the errors of one import.
type problems struct {
	list []*Error
	seen map[string]bool
}

// add records a problem at ptr; n, when not nil, gives its line. The same
// pointer and message are recorded once, so that a shared component used by
// many operations is reported once.
func (p *problems) add(ptr string, n *node, format string, args ...any) {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	key := ptr + "\x00" + msg
	if p.seen == nil {
		p.seen = make(map[string]bool)
	}
	if p.seen[key] {
		return
	}
	p.seen[key] = true
	e := &Error{Pointer: ptr, Message: msg}
	if n != nil {
		e.Line = int(n.line)
	}
	p.list = append(p.list, e)
}

func (p *problems) empty() bool { return len(p.list) == 0 }

// merge adds the validator's problems, except those inside an element (or
// at the root, which means "the document as a whole") where the importer
// already found one: the validator then mostly restates it, and a second
// import shows anything left once the first is fixed.
func (p *problems) merge(other *problems) {
	// Every pointer the importer reported at, and each of its ancestors.
	covered := make(map[string]bool)
	for _, o := range p.list {
		for ptr := o.Pointer; ; {
			if covered[ptr] {
				break
			}
			covered[ptr] = true
			i := strings.LastIndexByte(ptr, '/')
			if i < 0 {
				break
			}
			ptr = ptr[:i]
		}
	}
	for _, e := range other.list {
		if !covered[e.Pointer] {
			p.add(e.Pointer, nil, "%s", e.Message)
		}
	}
}

// err returns the problems sorted by pointer, joined, capped at maxReported.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := slices.Clone(p.list)
	slices.SortStableFunc(list, func(a, b *Error) int {
		return cmp.Or(strings.Compare(a.Pointer, b.Pointer), strings.Compare(a.Message, b.Message))
	})
	errs := make([]error, 0, min(len(list), maxReported)+1)
	for i, e := range list {
		if i == maxReported {
			errs = append(errs, &moreError{n: len(list) - maxReported})
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// escapeToken escapes one reference token of a JSON pointer (RFC 6901 §3).
func escapeToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// child returns the pointer of key under ptr.
func child(ptr, key string) string { return ptr + "/" + escapeToken(key) }

// index returns the pointer of item i under ptr.
func index(ptr string, i int) string { return fmt.Sprintf("%s/%d", ptr, i) }
