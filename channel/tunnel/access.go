package tunnel

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/channel/channelpb"
)

// Where the cluster owner grants access: ConfigMap AccessConfigMap in the
// agent's namespace, key AccessKey.
const (
	AccessConfigMap = "tether-access"
	AccessKey       = "access.yaml"
)

// The identities a grant impersonates by default; the cluster owner binds
// RBAC to them.
const (
	ProjectUserPrefix = "tether:project:"
	ProjectsGroup     = "tether:projects"
	UserPrefix        = "tether:user:"
	UsersGroup        = "tether:users"
)

// Access is the parsed access.yaml: which hub projects and users may use
// the tunnel, and as whom.
type Access struct {
	Projects []ProjectGrant `json:"projects,omitempty"`
	Users    []UserGrant    `json:"users,omitempty"`
}

// ProjectGrant lets a hub project use the tunnel, as user
// "tether:project:<name>" in group "tether:projects", or as the service
// account ServiceAccount ("namespace/name") when set.
type ProjectGrant struct {
	Name           string `json:"name"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
}

// UserGrant lets a hub user use the tunnel, as user "tether:user:<name>"
// in group "tether:users".
type UserGrant struct {
	Name string `json:"name"`
}

// Identity is who the agent makes a granted request as.
type Identity struct {
	User   string
	Groups []string
}

// namePattern is what a project or user name may be: what the hub
// accepts as a token's name, and safe inside an RBAC subject name.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._@-]{0,126}[A-Za-z0-9])?$`)

// ParseAccess reads access.yaml strictly: an unknown field, a duplicate
// entry, a bad name or service account is an error, and the caller then
// refuses everything.
func ParseAccess(data []byte) (*Access, error) {
	var a Access
	if err := yaml.UnmarshalStrict(data, &a); err != nil {
		return nil, fmt.Errorf("%s: %w", AccessKey, err)
	}
	var errs []error
	seen := map[string]bool{}
	for i, p := range a.Projects {
		where := fmt.Sprintf("%s: projects[%d]", AccessKey, i)
		if err := checkGrantName(where, p.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen["p/"+p.Name] {
			errs = append(errs, fmt.Errorf("%s: project %q is listed twice", where, p.Name))
		}
		seen["p/"+p.Name] = true
		if p.ServiceAccount != "" {
			if err := checkServiceAccount(p.ServiceAccount); err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): %w", where, p.Name, err))
			}
		}
	}
	for i, u := range a.Users {
		where := fmt.Sprintf("%s: users[%d]", AccessKey, i)
		if err := checkGrantName(where, u.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen["u/"+u.Name] {
			errs = append(errs, fmt.Errorf("%s: user %q is listed twice", where, u.Name))
		}
		seen["u/"+u.Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &a, nil
}

func checkGrantName(where, name string) error {
	if name == "" {
		return fmt.Errorf("%s: name is empty", where)
	}
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%s: name %q: use letters, digits, '.', '_', '@' and '-' (at most 128)", where, name)
	}
	return nil
}

// checkServiceAccount checks "namespace/name".
func checkServiceAccount(sa string) error {
	ns, name, ok := strings.Cut(sa, "/")
	if !ok || ns == "" || name == "" {
		return fmt.Errorf("serviceAccount %q: want namespace/name", sa)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fmt.Errorf("serviceAccount %q: namespace: %s", sa, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("serviceAccount %q: name: %s", sa, strings.Join(errs, "; "))
	}
	return nil
}

// IdentityFor says whom caller may act as, or false when nothing grants
// it.
func (a *Access) IdentityFor(caller *channelpb.TunnelCaller) (Identity, bool) {
	if a == nil || caller == nil || caller.GetName() == "" {
		return Identity{}, false
	}
	name := caller.GetName()
	switch caller.GetKind() {
	case channelpb.CallerKind_CALLER_KIND_PROJECT:
		for _, p := range a.Projects {
			if p.Name != name {
				continue
			}
			if p.ServiceAccount != "" {
				ns, sa, _ := strings.Cut(p.ServiceAccount, "/")
				// The API server adds the service-account groups itself.
				return Identity{User: "system:serviceaccount:" + ns + ":" + sa}, true
			}
			return Identity{User: ProjectUserPrefix + name, Groups: []string{ProjectsGroup}}, true
		}
	case channelpb.CallerKind_CALLER_KIND_USER:
		for _, u := range a.Users {
			if u.Name == name {
				return Identity{User: UserPrefix + name, Groups: []string{UsersGroup}}, true
			}
		}
	}
	return Identity{}, false
}
