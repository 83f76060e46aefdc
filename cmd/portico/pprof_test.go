package main

import (
	"slices"
	"testing"
)

func TestExtractPprof(t *testing.T) {
	cases := []struct {
		args, rest []string
		addr       string
		err        bool
	}{
		{[]string{"--data-dir", "d"}, []string{"--data-dir", "d"}, "", false},
		{[]string{"--pprof-listen", "127.0.0.1:6060", "--data-dir", "d"}, []string{"--data-dir", "d"}, "127.0.0.1:6060", false},
		{[]string{"--data-dir", "d", "-pprof-listen=127.0.0.1:0"}, []string{"--data-dir", "d"}, "127.0.0.1:0", false},
		{[]string{"--pprof-listen"}, nil, "", true},
		{[]string{"--token", "pprof-listen"}, []string{"--token", "pprof-listen"}, "", false},
	}
	for _, c := range cases {
		rest, addr, err := extractPprof(c.args)
		if (err != nil) != c.err || addr != c.addr || !slices.Equal(rest, c.rest) {
			t.Errorf("%q: rest %q addr %q err %v", c.args, rest, addr, err)
		}
	}
}
