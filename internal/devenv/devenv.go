// Package devenv sets up the local demo that `make run` starts: a control
// plane (the embedded kube-apiserver, etcd and kube-controller-manager, or
// the cluster of $KUBECONFIG), a Git repository on loopback seeded from
// examples/ whose hooks call the hub's webhook, and GitSyncs that point at
// it. It prints every step with the time it took, so nobody stares
// at a silent terminal. It runs no agent itself: the caller does.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/internal/testenv"
)

// Options configures Start.
type Options struct {
	// ExamplesDir is copied into the demo repository on its first run.
	ExamplesDir string
	// WorkDir keeps the demo repository between runs.
	WorkDir string
	// Kubeconfig, when set, is used instead of the embedded control plane.
	Kubeconfig string
	// Interval is the demo GitSyncs' poll interval.
	Interval time.Duration
	// Scheme knows the GitSync and CRD types.
	Scheme *runtime.Scheme
	// Out receives the progress lines.
	Out io.Writer
}

// Env is a running demo environment.
type Env struct {
	// Config reaches the cluster as its admin.
	Config *rest.Config
	// Kubeconfig is a file for kubectl.
	Kubeconfig string
	// RepoDir is the demo repository's work tree: commit there to deploy.
	RepoDir string
	// RepoURL is where the agent fetches it.
	RepoURL string
	// Embedded is true when the control plane is the local one.
	Embedded bool

	cp  *testenv.ControlPlane
	git *testenv.GitServer
	out io.Writer
	t0  time.Time
}

// Start brings the environment up step by step.
func Start(ctx context.Context, o Options) (env *Env, err error) {
	e := &Env{out: o.Out, t0: time.Now()}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.Close())
		}
	}()
	work, err := filepath.Abs(o.WorkDir)
	if err != nil {
		return nil, err
	}
	if o.Kubeconfig == "" {
		// kube-controller-manager gives Deployments their ReplicaSets and
		// Pods, HPAs their scaling, so rollout health is real; with no
		// kubelet (and no scheduler) the Pods stay Pending.
		e.step("starting the embedded kube-apiserver, etcd and kube-controller-manager")
		e.cp, err = testenv.StartControlPlane(testenv.ControlPlaneOptions{KubeconfigDir: work, ControllerManager: true})
		if err != nil {
			return nil, err
		}
		e.Config, e.Kubeconfig, e.Embedded = e.cp.Config, e.cp.KubeconfigPath, true
	} else {
		e.step("using the cluster of " + o.Kubeconfig)
		if e.Config, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", o.Kubeconfig, err)
		}
		e.Kubeconfig = o.Kubeconfig
	}
	c, err := client.New(e.Config, client.Options{Scheme: o.Scheme})
	if err != nil {
		return nil, err
	}
	if !e.Embedded {
		e.step("installing the GitSync CRD")
		if err := installCRD(ctx, c); err != nil {
			return nil, err
		}
	}

	e.step("starting a Git server on 127.0.0.1")
	if e.git, err = testenv.StartGitServer(filepath.Join(work, "repos"), testenv.GitServerOptions{}); err != nil {
		return nil, err
	}
	repo, err := e.git.CreateRepo("demo")
	if err != nil {
		return nil, err
	}
	e.RepoDir, e.RepoURL = repo.Dir, repo.URL
	if _, err := repo.Head(); err != nil {
		e.step("seeding the demo repository from " + o.ExamplesDir)
		if err := repo.CopyDir(o.ExamplesDir, "."); err != nil {
			return nil, fmt.Errorf("seed demo repository: %w", err)
		}
		if _, err := repo.Commit(nil, "Seed from Tether's examples"); err != nil {
			return nil, fmt.Errorf("seed demo repository: %w", err)
		}
	} else {
		e.step("reusing the demo repository in " + repo.Dir)
	}

	e.step("creating the demo GitSyncs in namespace " + DemoNamespace)
	if err := createGitSyncs(ctx, c, e.RepoURL, o.Interval); err != nil {
		return nil, err
	}
	return e, nil
}

// step prints one progress line with the time since Start.
func (e *Env) step(msg string) {
	if e.out != nil {
		fmt.Fprintf(e.out, "[%5.1fs] %s\n", time.Since(e.t0).Seconds(), msg)
	}
}

// Step prints a progress line in the same format, for the caller's steps.
func (e *Env) Step(msg string) { e.step(msg) }

// Close stops the Git server and the embedded control plane.
func (e *Env) Close() error {
	var errs []error
	if e.git != nil {
		errs = append(errs, e.git.Close())
	}
	if e.cp != nil {
		errs = append(errs, e.cp.Stop())
	}
	return errors.Join(errs...)
}

func installCRD(ctx context.Context, c client.Client) error {
	crd, err := testenv.GitSyncCRD()
	if err != nil {
		return err
	}
	live := &apiextensionsv1.CustomResourceDefinition{}
	switch err := c.Get(ctx, client.ObjectKeyFromObject(crd), live); {
	case apierrors.IsNotFound(err):
		return c.Create(ctx, crd)
	case err != nil:
		return fmt.Errorf("read GitSync CRD: %w", err)
	}
	crd.ResourceVersion = live.ResourceVersion
	if err := c.Update(ctx, crd); err != nil {
		return fmt.Errorf("update GitSync CRD: %w", err)
	}
	return nil
}
