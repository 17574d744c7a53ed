package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	ssautils "github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// fluxSSA is Flux's apply path as kustomize-controller sets it up: an
// ssa.ResourceManager on a controller-runtime client, with the
// controller's defaults (--kube-api-qps 50, --kube-api-burst 300,
// --concurrent-ssa 4). ApplyAllStaged makes a server-side dry-run of every
// object, compares it with the object in the cluster, and applies what
// differs. It times the apply step only: no fetch, no kustomize build.
type fluxSSA struct{ m *ssa.ResourceManager }

func newFluxSSA(cfg *rest.Config) (*fluxSSA, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 300
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	poller := polling.NewStatusPoller(c, c.RESTMapper(), polling.Options{})
	m := ssa.NewResourceManager(c, poller, ssa.Owner{Field: "bench-flux", Group: "bench.fluxcd.io"})
	m.SetConcurrency(4)
	return &fluxSSA{m: m}, nil
}

// apply times one ApplyAllStaged of (copies of) objs.
func (f *fluxSSA) apply(ctx context.Context, objs []*unstructured.Unstructured) (time.Duration, error) {
	in := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		in[i] = o.DeepCopy()
	}
	start := time.Now()
	if _, err := f.m.ApplyAllStaged(ctx, in, ssa.DefaultApplyOptions()); err != nil {
		return 0, fmt.Errorf("flux ssa ApplyAllStaged: %w", err)
	}
	return time.Since(start), nil
}

// decode reads the objects of files (path → YAML) in path order.
func decode(files map[string]string) ([]*unstructured.Unstructured, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var out []*unstructured.Unstructured
	for _, p := range paths {
		objs, err := ssautils.ReadObjects(strings.NewReader(files[p]))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}
