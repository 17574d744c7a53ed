package main

import (
	"fmt"
	"strings"
)

// mixNamespaces is how many namespaces a mixed set spreads over.
const mixNamespaces = 10

// mixFiles returns n objects, a third each ConfigMaps, Deployments and
// Services (headless: the test API server's service range holds only 254
// cluster IPs), as one file per app (its ConfigMap, Deployment and Service)
// under dir. App i lives in namespace <nsPrefix>-<i mod 10>; with nsPrefix
// empty the objects name no namespace and go to the GitSync's own.
func mixFiles(dir string, n int, nsPrefix, prefix, value string) map[string]string {
	files := map[string]string{}
	for app := 0; app*3 < n; app++ {
		name := fmt.Sprintf("%sapp-%04d", prefix, app)
		ns := ""
		if nsPrefix != "" {
			ns = fmt.Sprintf("  namespace: %s-%d\n", nsPrefix, app%mixNamespaces)
		}
		var docs []string
		for kind := 0; kind < 3 && app*3+kind < n; kind++ {
			docs = append(docs, mixObject(kind, name, ns, value))
		}
		files[fmt.Sprintf("%s/%s.yaml", dir, name)] = strings.Join(docs, "---\n")
	}
	return files
}

// mixNamespaceNames lists the namespaces mixFiles spreads n objects over.
func mixNamespaceNames(nsPrefix string, n int) []string {
	var out []string
	for i := 0; i < mixNamespaces && i*3 < n; i++ {
		out = append(out, fmt.Sprintf("%s-%d", nsPrefix, i))
	}
	return out
}

func mixObject(kind int, name, ns, value string) string {
	switch kind {
	case 0:
		return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: %s
%s  labels:
    bench.tether.dev/app: %s
data:
  value: %q
  payload: tether-bench-payload-0123456789abcdef
`, name, ns, name, value)
	case 1:
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
%s  labels:
    app: %s
spec:
  replicas: 1
  selector:
    matchLabels:
      app: %s
  template:
    metadata:
      labels:
        app: %s
    spec:
      containers:
      - name: app
        image: registry.example/app:1.0
        ports:
        - containerPort: 8080
        resources:
          requests:
            cpu: 10m
            memory: 16Mi
`, name, ns, name, name, name)
	default:
		return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
%s  labels:
    app: %s
spec:
  clusterIP: None
  selector:
    app: %s
  ports:
  - port: 80
    targetPort: 8080
`, name, ns, name, name)
	}
}
