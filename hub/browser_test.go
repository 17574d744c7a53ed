package hub

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
)

// TestGitSyncPageInChromium: the GitSync page as headless Chromium renders
// it (TESTING.md's flags): the DOM has the object, the event and the
// revision, and a screenshot of it is a real picture. It is left in
// $TETHER_SCREENS (default /tmp/tether-e2e-screens) for a person to look at.
func TestGitSyncPageInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("Chromium is not installed: run `make deps` (apt-get install chromium)")
	}
	s, base, _ := newHub(t, Options{PublicRead: true, PageRefresh: time.Hour})
	twoProjects(t, s)
	r := rep("shop-web", 2, "drifted", shaA, shaA)
	r.SourceUrl = "https://git.example.com/shop/web"
	r.WarningEvents = 3
	r.Namespaces = []*channelpb.NamespaceCount{{Namespace: "shop", Objects: 4}}
	r.Drift = &channelpb.DriftSummary{Count: 1, Objects: []*channelpb.DriftedObject{{Group: "apps", Kind: "Deployment", Namespace: "shop", Name: "web", Paths: []string{".spec.replicas"}}}}
	r.Conditions = []*channelpb.Condition{{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "applied"}}
	mustReport(t, s, "prod", r)
	if err := s.Events(context.Background(), "prod", &channelpb.WarningEvents{Events: []*channelpb.WarningEvent{{
		GitsyncNamespace: "apps", GitsyncName: "shop-web", Kind: "Pod", Namespace: "shop", Name: "web-7d9f",
		Reason: "Failed", Message: `Failed to pull image "registry.example/web:nope": ImagePullBackOff`, Count: 3,
		FirstUnixMs: time.Now().Add(-time.Minute).UnixMilli(), LastUnixMs: time.Now().UnixMilli(),
	}}}); err != nil {
		t.Fatal(err)
	}
	page := base + "/gitsyncs/prod/apps/shop-web"
	dom := chromiumRun(t, bin, page, "--dump-dom")
	for _, want := range []string{"apps/shop-web", "Deployment", ".spec.replicas", "ImagePullBackOff", "web-7d9f", shaA, "live"} {
		if !strings.Contains(dom, want) {
			t.Errorf("Chromium's DOM of the GitSync page lacks %q", want)
		}
	}
	dir := os.Getenv("TETHER_SCREENS")
	if dir == "" {
		dir = "/tmp/tether-e2e-screens"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "gitsync-page.png")
	chromiumRun(t, bin, page, "--screenshot="+shot, "--window-size=1200,900", "--hide-scrollbars")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	r0, g0, b0, _ := img.At(0, 0).RGBA()
	flat := true
	for y := b.Min.Y; y < b.Max.Y && flat; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			if r, g, bl, _ := img.At(x, y).RGBA(); r != r0 || g != g0 || bl != b0 {
				flat = false
				break
			}
		}
	}
	if flat || b.Dx() != 1200 || b.Dy() != 900 {
		t.Errorf("screenshot %dx%d, flat %v", b.Dx(), b.Dy(), flat)
	}
	t.Logf("screenshot: %s", shot)
}

// chromiumRun runs headless Chromium with a fresh profile on url and
// returns its stdout.
func chromiumRun(t *testing.T, bin, url string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, append(argv, url)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}
