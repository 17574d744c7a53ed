package e2e

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// screensDir is where the tests leave one copy of their screenshots for a
// person to look at.
const screensDir = "/tmp/tether-e2e-screens"

// chromium finds Debian's Chromium, or fails with how to install it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium is not installed: run `make deps` (apt-get install chromium)")
	return ""
}

// headless runs Chromium headless, as TESTING.md says, with a fresh
// profile, on url, plus args (--dump-dom, --screenshot=...). It returns
// stdout.
func headless(t *testing.T, url string, args ...string) string {
	t.Helper()
	profile, err := os.MkdirTemp(t.TempDir(), "chromium-profile-")
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{chromium(t), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile}, args...)
	argv = append(argv, url)
	out, err := runSplit(argv...)
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return out
}

// runSplit is run with stdout alone returned (Chromium writes noise to
// stderr, which only an error shows).
func runSplit(argv ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	if err := runWith(argv, &stdout, &stderr); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, lastLines(stderr.String(), 20))
	}
	return stdout.String(), nil
}

// screenshot saves a PNG of url as seen in a window of w x h pixels as
// dir/name.png, checks it is a real PNG that is not one flat colour, and
// returns its path.
func screenshot(t *testing.T, dir, name, url string, w, h int) string {
	t.Helper()
	path := filepath.Join(dir, name+".png")
	headless(t, url, "--screenshot="+path, fmt.Sprintf("--window-size=%d,%d", w, h), "--hide-scrollbars")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("screenshot of %s: %v", url, err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot of %s is not a PNG: %v", url, err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("screenshot of %s is %dx%d, want %dx%d", url, b.Dx(), b.Dy(), w, h)
	}
	if blank(img) {
		t.Errorf("screenshot of %s is one flat colour", url)
	}
	return path
}

// keep copies a screenshot into screensDir as name.
func keep(t *testing.T, path, name string) {
	t.Helper()
	if err := os.MkdirAll(screensDir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(screensDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", filepath.Join(screensDir, name))
}

// blank reports whether every pixel of img has the same colour.
func blank(img image.Image) bool {
	b := img.Bounds()
	r0, g0, b0, _ := img.At(b.Min.X, b.Min.Y).RGBA()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if r, g, bl, _ := img.At(x, y).RGBA(); r != r0 || g != g0 || bl != b0 {
				return false
			}
		}
	}
	return true
}
