package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/api/v1alpha1"
)

// BinDirEnv names the variable that points at the folder holding the
// kube-apiserver, etcd and kube-controller-manager binaries (`make test-bin`
// builds them and sets it).
const BinDirEnv = "TETHER_TEST_BIN"

// BinDir returns the folder with the control-plane binaries, or an error
// that says how to build them.
func BinDir() (string, error) {
	dir := os.Getenv(BinDirEnv)
	if dir == "" {
		return "", fmt.Errorf("%s is not set: run `make test` (or `make test-bin`) to build kube-apiserver and etcd", BinDirEnv)
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("%s=%s has no %s: run `make test-bin`: %w", BinDirEnv, dir, name, err)
		}
	}
	return dir, nil
}

// ControlPlaneOptions configures StartControlPlane.
type ControlPlaneOptions struct {
	// BinDir holds the binaries; empty means BinDir().
	BinDir string
	// WithoutCRDs skips installing the GitSync CRD.
	WithoutCRDs bool
	// KubeconfigDir is where the admin kubeconfig is written; empty means a
	// temporary folder removed by Stop.
	KubeconfigDir string
	// ControllerManager also starts kube-controller-manager from BinDir, so
	// that Deployments get ReplicaSets and pods, Jobs get pods and deleted
	// namespaces finish deleting.
	ControllerManager bool
	// Audit makes the API server write an audit log (ControlPlane.Audit
	// reads it) of the requests that change something: who changed what,
	// the evidence a fault test needs that nothing was deleted or that only
	// one agent replica wrote.
	Audit bool
}

// ControlPlane is a running kube-apiserver and etcd.
type ControlPlane struct {
	// Config is an admin rest config for the API server.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file for the same admin user, for
	// kubectl and for the tether binary.
	KubeconfigPath string

	env               *envtest.Environment
	workDir           string // certificates, audit log; removed by Stop
	kubeconfigDir     string
	auditLog          string             // empty unless ControlPlaneOptions.Audit
	controllerManager *ControllerManager // nil unless ControlPlaneOptions.ControllerManager
}

// StartControlPlane starts etcd and kube-apiserver on loopback and waits
// until the API server answers (a few seconds).
func StartControlPlane(opts ControlPlaneOptions) (*ControlPlane, error) {
	dir := opts.BinDir
	if dir == "" {
		var err error
		if dir, err = BinDir(); err != nil {
			return nil, err
		}
	}
	work, err := os.MkdirTemp("", "tether-control-plane-")
	if err != nil {
		return nil, err
	}
	// A loaded 2-core machine can take well over envtest's default 20 s to
	// start kube-apiserver; waiting longer costs nothing when it is quick.
	env := &envtest.Environment{BinaryAssetsDirectory: dir, ControlPlaneStartTimeout: 2 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	// The API server's certificates live in a folder of ours, not one
	// envtest makes and removes on every stop, so that StartAPIServer
	// serves the same certificate the kubeconfigs trust.
	apiServer := env.ControlPlane.GetAPIServer()
	apiServer.CertDir = filepath.Join(work, "apiserver")
	if err := os.Mkdir(apiServer.CertDir, 0o700); err != nil {
		return nil, errors.Join(err, os.RemoveAll(work))
	}
	cp := &ControlPlane{env: env, workDir: work, kubeconfigDir: opts.KubeconfigDir}
	if cp.kubeconfigDir == "" {
		cp.kubeconfigDir = work
	}
	if opts.Audit {
		if cp.auditLog, err = configureAudit(apiServer, work); err != nil {
			return nil, errors.Join(err, os.RemoveAll(work))
		}
	}
	if !opts.WithoutCRDs {
		crd, err := GitSyncCRD()
		if err != nil {
			return nil, errors.Join(err, os.RemoveAll(work))
		}
		env.CRDs = []*apiextensionsv1.CustomResourceDefinition{crd}
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start control plane from %s: %w", dir, err), os.RemoveAll(work))
	}
	cp.Config = cfg
	if cp.KubeconfigPath, err = cp.addUser("tether-admin", "kubeconfig", "system:masters"); err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	if opts.ControllerManager {
		if cp.controllerManager, err = startControllerManager(env, dir); err != nil {
			return nil, errors.Join(err, cp.Stop())
		}
	}
	return cp, nil
}

// Stop stops the controller manager, if any, then the API server and etcd,
// and removes their data.
func (c *ControlPlane) Stop() error {
	err := c.controllerManager.Stop()
	err = errors.Join(err, c.env.Stop())
	return errors.Join(err, os.RemoveAll(c.workDir))
}

// AddUser makes a user of the API server with groups (e.g.
// "system:masters") and writes a kubeconfig for it beside the admin's,
// named after the user; it returns the kubeconfig's path. Two agent
// replicas given two users are told apart in the audit log.
func (c *ControlPlane) AddUser(name string, groups ...string) (string, error) {
	return c.addUser(name, name+".kubeconfig", groups...)
}

func (c *ControlPlane) addUser(name, file string, groups ...string) (string, error) {
	user, err := c.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("add user %s: %w", name, err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("kubeconfig of %s: %w", name, err)
	}
	path := filepath.Join(c.kubeconfigDir, file)
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// StopAPIServer kills the kube-apiserver process, as a crash or the loss
// of its node does, and leaves etcd and its data running, so that a test
// sees what its clients do while the API is gone. (A SIGTERM would do: but
// kube-apiserver drains its clients for up to a minute first, while they
// go on being served.)
func (c *ControlPlane) StopAPIServer() error {
	apiServer := c.env.ControlPlane.GetAPIServer()
	pid, err := findProcess("kube-apiserver", "--cert-dir="+apiServer.CertDir)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill kube-apiserver (pid %d): %w", pid, err)
	}
	// envtest reaps its child; once it has, Stop finds it exited and only
	// tidies up.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver (pid %d) still there a minute after SIGKILL", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := apiServer.Stop(); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	return nil
}

// findProcess returns the pid of the process running binary whose
// command line has arg.
func findProcess(binary, arg string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if filepath.Base(args[0]) == binary && slices.Contains(args, arg) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s process with %s", binary, arg)
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same port, with the same certificates, users and etcd data, and waits
// until it answers.
func (c *ControlPlane) StartAPIServer() error {
	if err := c.env.ControlPlane.GetAPIServer().Start(); err != nil {
		return fmt.Errorf("start kube-apiserver again: %w", err)
	}
	return nil
}

// GitSyncCRD decodes the GitSync CRD shipped in api/v1alpha1.
func GitSyncCRD() (*apiextensionsv1.CustomResourceDefinition, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(v1alpha1.CRDYAML, crd); err != nil {
		return nil, fmt.Errorf("decode GitSync CRD: %w", err)
	}
	return crd, nil
}

// CreateNamespace creates a namespace with a generated name that starts
// with prefix, so that each test works in a namespace of its own.
func CreateNamespace(ctx context.Context, c client.Client, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("create namespace %s-*: %w", prefix, err)
	}
	return ns.Name, nil
}
