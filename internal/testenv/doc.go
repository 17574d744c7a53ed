// Package testenv starts the real parts that Tether's tests and its local
// demo run against: a kube-apiserver and etcd built from the module proxy by
// the tools module beside this package, and Git repositories served over
// smart HTTP and SSH on 127.0.0.1. It never fakes the Kubernetes API and
// never listens on anything but loopback.
package testenv
