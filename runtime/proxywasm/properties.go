package proxywasm

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Property paths arrive with their segments separated by NUL bytes
// ("request\x00path"); some SDKs send dotted paths. Both are accepted. The
// path of b is returned as a view of b when it has no NUL byte (see
// readView): only a path the host keeps is copied.
func propertyPath(b []byte) string {
	if bytes.IndexByte(b, 0) < 0 {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	s := strings.TrimRight(string(b), "\x00")
	return strings.ReplaceAll(s, "\x00", ".")
}

func int64String(v int64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(v))
	return string(b[:])
}

func boolString(v bool) string {
	if v {
		return "\x01"
	}
	return "\x00"
}

const (
	maxProps        = 64
	maxPropertySize = 4 << 10
)

// property returns the value of a property for the effective context, or
// false when there is none. Strings are raw bytes, integers 8-byte
// little-endian, booleans one byte, as Envoy encodes them. path may be a
// view of guest memory: nothing keeps it.
func (in *instance) property(path string) (string, bool) {
	st := in.effective
	if st != nil {
		if v, ok := st.props.get(path); ok {
			return v, true
		}
	} else if v, ok := in.rootProps.get(path); ok {
		return v, true
	}
	switch path {
	case "plugin_name":
		return in.p.cfg.Name, true
	case "plugin_root_id":
		return in.p.cfg.RootID, true
	case "plugin_vm_id":
		return in.p.cfg.VMID, true
	}
	if st == nil || !st.hasInfo {
		return "", false
	}
	info := &st.info
	if info.Lazy != nil {
		if v, ok := info.Lazy.Property(path); ok {
			return v, true
		}
	}
	r := info.Request
	switch {
	case strings.HasPrefix(path, "request."):
		if r == nil {
			return "", false
		}
		if name, ok := strings.CutPrefix(path, "request.headers."); ok {
			if v := r.Header.Values(name); len(v) > 0 {
				return strings.Join(v, ","), true
			}
			return "", false
		}
		switch path {
		case "request.path":
			return r.URL.RequestURI(), true
		case "request.url_path":
			return r.URL.Path, true
		case "request.host":
			return r.Host, true
		case "request.scheme":
			if r.TLS != nil || info.TLS != nil {
				return "https", true
			}
			return "http", true
		case "request.method":
			return r.Method, true
		case "request.query":
			return r.URL.RawQuery, true
		case "request.protocol":
			return r.Proto, true
		case "request.id":
			return info.RequestID, true
		case "request.referer":
			return r.Referer(), true
		case "request.useragent":
			return r.UserAgent(), true
		case "request.time":
			return int64String(time.Now().UnixNano()), true
		case "request.size":
			if r.ContentLength >= 0 {
				return int64String(r.ContentLength), true
			}
		}
		return "", false
	case strings.HasPrefix(path, "source."):
		src, _ := info.addresses()
		return addrProperty(path[len("source."):], src)
	case strings.HasPrefix(path, "destination."):
		_, dst := info.addresses()
		return addrProperty(path[len("destination."):], dst)
	case strings.HasPrefix(path, "connection."):
		tlsState := info.TLS
		if tlsState == nil && r != nil {
			tlsState = r.TLS
		}
		switch path {
		case "connection.mtls":
			return boolString(tlsState != nil && len(tlsState.PeerCertificates) > 0), true
		case "connection.tls_version":
			if tlsState == nil {
				return "", false
			}
			return tlsVersion(tlsState.Version), true
		case "connection.requested_server_name":
			if tlsState == nil {
				return "", false
			}
			return tlsState.ServerName, true
		}
		return "", false
	case path == "response.code":
		if st.respStatus == 0 {
			return "", false
		}
		return int64String(int64(st.respStatus)), true
	case path == "response.code_details":
		if st.local != nil {
			return st.local.Details, true
		}
		return "", false
	}
	return "", false
}

func addrProperty(field string, a netip.AddrPort) (string, bool) {
	if !a.IsValid() {
		return "", false
	}
	switch field {
	case "address":
		return net.JoinHostPort(a.Addr().Unmap().String(), strconv.Itoa(int(a.Port()))), true
	case "port":
		return int64String(int64(a.Port())), true
	}
	return "", false
}

func tlsVersion(v uint16) string {
	switch v {
	case 0x0301:
		return "TLSv1"
	case 0x0302:
		return "TLSv1.1"
	case 0x0303:
		return "TLSv1.2"
	case 0x0304:
		return "TLSv1.3"
	}
	return ""
}

// builtinProperty reports whether path names a property the host answers,
// which a guest may not set. It runs on every proxy_set_property, so it
// looks at the first byte before comparing prefixes.
func builtinProperty(path string) bool {
	if path == "" {
		return false
	}
	switch path[0] {
	case 'p':
		return strings.HasPrefix(path, "plugin_")
	case 'r':
		return strings.HasPrefix(path, "request.") || strings.HasPrefix(path, "response.")
	case 's':
		return strings.HasPrefix(path, "source.")
	case 'd':
		return strings.HasPrefix(path, "destination.")
	case 'c':
		return strings.HasPrefix(path, "connection.")
	}
	return false
}

func (in *instance) getProperty(s []uint64) Status {
	pp, ps, retPtr, retSize := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3])
	b, ok := in.read(pp, ps)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	v, found := in.property(propertyPath(b))
	if !found {
		return StatusNotFound
	}
	return in.giveString(v, retPtr, retSize)
}

func (in *instance) setProperty(s []uint64) Status {
	pp, ps, vp, vs := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3])
	b, ok1 := in.read(pp, ps)
	path := propertyPath(b)
	v, ok2 := in.read(vp, vs)
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	if builtinProperty(path) || path == "" {
		return StatusBadArgument
	}
	if len(v) > maxPropertySize {
		return StatusBadArgument
	}
	props := &in.rootProps
	if st := in.effective; st != nil {
		props = &st.props
	}
	if !props.set(path, v) {
		return StatusBadArgument
	}
	return StatusOK
}

// propSet holds the properties a guest set; a few per context, so a slice.
type propSet []Pair

func (ps propSet) get(path string) (string, bool) {
	for _, p := range ps {
		if p.Key == path {
			return p.Value, true
		}
	}
	return "", false
}

// set stores a copy of path and v, which may be views of guest memory; a
// new property's path and value share one allocation.
func (ps *propSet) set(path string, v []byte) bool {
	for i := range *ps {
		if (*ps)[i].Key == path {
			(*ps)[i].Value = string(v)
			return true
		}
	}
	if len(*ps) >= maxProps {
		return false
	}
	b := make([]byte, len(path)+len(v))
	copy(b[copy(b, path):], v)
	kv := unsafe.String(unsafe.SliceData(b), len(b))
	*ps = append(*ps, Pair{kv[:len(path)], kv[len(path):]})
	return true
}

func (info *StreamInfo) addresses() (source, destination netip.AddrPort) {
	if info.Lazy != nil {
		return info.Lazy.Addresses()
	}
	return info.Source, info.Destination
}
