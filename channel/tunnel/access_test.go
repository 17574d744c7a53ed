package tunnel

import (
	"slices"
	"strings"
	"testing"

	"tether.dev/tether/channel/channelpb"
)

func project(name string) *channelpb.TunnelCaller {
	return &channelpb.TunnelCaller{Kind: channelpb.CallerKind_CALLER_KIND_PROJECT, Name: name}
}

func user(name string) *channelpb.TunnelCaller {
	return &channelpb.TunnelCaller{Kind: channelpb.CallerKind_CALLER_KIND_USER, Name: name}
}

// The example, exactly.
const example = `projects:
- name: shop                 # a hub project
  # default: impersonate user "tether:project:shop", group "tether:projects"
- name: billing
  serviceAccount: billing/deployer   # or act as this service account
users:
- name: alice                # default: user "tether:user:alice", group "tether:users"
`

func TestAccessIdentity(t *testing.T) {
	a, err := ParseAccess([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		caller *channelpb.TunnelCaller
		ok     bool
		user   string
		groups []string
	}{
		{project("shop"), true, "tether:project:shop", []string{"tether:projects"}},
		{project("billing"), true, "system:serviceaccount:billing:deployer", nil},
		{user("alice"), true, "tether:user:alice", []string{"tether:users"}},
		{user("shop"), false, "", nil},     // a project's name is not a user's
		{project("alice"), false, "", nil}, // nor the other way round
		{user("bob"), false, "", nil},
		{&channelpb.TunnelCaller{Name: "alice"}, false, "", nil}, // no kind
		{nil, false, "", nil},
		{user(""), false, "", nil},
	} {
		id, ok := a.IdentityFor(tc.caller)
		if ok != tc.ok || id.User != tc.user || !slices.Equal(id.Groups, tc.groups) {
			t.Errorf("%v: got %+v %v, want %s %v %v", tc.caller, id, ok, tc.user, tc.groups, tc.ok)
		}
	}
	var none *Access
	if _, ok := none.IdentityFor(user("alice")); ok {
		t.Error("no access configuration granted something")
	}
}

func TestParseAccessRefuses(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown field", "users:\n- name: a\n  admin: true\n", `unknown field "admin"`},
		{"unknown top-level field", "groups: []\n", `unknown field "groups"`},
		{"users take no serviceAccount", "users:\n- name: a\n  serviceAccount: x/y\n", `unknown field "serviceAccount"`},
		{"typo", "project:\n- name: a\n", `unknown field "project"`},
		{"not a list", "users: alice\n", "cannot unmarshal"},
		{"empty name", "users:\n- name: \"\"\n", "users[0]: name is empty"},
		{"name with a colon", "users:\n- name: system:admin\n", `name "system:admin"`},
		{"name with a space", "projects:\n- name: a b\n", `projects[0]: name "a b"`},
		{"duplicate project", "projects:\n- name: a\n- name: a\n", `project "a" is listed twice`},
		{"duplicate user", "users:\n- name: a\n- name: a\n", `user "a" is listed twice`},
		{"service account without namespace", "projects:\n- name: a\n  serviceAccount: deployer\n", "want namespace/name"},
		{"service account bad namespace", "projects:\n- name: a\n  serviceAccount: Bad_NS/x\n", "namespace"},
		{"service account bad name", "projects:\n- name: a\n  serviceAccount: ns/x/y\n", "name"},
		{"duplicate key", "users: []\nusers: []\n", "already set"},
		{"not YAML", "users: [\n", "access.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAccess([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("accepted: %+v", a)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
	// An empty file grants nothing, and is not an error.
	a, err := ParseAccess(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.IdentityFor(user("alice")); ok {
		t.Error("an empty file granted alice")
	}
}

// FuzzParseAccess: whatever the ConfigMap holds, parsing never panics,
// and whatever it accepts only ever grants the documented identities.
func FuzzParseAccess(f *testing.F) {
	f.Add([]byte(example), "alice")
	f.Add([]byte("users:\n- name: a\n  admin: true\n"), "a")
	f.Add([]byte("projects:\n- name: x\n  serviceAccount: ns/sa\n"), "x")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		a, err := ParseAccess(data)
		if err != nil {
			return
		}
		for _, c := range []*channelpb.TunnelCaller{project(name), user(name)} {
			id, ok := a.IdentityFor(c)
			if !ok {
				continue
			}
			switch {
			case id.User == ProjectUserPrefix+name && slices.Equal(id.Groups, []string{ProjectsGroup}):
			case id.User == UserPrefix+name && slices.Equal(id.Groups, []string{UsersGroup}):
			case strings.HasPrefix(id.User, "system:serviceaccount:") && id.Groups == nil &&
				strings.Count(id.User, ":") == 3:
			default:
				t.Fatalf("%v granted %+v", c, id)
			}
			if !namePattern.MatchString(name) {
				t.Fatalf("a name the parser refuses (%q) was granted", name)
			}
		}
	})
}
