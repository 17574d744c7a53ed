package testenv

import (
	"os"
	"testing"
)

// CheckMode fails t unless the file at p has exactly the permission bits
// perm (a secret file 0600, a hook 0700).
func CheckMode(t testing.TB, p string, perm os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != perm {
		t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), perm)
	}
}
