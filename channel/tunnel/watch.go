package tunnel

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Run reads the access ConfigMap and follows its changes until ctx ends:
// only that one ConfigMap is listed and watched. Until the first read
// every request is refused with 503; afterwards a missing ConfigMap, a
// missing key or a bad file refuses everything with 403 (a bad file is
// logged as an error with the reason).
func (a *Agent) Run(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(a.opts.Config)
	if err != nil {
		return fmt.Errorf("tunnel: access ConfigMap client: %w", err)
	}
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "configmaps", a.opts.Namespace,
		fields.OneTermEqualSelector(metav1.ObjectNameField, AccessConfigMap))
	inf := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
	key := a.opts.Namespace + "/" + AccessConfigMap
	reload := func() {
		obj, ok, _ := inf.GetStore().GetByKey(key)
		cm, _ := obj.(*corev1.ConfigMap)
		a.load(cm, ok && cm != nil)
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { reload() },
		UpdateFunc: func(any, any) { reload() },
		DeleteFunc: func(any) { reload() },
	}
	if _, err := inf.AddEventHandler(handler); err != nil {
		return fmt.Errorf("tunnel: access ConfigMap watch: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		inf.Run(ctx.Done())
	}()
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		reload()
	}
	<-done
	return nil
}

// load installs the ConfigMap's access.yaml (present says whether the
// ConfigMap exists).
func (a *Agent) load(cm *corev1.ConfigMap, present bool) {
	where := a.opts.Namespace + "/" + AccessConfigMap
	if !present {
		if st := a.access.Load(); st == nil || !st.absent {
			a.log.Info("no tunnel access configured: every tunnelled request is refused", "configMap", where)
		}
		a.setAbsent()
		return
	}
	data, ok := cm.Data[AccessKey]
	if !ok {
		err := fmt.Errorf("ConfigMap %s has no key %s", where, AccessKey)
		a.log.Error("tunnel access configuration is invalid: every tunnelled request is refused", "configMap", where, "error", err)
		a.SetAccess(nil, err)
		return
	}
	acc, err := ParseAccess([]byte(data))
	if err != nil {
		a.log.Error("tunnel access configuration is invalid: every tunnelled request is refused", "configMap", where, "error", err)
		a.SetAccess(nil, err)
		return
	}
	a.log.Info("tunnel access configuration loaded", "configMap", where, "projects", len(acc.Projects), "users", len(acc.Users))
	a.SetAccess(acc, nil)
}

// AccessError is why the access configuration refuses everything: nil
// when it is loaded and valid (or not read yet), errNoAccess when there is
// no ConfigMap, else the parse error. A health check or status can show it.
func (a *Agent) AccessError() error {
	st := a.access.Load()
	switch {
	case st == nil:
		return nil
	case st.absent:
		return errNoAccess
	}
	return st.err
}

var errNoAccess = errors.New("no ConfigMap " + AccessConfigMap + ": the tunnel grants nothing")
