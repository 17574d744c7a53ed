package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/go-logr/logr"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// suite is what every test shares: the tether binary built once and one
// control plane (each test works in namespaces of its own).
var suite struct {
	cp         *testenv.ControlPlane
	tether     string
	kubeconfig string
	k8s        client.Client
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctrllog.SetLogger(logr.Discard()) // the processes under test log; this client need not
	work, err := os.MkdirTemp("", "tether-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(work)
	start := time.Now()
	suite.tether = filepath.Join(work, "tether")
	if err := buildTether(suite.tether); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build tether:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", suite.tether, time.Since(start).Round(time.Millisecond))

	// The audit log is how the fault tests know what each agent wrote and
	// that nothing was deleted that should not be.
	return testenv.Main(m, testenv.ControlPlaneOptions{KubeconfigDir: work, Audit: true}, func(cp *testenv.ControlPlane) (func() error, error) {
		suite.cp = cp
		suite.kubeconfig = cp.KubeconfigPath
		scheme := k8sruntime.NewScheme()
		for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
			if err := add(scheme); err != nil {
				return nil, err
			}
		}
		var err error
		suite.k8s, err = client.New(cp.Config, client.Options{Scheme: scheme})
		return nil, err
	})
}

// buildTether builds cmd/tether as `make build` does, static.
func buildTether(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "tether.dev/tether/cmd/tether")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, b)
	}
	return nil
}
