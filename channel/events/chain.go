package events

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// maxChainCache bounds the controllers remembered; the cache starts over
// when it is full.
const maxChainCache = 4096

// chainDepth is how far up controllers are followed: Pod, ReplicaSet,
// Deployment (or Pod, Job, CronJob) is the longest common chain.
const chainDepth = 4

// Controllers returns Owners that asks base first and, for the objects a
// GitSync does not apply itself but its objects make (a Deployment's
// ReplicaSets and Pods, a Job's or a StatefulSet's Pods), follows the
// controller owner references up until base knows one. That is where
// ImagePullBackOff (on a Pod) and FailedCreate (on a ReplicaSet) happen.
func Controllers(client kubernetes.Interface, base Owners) Owners {
	return &controllers{client: client, base: base, cache: map[objRef]objRef{}}
}

type objRef struct{ kind, namespace, name string }

type controllers struct {
	client kubernetes.Interface
	base   Owners
	mu     sync.Mutex
	cache  map[objRef]objRef // object -> its controller (kind "" when none)
}

func (c *controllers) OwnerOf(kind, namespace, name string) (string, string, bool) {
	o := objRef{kind, namespace, name}
	for range chainDepth {
		if ns, n, ok := c.base.OwnerOf(o.kind, o.namespace, o.name); ok {
			return ns, n, true
		}
		next, ok := c.controllerOf(o)
		if !ok {
			return "", "", false
		}
		o = next
	}
	return "", "", false
}

// controllerOf returns the controller of a Pod, ReplicaSet or Job, from
// the cache or the API server.
func (c *controllers) controllerOf(o objRef) (objRef, bool) {
	c.mu.Lock()
	ctl, cached := c.cache[o]
	c.mu.Unlock()
	if cached {
		return ctl, ctl.kind != ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var meta metav1.Object
	var err error
	switch o.kind {
	case "Pod":
		meta, err = c.client.CoreV1().Pods(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
	case "ReplicaSet":
		meta, err = c.client.AppsV1().ReplicaSets(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
	case "Job":
		meta, err = c.client.BatchV1().Jobs(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
	default:
		return objRef{}, false
	}
	if err != nil {
		// Gone, or not readable: not remembered, a later event asks again.
		return objRef{}, false
	}
	ctl = objRef{}
	if ref := metav1.GetControllerOf(meta); ref != nil {
		ctl = objRef{ref.Kind, o.namespace, ref.Name}
	}
	c.mu.Lock()
	if len(c.cache) >= maxChainCache {
		clear(c.cache)
	}
	c.cache[o] = ctl
	c.mu.Unlock()
	return ctl, ctl.kind != ""
}

// OwnersFunc is an Owners made of a function, for wiring a mapping that
// exists only later (the sync reconciler's drift tracker).
type OwnersFunc func(kind, namespace, name string) (gitsyncNamespace, gitsyncName string, ok bool)

// OwnerOf calls f.
func (f OwnersFunc) OwnerOf(kind, namespace, name string) (string, string, bool) {
	return f(kind, namespace, name)
}
