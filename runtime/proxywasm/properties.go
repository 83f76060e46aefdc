package proxywasm

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Property paths arrive with their segments separated by NUL bytes
// ("request\x00path"); some SDKs send dotted paths. Both are accepted.
func propertyPath(b []byte) string {
	s := strings.TrimRight(string(b), "\x00")
	return strings.ReplaceAll(s, "\x00", ".")
}

func int64Bytes(v int64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(v))
	return b
}

func boolBytes(v bool) []byte {
	if v {
		return []byte{1}
	}
	return []byte{0}
}

const (
	maxProps        = 64
	maxPropertySize = 4 << 10
)

// property returns the value of a property for the effective context, or
// false when there is none. Strings are raw bytes, integers 8-byte
// little-endian, booleans one byte, as Envoy encodes them.
func (in *instance) property(path string) ([]byte, bool) {
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
		return []byte(in.p.cfg.Name), true
	case "plugin_root_id":
		return []byte(in.p.cfg.RootID), true
	case "plugin_vm_id":
		return []byte(in.p.cfg.VMID), true
	}
	if st == nil || st.info == nil {
		return nil, false
	}
	info := st.info
	if info.Lazy != nil {
		if v, ok := info.Lazy.Property(path); ok {
			return []byte(v), true
		}
	}
	r := info.Request
	switch {
	case strings.HasPrefix(path, "request."):
		if r == nil {
			return nil, false
		}
		if name, ok := strings.CutPrefix(path, "request.headers."); ok {
			if v := r.Header.Values(name); len(v) > 0 {
				return []byte(strings.Join(v, ",")), true
			}
			return nil, false
		}
		switch path {
		case "request.path":
			return []byte(r.URL.RequestURI()), true
		case "request.url_path":
			return []byte(r.URL.Path), true
		case "request.host":
			return []byte(r.Host), true
		case "request.scheme":
			if r.TLS != nil || info.TLS != nil {
				return []byte("https"), true
			}
			return []byte("http"), true
		case "request.method":
			return []byte(r.Method), true
		case "request.query":
			return []byte(r.URL.RawQuery), true
		case "request.protocol":
			return []byte(r.Proto), true
		case "request.id":
			return []byte(info.RequestID), true
		case "request.referer":
			return []byte(r.Referer()), true
		case "request.useragent":
			return []byte(r.UserAgent()), true
		case "request.time":
			return int64Bytes(time.Now().UnixNano()), true
		case "request.size":
			if r.ContentLength >= 0 {
				return int64Bytes(r.ContentLength), true
			}
		}
		return nil, false
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
			return boolBytes(tlsState != nil && len(tlsState.PeerCertificates) > 0), true
		case "connection.tls_version":
			if tlsState == nil {
				return nil, false
			}
			return []byte(tlsVersion(tlsState.Version)), true
		case "connection.requested_server_name":
			if tlsState == nil {
				return nil, false
			}
			return []byte(tlsState.ServerName), true
		}
		return nil, false
	case path == "response.code":
		if st.respStatus == 0 {
			return nil, false
		}
		return int64Bytes(int64(st.respStatus)), true
	case path == "response.code_details":
		if st.local != nil {
			return []byte(st.local.Details), true
		}
		return nil, false
	}
	return nil, false
}

func addrProperty(field string, a netip.AddrPort) ([]byte, bool) {
	if !a.IsValid() {
		return nil, false
	}
	switch field {
	case "address":
		return []byte(net.JoinHostPort(a.Addr().Unmap().String(), strconv.Itoa(int(a.Port())))), true
	case "port":
		return int64Bytes(int64(a.Port())), true
	}
	return nil, false
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

func builtinProperty(path string) bool {
	for _, p := range []string{"plugin_", "request.", "source.", "destination.", "connection.", "response."} {
		if strings.HasPrefix(path, p) {
			return true
		}
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
	return in.give(v, retPtr, retSize)
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

func (ps propSet) get(path string) ([]byte, bool) {
	for _, p := range ps {
		if p.Key == path {
			return []byte(p.Value), true
		}
	}
	return nil, false
}

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
	*ps = append(*ps, Pair{path, string(v)})
	return true
}

func (info *StreamInfo) addresses() (source, destination netip.AddrPort) {
	if info.Lazy != nil {
		return info.Lazy.Addresses()
	}
	return info.Source, info.Destination
}
