package runtime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// InterruptGlobal is the name under which an instrumented module exports its
// interrupt flag.
const InterruptGlobal = "portico.interrupt"

// Why the engine instruments modules instead of using wazero's
// WithCloseOnContextDone: that option makes every loop back-edge leave the
// compiled code to check, in Go, whether the module was closed (about 90 ns
// per iteration here), and makes every call start a goroutine to watch its
// context (2–6 µs per call here). A small authorizer does a few dozen loop
// iterations and five calls per request, so the option alone cost more
// than 10 µs per request.
//
// Compiled code must still leave for Go now and then: native code cannot be
// preempted, so a guest spinning without ever leaving would stall every
// stop-the-world pause of the Go runtime, and with it the whole node.
//
// instrument adds two globals: an interrupt flag, exported as
// InterruptGlobal, and a loop budget. At the head of every loop it counts
// the budget down; when it reaches zero (every loopBudget iterations) the
// guest runs "memory.grow 0", which wazero implements by leaving for Go and
// which changes nothing, refills the budget, and traps if the interrupt flag
// is set. The watchdog sets the flag when a call runs past its deadline.
//
// The runtime preempts a goroutine by signal, which only works when the
// signal lands while Go code runs; a spinning guest must therefore spend a
// fair share of its time in Go. With one exit per 4096 iterations a
// stop-the-world pause waited seconds for it; with one per 64 it waits
// microseconds, and a loop iteration costs about 1.5 ns more on average
// instead of the 90 ns of wazero's per-iteration check.
// Straight-line code always ends; recursion ends in a stack-overflow trap.
// Tail calls, which could loop without a loop instruction, are not enabled.
const loopBudget = 64

func instrument(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) || binary.LittleEndian.Uint32(wasm[4:8]) != 1 {
		return nil, errors.New("not a WebAssembly 1.0 binary module")
	}
	type section struct {
		id      byte
		payload []byte
	}
	var secs []section
	r := wasm[8:]
	for len(r) > 0 {
		id := r[0]
		size, n, err := readU32(r[1:])
		if err != nil || uint64(1+n)+uint64(size) > uint64(len(r)) {
			return nil, errors.New("malformed section header")
		}
		secs = append(secs, section{id, r[1+n : 1+n+int(size)]})
		r = r[1+n+int(size):]
	}

	// Count globals (imported and defined) to find the new global's index.
	var importedGlobals, definedGlobals uint32
	hasMemory := false
	exportNames := map[string]bool{}
	for _, s := range secs {
		switch s.id {
		case 2:
			c, mems, err := countImports(s.payload)
			if err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			importedGlobals = c
			hasMemory = hasMemory || mems > 0
		case 5:
			c, _, err := readU32(s.payload)
			if err != nil {
				return nil, errors.New("malformed memory section")
			}
			hasMemory = hasMemory || c > 0
		case 6:
			c, _, err := readU32(s.payload)
			if err != nil {
				return nil, errors.New("malformed global section")
			}
			definedGlobals = c
		case 7:
			names, err := exportNamesOf(s.payload)
			if err != nil {
				return nil, fmt.Errorf("export section: %w", err)
			}
			exportNames = names
		}
	}
	if exportNames[InterruptGlobal] {
		return nil, fmt.Errorf("module already exports %q, a name the host reserves", InterruptGlobal)
	}
	if !hasMemory {
		return nil, errors.New("module has no memory; proxy-wasm plugins must define and export one")
	}
	globalIdx := importedGlobals + definedGlobals
	interruptIdx := binary.AppendUvarint(nil, uint64(globalIdx))
	budgetIdx := binary.AppendUvarint(nil, uint64(globalIdx+1))
	budget := binary.AppendVarint(nil, loopBudget)
	var check []byte
	check = append(append(append(check, 0x23), budgetIdx...), 0x41, 0x01, 0x6B, 0x24) // budget = budget - 1
	check = append(check, budgetIdx...)
	check = append(append(append(check, 0x23), budgetIdx...), 0x45, 0x04, 0x40)          // if budget == 0
	check = append(append(append(append(check, 0x41), budget...), 0x24), budgetIdx...)   // budget = loopBudget
	check = append(check, 0x41, 0x00, 0x40, 0x00, 0x1A)                                  // drop (memory.grow 0)
	check = append(append(append(check, 0x23), interruptIdx...), 0x04, 0x40, 0x00, 0x0B) // if interrupt: unreachable
	check = append(check, 0x0B)

	newGlobal := []byte{0x7F, 0x01, 0x41, 0x00, 0x0B} // mut i32 = 0: the interrupt flag
	newGlobal = append(newGlobal, 0x7F, 0x01, 0x41)   // mut i32 = loopBudget: the budget
	newGlobal = append(append(newGlobal, budget...), 0x0B)
	newExport := append(appendName(nil, InterruptGlobal), 0x03)
	newExport = binary.AppendUvarint(newExport, uint64(globalIdx))

	// Standard section order; custom sections (0) keep their place.
	order := func(id byte) int {
		switch id {
		case 13: // tag
			return 55
		case 12: // data count
			return 95
		}
		return int(id) * 10
	}
	out := append([]byte(nil), wasm[:8]...)
	wroteGlobal, wroteExport := false, false
	emit := func(id byte, payload []byte) {
		out = append(out, id)
		out = binary.AppendUvarint(out, uint64(len(payload)))
		out = append(out, payload...)
	}
	flushBefore := func(id byte) {
		if id == 0 {
			return
		}
		if !wroteGlobal && order(id) > order(6) {
			emit(6, append([]byte{2}, newGlobal...))
			wroteGlobal = true
		}
		if !wroteExport && order(id) > order(7) {
			emit(7, append([]byte{1}, newExport...))
			wroteExport = true
		}
	}
	for _, s := range secs {
		flushBefore(s.id)
		switch s.id {
		case 6:
			emit(6, appendVecItems(s.payload, definedGlobals, 2, newGlobal))
			wroteGlobal = true
		case 7:
			c, _, _ := readU32(s.payload)
			emit(7, appendVecItems(s.payload, c, 1, newExport))
			wroteExport = true
		case 10:
			code, err := instrumentCode(s.payload, check, globalIdx)
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			emit(10, code)
		default:
			emit(s.id, s.payload)
		}
	}
	flushBefore(255)
	return out, nil
}

