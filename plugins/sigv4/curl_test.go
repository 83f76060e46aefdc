package sigv4_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/test/requiretool"
)

// curl's own SigV4 signer (--aws-sigv4) is accepted too.
func TestCurlAWSSigV4(t *testing.T) {
	requiretool.Path(t, "curl", "apt-get install -y curl")
	real := start(t, "", nil, nil)
	real.clock.Set(time.Now()) // curl signs with the real time
	run := func(args ...string) string {
		out, err := exec.Command("curl", append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run("--aws-sigv4", "aws:amz:eu-west-1:execute-api", "--user", akid+":"+secret, real.url+"/pets?a=1&b=x%20y"); got != "200" {
		t.Fatalf("curl --aws-sigv4 GET: %s", got)
	}
	if got := run("--aws-sigv4", "aws:amz:eu-west-1:execute-api", "--user", akid+":"+secret, "-d", `{"x":1}`, "-H", "Content-Type: application/json", real.url+"/pets"); got != "200" {
		t.Fatalf("curl --aws-sigv4 POST: %s", got)
	}
	if got := run("--aws-sigv4", "aws:amz:eu-west-1:execute-api", "--user", akid+":wrong"+secret[5:], real.url+"/pets"); got != "403" {
		t.Fatalf("curl with a wrong secret: %s", got)
	}
}
