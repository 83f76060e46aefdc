package control

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

func TestPurge(t *testing.T) {
	ctx := context.Background()
	c, _ := newControl(t)
	if _, err := c.ImportAPI(ctx, doc("one"), ImportOptions{Name: "pets"}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.PutStage(ctx, "pets", "prod", StageInput{}); err != nil {
		t.Fatal(err)
	}
	api, _ := c.API(ctx, "pets")

	// A purge wakes edges waiting on the current version.
	v0 := c.Snapshot().Version
	woke := make(chan *config.Snapshot, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		woke <- c.Wait(wctx, v0)
	}()
	seq, err := c.Purge(ctx, config.PurgeRequest{Kind: config.PurgeKindURL, Host: "API.Example.TEST:8443", Path: "/v1/%61/./b//c?x=1&y=%41"})
	if err != nil || seq != 1 {
		t.Fatalf("url purge: %d %v", seq, err)
	}
	snap := <-woke
	if snap == nil || len(snap.Purges) != 1 {
		t.Fatalf("the purge did not wake the waiter with a snapshot holding it: %+v", snap)
	}
	p := snap.Purges[0]
	if p.Seq != 1 || p.Host != "api.example.test" || p.Path != "/v1/a/b/c?x=1&y=%41" || p.At.IsZero() {
		t.Errorf("stored purge %+v: host and path not in the edge's canonical form", p)
	}

	if seq, err := c.Purge(ctx, config.PurgeRequest{Kind: config.PurgeKindStage, APIID: "pets", Stage: "prod"}); err != nil || seq != 2 {
		t.Fatalf("stage purge: %d %v", seq, err)
	}
	if seq, err := c.Purge(ctx, config.PurgeRequest{Kind: config.PurgeKindPrefix, Host: "a.test", Path: "/x/"}); err != nil || seq != 3 {
		t.Fatalf("prefix purge: %d %v", seq, err)
	}
	if seq, err := c.Purge(ctx, config.PurgeRequest{Kind: config.PurgeKindTag, Tag: "product-42"}); err != nil || seq != 4 {
		t.Fatalf("tag purge: %d %v", seq, err)
	}
	list, err := c.Purges(ctx)
	if err != nil || len(list) != 4 || list[0].Seq != 4 || list[2].APIID != api.ID {
		t.Fatalf("purges: %v %+v", err, list)
	}
	if got := c.Snapshot().Purges; len(got) != 4 || got[0].Seq != 1 || got[3].Seq != 4 {
		t.Errorf("snapshot purges not by seq: %+v", got)
	}

	v := c.Snapshot().Version
	for _, tc := range []struct {
		req  config.PurgeRequest
		kind Kind
		want string
	}{
		{config.PurgeRequest{Kind: config.PurgeKindURL, Path: "/x"}, Invalid, "a host is required"},
		{config.PurgeRequest{Kind: config.PurgeKindURL, Host: "a.test", Path: "x"}, Invalid, "must start with '/'"},
		{config.PurgeRequest{Kind: config.PurgeKindURL, Host: "a b", Path: "/x"}, Invalid, "host is not a valid host name"},
		{config.PurgeRequest{Kind: config.PurgeKindURL, Host: "a.test", Path: "/a%2Fb"}, Invalid, "encoded slash"},
		{config.PurgeRequest{Kind: config.PurgeKindPrefix, Host: "a.test", Path: "/x?y"}, Invalid, "a prefix is a path"},
		{config.PurgeRequest{Kind: config.PurgeKindTag, Tag: ""}, Invalid, "non-empty"},
		{config.PurgeRequest{Kind: config.PurgeKindTag, Tag: "a b"}, Invalid, "one non-empty Surrogate-Key word"},
		{config.PurgeRequest{Kind: config.PurgeKindStage, APIID: "pets"}, Invalid, "both required"},
		{config.PurgeRequest{Kind: config.PurgeKindStage, APIID: "pets", Stage: "nope"}, NotFound, `has no stage "nope"`},
		{config.PurgeRequest{Kind: config.PurgeKindStage, APIID: "nope", Stage: "prod"}, NotFound, `API "nope" does not exist`},
		{config.PurgeRequest{Kind: "all"}, Invalid, "not one of url, prefix, tag, stage"},
		{config.PurgeRequest{Seq: 9, Kind: config.PurgeKindTag, Tag: "t"}, Invalid, "seq is given by the origin"},
	} {
		_, err := c.Purge(ctx, tc.req)
		if KindOf(err) != tc.kind || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want kind %d containing %q", tc.req, err, tc.kind, tc.want)
		}
	}
	if c.Snapshot().Version != v {
		t.Error("a refused purge changed the snapshot")
	}
}
