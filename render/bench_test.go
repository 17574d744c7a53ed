package render

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// plainFixture writes a plain folder of n objects (Deployments and
// ConfigMaps, five to a file, twenty files to a subfolder) into a temporary
// directory and returns it.
func plainFixture(b *testing.B, n int) string {
	b.Helper()
	root := b.TempDir()
	var file strings.Builder
	for i := range n {
		if i%2 == 0 {
			fmt.Fprintf(&file, deploymentTmpl, i, i, i, i, i%7)
		} else {
			fmt.Fprintf(&file, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-%d\n  namespace: bench\ndata:\n  key: value-%d\n", i, i)
		}
		if i%5 == 4 || i == n-1 {
			write(b, root, filepath.Join(fmt.Sprintf("group-%02d", i/100), fmt.Sprintf("objects-%04d.yaml", i)), file.String())
			file.Reset()
		}
	}
	return root
}

const deploymentTmpl = `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%d
  namespace: bench
  labels:
    app: app-%d
spec:
  replicas: 2
  selector:
    matchLabels:
      app: app-%d
  template:
    metadata:
      labels:
        app: app-%d
    spec:
      containers:
      - name: app
        image: registry.example.com/app:1.%d.0
        ports:
        - containerPort: 8080
        resources:
          limits:
            memory: 128Mi
`

func BenchmarkRender(b *testing.B) {
	for _, n := range []int{200, 1000} {
		root := plainFixture(b, n)
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := Render(context.Background(), Options{Root: root})
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Objects) != n {
					b.Fatalf("%d objects, want %d", len(res.Objects), n)
				}
			}
		})
		// kustomize is the same folder built the way it was before plain
		// folders were rendered directly, for comparison.
		b.Run(fmt.Sprintf("objects=%d/kustomize", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := render(context.Background(), Options{Root: root}, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("objects=%d/substitute", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(context.Background(), Options{Root: root, Substitute: map[string]string{"X": "y"}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRenderParallel renders from every P at once: "shared" is Render
// as it is (schemaMu taken shared); "serialized" adds one process-wide mutex
// around each render, as Flux does, for comparison.
func BenchmarkRenderParallel(b *testing.B) {
	root := plainFixture(b, 200)
	var global sync.Mutex
	for _, mode := range []string{"shared", "serialized"} {
		b.Run(mode, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if mode == "serialized" {
						global.Lock()
					}
					_, err := Render(context.Background(), Options{Root: root})
					if mode == "serialized" {
						global.Unlock()
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// fixedHasher gives every folder the same tree hash: the cache then always
// hits, and BenchmarkCacheHit measures what a hit costs (the copy).
type fixedHasher struct{}

func (fixedHasher) TreeHash(string, string) (string, error) { return "tree", nil }

func BenchmarkCacheHit(b *testing.B) {
	root := plainFixture(b, 1000)
	c := NewCache(fixedHasher{}, CacheOptions{})
	if _, err := c.Render(context.Background(), Options{Root: root}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Render(context.Background(), Options{Root: root}); err != nil {
			b.Fatal(err)
		}
	}
}