// appendVecItems rewrites a vector payload (count then items) with k more
// items, encoded in items, at the end.
func appendVecItems(payload []byte, count, k uint32, items []byte) []byte {
	_, n, _ := readU32(payload)
	out := binary.AppendUvarint(nil, uint64(count)+uint64(k))
	out = append(out, payload[n:]...)
	return append(out, items...)
}

func appendName(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readU32(b []byte) (uint32, int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n > 5 || v > 0xFFFFFFFF {
		return 0, 0, errors.New("malformed LEB128")
	}
	return uint32(v), n, nil
}

// skipLEB skips a (signed or unsigned) LEB128 of at most max bytes.
func skipLEB(b []byte, i, max int) (int, error) {
	for k := 0; k < max; k++ {
		if i >= len(b) {
			return 0, errors.New("truncated LEB128")
		}
		c := b[i]
		i++
		if c&0x80 == 0 {
			return i, nil
		}
	}
	return 0, errors.New("LEB128 too long")
}

type reader struct {
	b []byte
	i int
}

func (r *reader) u32() (uint32, error) {
	v, n, err := readU32(r.b[r.i:])
	r.i += n
	return v, err
}

func (r *reader) name() error {
	n, err := r.u32()
	if err != nil || r.i+int(n) > len(r.b) {
		return errors.New("malformed name")
	}
	r.i += int(n)
	return nil
}

func (r *reader) byte() (byte, error) {
	if r.i >= len(r.b) {
		return 0, errors.New("truncated")
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

// countImports returns the numbers of imported globals and memories.
func countImports(p []byte) (globals, memories uint32, err error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return 0, 0, err
	}
	for k := uint32(0); k < n; k++ {
		if r.name() != nil || r.name() != nil {
			return 0, 0, errors.New("malformed import")
		}
		kind, err := r.byte()
		if err != nil {
			return 0, 0, err
		}
		switch kind {
		case 0x00: // func: type index
			_, err = r.u32()
		case 0x01: // table: reftype, limits
			if _, err = r.byte(); err == nil {
				err = r.limits()
			}
		case 0x02: // memory: limits
			memories++
			err = r.limits()
		case 0x03: // global: valtype, mut
			globals++
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
		case 0x04: // tag: attribute, type index
			if _, err = r.byte(); err == nil {
				_, err = r.u32()
			}
		default:
			return 0, 0, fmt.Errorf("unknown import kind %#x", kind)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return globals, memories, nil
}

func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err = r.u32()
	}
	return err
}

func exportNamesOf(p []byte) (map[string]bool, error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, n)
	for k := uint32(0); k < n; k++ {
		l, err := r.u32()
		if err != nil || r.i+int(l) > len(r.b) {
			return nil, errors.New("malformed export")
		}
		names[string(r.b[r.i:r.i+int(l)])] = true
		r.i += int(l)
		if _, err := r.byte(); err != nil {
			return nil, err
		}
		if _, err := r.u32(); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func instrumentCode(p []byte, check []byte, globalIdx uint32) ([]byte, error) {
	r := &reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := binary.AppendUvarint(make([]byte, 0, len(p)+len(p)/8), uint64(n))
	for f := uint32(0); f < n; f++ {
		size, err := r.u32()
		if err != nil || r.i+int(size) > len(r.b) {
			return nil, fmt.Errorf("function %d: malformed body size", f)
		}
		body := r.b[r.i : r.i+int(size)]
		r.i += int(size)
		nb, err := instrumentBody(body, check, globalIdx)
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", f, err)
		}
		out = binary.AppendUvarint(out, uint64(len(nb)))
		out = append(out, nb...)
	}
	if r.i != len(r.b) {
		return nil, errors.New("trailing bytes")
	}
	return out, nil
}

func instrumentBody(body []byte, check []byte, globalIdx uint32) ([]byte, error) {
	r := &reader{b: body}
	groups, err := r.u32()
	if err != nil {
		return nil, err
	}
	for g := uint32(0); g < groups; g++ {
		if _, err := r.u32(); err != nil {
			return nil, err
		}
		if t, err := r.byte(); err != nil {
			return nil, err
		} else if t == 0x63 || t == 0x64 { // (ref null? ht)
			if r.i, err = skipLEB(body, r.i, 5); err != nil {
				return nil, err
			}
		}
	}
	out := make([]byte, 0, len(body)+32)
	out = append(out, body[:r.i]...)
	b := body
	i := r.i
	var err2 error
	u32 := func() uint32 {
		v, n, err := readU32(b[i:])
		if err != nil {
			err2 = err
		}
		i += n
		return v
	}
	leb := func(max int) {
		if err2 != nil {
			return
		}
		i, err2 = skipLEB(b, i, max)
	}
	fixed := func(n int) {
		if i+n > len(b) {
			err2 = errors.New("truncated immediate")
			return
		}
		i += n
	}
	blockType := func() {
		if i >= len(b) {
			err2 = errors.New("truncated block type")
			return
		}
		switch b[i] {
		case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
			i++
		default:
			leb(5) // s33 type index
		}
	}
	memarg := func() {
		align := u32()
		if align&0x40 != 0 {
			u32() // memory index (multi-memory)
		}
		u32()
	}
	for i < len(b) && err2 == nil {
		start := i
		op := b[i]
		i++
		insertCheck := false
		switch {
		case op == 0x02 || op == 0x04: // block, if
			blockType()
		case op == 0x03: // loop
			blockType()
			insertCheck = true
		case op == 0x00, op == 0x01, op == 0x05, op == 0x0B, op == 0x0F, op == 0x1A, op == 0x1B,
			op == 0x0A, op == 0xD1, op >= 0x45 && op <= 0xC4:
		case op == 0x0C, op == 0x0D, op == 0x10, op == 0x12, op == 0x08, op == 0xD2, op == 0x25, op == 0x26,
			op == 0x20, op == 0x21, op == 0x22:
			u32()
		case op == 0x23, op == 0x24: // global.get, global.set
			if u32() >= globalIdx && err2 == nil {
				err2 = errors.New("refers to a global the module does not define")
			}
		case op == 0x0E: // br_table
			n := u32()
			for k := uint32(0); k <= n && err2 == nil; k++ {
				u32()
			}
		case op == 0x11, op == 0x13: // call_indirect, return_call_indirect
			u32()
			u32()
		case op == 0x1C: // select t*
			n := u32()
			for k := uint32(0); k < n && err2 == nil; k++ {
				fixed(1)
			}
		case op >= 0x28 && op <= 0x3E:
			memarg()
		case op == 0x3F, op == 0x40:
			u32()
		case op == 0x41:
			leb(5)
		case op == 0x42:
			leb(10)
		case op == 0x43:
			fixed(4)
		case op == 0x44:
			fixed(8)
		case op == 0xD0: // ref.null heaptype
			leb(5)
		case op == 0x1F: // try_table
			blockType()
			n := u32()
			for k := uint32(0); k < n && err2 == nil; k++ {
				if i >= len(b) {
					err2 = errors.New("truncated catch")
					break
				}
				kind := b[i]
				i++
				if kind == 0x00 || kind == 0x01 {
					u32() // tag
				}
				u32() // label
			}
		case op == 0xFC:
			switch sub := u32(); {
			case sub <= 7:
			case sub == 8: // memory.init data mem
				u32()
				u32()
			case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
				u32()
			case sub == 10, sub == 12, sub == 14:
				u32()
				u32()
			default:
				err2 = fmt.Errorf("unsupported instruction 0xFC %d", sub)
			}
		case op == 0xFD:
			switch sub := u32(); {
			case sub <= 11, sub == 92, sub == 93:
				memarg()
			case sub == 12, sub == 13:
				fixed(16)
			case sub >= 21 && sub <= 34:
				fixed(1)
			case sub >= 84 && sub <= 91:
				memarg()
				fixed(1)
			}
		case op == 0xFE:
			if sub := u32(); sub == 3 {
				fixed(1)
			} else {
				memarg()
			}
		default:
			err2 = fmt.Errorf("unsupported instruction %#x", op)
		}
		if err2 != nil {
			break
		}
		out = append(out, b[start:i]...)
		if insertCheck {
			out = append(out, check...)
		}
	}
	if err2 != nil {
		return nil, err2
	}
	return out, nil
}
