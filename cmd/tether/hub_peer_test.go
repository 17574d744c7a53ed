package main

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --peer-ca-file takes a PEM file of certificates; anything else is a
// clear error before the hub starts.
func TestReadCAFile(t *testing.T) {
	dir := t.TempDir()
	srv := httptest.NewTLSServer(nil)
	srv.Close()
	good := filepath.Join(dir, "ca.pem")
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate\n"), 0o600)
	for _, tc := range []struct {
		path, wantErr string
	}{
		{good, ""},
		{junk, "no PEM certificate found"},
		{filepath.Join(dir, "missing.pem"), "no such file"},
	} {
		pool, err := readCAFile(tc.path)
		switch {
		case tc.wantErr == "" && (err != nil || pool == nil):
			t.Errorf("%s: %v", tc.path, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one saying %q", tc.path, err, tc.wantErr)
		}
	}
}
