package giturl

import "testing"

func TestParse(t *testing.T) {
	cases := []struct {
		in         string
		host, path string
		ok         bool
	}{
		{"https://GitLab.Example.com/group/sub/project.git", "gitlab.example.com", "group/sub/project", true},
		{"https://gitlab.example.com/group/sub/project/", "gitlab.example.com", "group/sub/project", true},
		{"http://127.0.0.1:3000/alice/app.git", "127.0.0.1", "alice/app", true},
		{"ssh://git@gitlab.example.com:2222/group/project.git", "gitlab.example.com", "group/project", true},
		{"git@github.com:owner/repo.git", "github.com", "owner/repo", true},
		{"github.com/owner/repo", "github.com", "owner/repo", true},
		{"https://user:pass@host/x/y", "host", "x/y", true},
		{"", "", "", false},
		{"https://host/", "", "", false},
		{"not a url", "", "", false},
	}
	for _, c := range cases {
		r, ok := Parse(c.in)
		if ok != c.ok || (ok && (r.Host != c.host || r.Path != c.path)) {
			t.Errorf("Parse(%q) = %+v, %v; want %s %s %v", c.in, r, ok, c.host, c.path, c.ok)
		}
	}
}

func TestSame(t *testing.T) {
	same := [][2]string{
		{"https://gitlab.example.com/Group/Project.git", "git@GITLAB.example.com:group/project"},
		{"http://h/a/b/", "https://h/a/b.git"},
		{"ssh://git@h:22/a/b.git", "https://h/a/b"},
	}
	for _, p := range same {
		if !Same(p[0], p[1]) {
			t.Errorf("Same(%q, %q) = false", p[0], p[1])
		}
	}
	if Same("https://h/a/b", "https://h/a/c") || Same("https://h/a/b", "https://g/a/b") || Same("", "") {
		t.Error("different repositories compared equal")
	}
}
