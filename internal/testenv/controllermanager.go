package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControllerManager is a running kube-controller-manager: the Deployment,
// ReplicaSet, Job, namespace, garbage-collector and other controllers that
// fill in, in a real cluster, what a GitOps tool waits for. Without a kubelet
// pods stay Pending; a test that needs a Ready pod sets its status itself.
type ControllerManager struct {
	// LogPath is the file that the process writes its log to; Stop removes
	// it, so read it (ControlPlane.ControllerManagerLog) before.
	LogPath string

	cmd  *exec.Cmd
	dir  string
	done chan struct{} // closed once the process has exited
	err  error         // how it exited, set before done is closed
}

// controllerManagerUser is who the controllers act as. They share one
// identity (--use-service-account-credentials=false) with every right,
// because the API server runs without the ServiceAccount admission plugin
// and the test harness has no token signer to hand to them.
var controllerManagerUser = envtest.User{Name: "system:kube-controller-manager", Groups: []string{"system:masters"}}

const (
	controllerManagerReadyTimeout = 60 * time.Second
	controllerManagerStopTimeout  = 10 * time.Second
)

// startControllerManager starts kube-controller-manager from binDir against
// the API server of env and waits until its controllers act.
func startControllerManager(env *envtest.Environment, binDir string) (*ControllerManager, error) {
	bin := filepath.Join(binDir, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s=%s has no kube-controller-manager: run `make test-bin`: %w", BinDirEnv, binDir, err)
	}
	dir, err := os.MkdirTemp("", "tether-controller-manager-")
	if err != nil {
		return nil, err
	}
	m := &ControllerManager{dir: dir, LogPath: filepath.Join(dir, "kube-controller-manager.log"), done: make(chan struct{})}
	user, err := env.AddUser(controllerManagerUser, nil)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("add controller-manager user: %w", err), m.Stop())
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("controller-manager kubeconfig: %w", err), m.Stop())
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return nil, errors.Join(err, m.Stop())
	}
	logFile, err := os.Create(m.LogPath)
	if err != nil {
		return nil, errors.Join(err, m.Stop())
	}
	defer logFile.Close() // the child holds its own descriptor

	m.cmd = exec.Command(bin,
		"--kubeconfig="+kubeconfigPath,
		"--leader-elect=false",
		"--secure-port=0", // serve nothing: loopback-only and no port to pick
		"--use-service-account-credentials=false",
		// Every default controller; the token controller stays off for want
		// of a signing key, which no test needs.
		"--controllers=*,-serviceaccount-token-controller",
		"--v=1",
	)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	if err := m.cmd.Start(); err != nil {
		m.cmd = nil
		return nil, errors.Join(fmt.Errorf("start %s: %w", bin, err), m.Stop())
	}
	go func() {
		m.err = m.cmd.Wait()
		close(m.done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), controllerManagerReadyTimeout)
	defer cancel()
	if err := m.waitReady(ctx, user.Config()); err != nil {
		err = fmt.Errorf("kube-controller-manager: %w; its log:\n%s", err, m.logTail())
		return nil, errors.Join(err, m.Stop())
	}
	return m, nil
}

// waitReady waits until the service-account controller has created the
// default ServiceAccount in the default namespace. The controllers' shared
// informers start only after every controller has started, so one acting
// means all of them are running.
func (m *ControllerManager) waitReady(ctx context.Context, cfg *rest.Config) error {
	clients, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := clients.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		switch {
		case err == nil:
			return nil
		case !apierrors.IsNotFound(err) && ctx.Err() == nil:
			return fmt.Errorf("wait for its controllers: %w", err)
		}
		select {
		case <-m.done:
			return fmt.Errorf("exited while starting: %v", m.err)
		case <-ctx.Done():
			return fmt.Errorf("its controllers did not act within %s (no default ServiceAccount)", controllerManagerReadyTimeout)
		case <-tick.C:
		}
	}
}

// Stop stops the process (SIGTERM, then SIGKILL after a grace period) and
// removes its kubeconfig and log. Stop on a nil ControllerManager does
// nothing.
func (m *ControllerManager) Stop() error {
	if m == nil {
		return nil
	}
	var err error
	if m.cmd != nil {
		err = m.stopProcess()
	}
	return errors.Join(err, os.RemoveAll(m.dir))
}

func (m *ControllerManager) stopProcess() error {
	select {
	case <-m.done:
		return fmt.Errorf("kube-controller-manager had exited: %v", m.err)
	default:
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop kube-controller-manager: %w", err)
	}
	select {
	case <-m.done:
		return nil
	case <-time.After(controllerManagerStopTimeout):
	}
	if err := m.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill kube-controller-manager: %w", err)
	}
	<-m.done
	return fmt.Errorf("kube-controller-manager ignored SIGTERM for %s and was killed", controllerManagerStopTimeout)
}

// logTail returns the end of the log, enough to see why it failed.
func (m *ControllerManager) logTail() string {
	const max = 16 << 10
	b, err := os.ReadFile(m.LogPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// ControllerManagerLog returns the log of the kube-controller-manager the
// control plane runs (ControlPlaneOptions.ControllerManager), for a test
// to print when it fails; empty without one.
func (c *ControlPlane) ControllerManagerLog() string {
	if c.controllerManager == nil {
		return ""
	}
	b, err := os.ReadFile(c.controllerManager.LogPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
