package sync

import "tether.dev/tether/api/v1alpha1"

// Reporter receives the state of each GitSync after every status change,
// for the hub. The channel's agent half implements it; calls must not block
// (the implementation buffers and sends when it can).
type Reporter interface {
	// Report hands over the GitSync as it now is.
	Report(gs *v1alpha1.GitSync)
	// Forget says the GitSync is gone from the cluster.
	Forget(namespace, name string)
}
