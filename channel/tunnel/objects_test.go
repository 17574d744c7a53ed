package tunnel

import "testing"

func TestObjectsPaths(t *testing.T) {
	for _, tc := range []struct {
		path      string
		agent     bool
		ns, name  string
		objectsOK bool
	}{
		{ObjectsPath("apps", "web"), true, "apps", "web", true},
		{"/tether/v1/gitsyncs/apps/web.v2/objects", true, "apps", "web.v2", true},
		{"//tether/v1/gitsyncs/apps/web/objects", true, "", "", false}, // the hub refuses it; the agent finds no such path
		{"/tether", true, "", "", false},
		{"/tether/v1/gitsyncs/apps/web", true, "", "", false},
		{"/tether/v1/gitsyncs/apps/web/objects/x", true, "", "", false},
		{"/tether/v1/gitsyncs/Apps/web/objects", true, "", "", false},
		{"/tether/v1/gitsyncs//web/objects", true, "", "", false},
		{"/tether/v1/gitsyncs/apps/../objects", true, "", "", false},
		{"/tetherx/v1", false, "", "", false},
		{"/api/v1/namespaces/tether/configmaps", false, "", "", false},
		{"/apis/tether.dev/v1alpha1/gitsyncs", false, "", "", false},
	} {
		if got := IsAgentPath(tc.path); got != tc.agent {
			t.Errorf("IsAgentPath(%q) = %v, want %v", tc.path, got, tc.agent)
		}
		ns, name, ok := parseObjectsPath(tc.path)
		if ok != tc.objectsOK || ns != tc.ns || name != tc.name {
			t.Errorf("parseObjectsPath(%q) = %q, %q, %v; want %q, %q, %v", tc.path, ns, name, ok, tc.ns, tc.name, tc.objectsOK)
		}
	}
}
