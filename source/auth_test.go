package source

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

func newSSHKey(t *testing.T) (privPEM []byte, pub ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	return pem.EncodeToMemory(block), signer.PublicKey()
}

const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestAuthFromSecret(t *testing.T) {
	key, pub := newSSHKey(t)
	kh := []byte("github.com " + string(ssh.MarshalAuthorizedKey(pub)))
	for _, tc := range []struct {
		name    string
		data    map[string]string
		want    *Auth
		wantErr string
	}{
		{"empty", map[string]string{}, nil, ""},
		{"basic", map[string]string{"username": "u", "password": "p"}, &Auth{Username: "u", Password: "p"}, ""},
		{"bearer", map[string]string{"bearerToken": "t"}, &Auth{BearerToken: "t"}, ""},
		{"ca only", map[string]string{"ca.crt": testCA}, &Auth{CAData: []byte(testCA)}, ""},
		{"caFile", map[string]string{"caFile": testCA, "username": "u", "password": "p"}, &Auth{Username: "u", Password: "p", CAData: []byte(testCA)}, ""},
		{"ssh", map[string]string{"identity": string(key), "identity.pub": "ignored", "known_hosts": string(kh)},
			&Auth{SSHPrivateKey: key, KnownHosts: kh}, ""},
		{"username only", map[string]string{"username": "u"}, nil, "username is set but password is missing"},
		{"password only", map[string]string{"password": "p"}, nil, "password is set but username is missing"},
		{"bearer and basic", map[string]string{"bearerToken": "t", "username": "u", "password": "p"}, nil, "bearerToken cannot be combined"},
		{"ssh without known_hosts", map[string]string{"identity": string(key)}, nil, "known_hosts is missing"},
		{"ssh and basic", map[string]string{"identity": string(key), "known_hosts": string(kh), "username": "u"}, nil, "cannot be combined"},
		{"bad key", map[string]string{"identity": "not a key", "known_hosts": string(kh)}, nil, "not a valid SSH private key"},
		{"bad ca", map[string]string{"ca.crt": "hello"}, nil, "not a PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := map[string][]byte{}
			for k, v := range tc.data {
				data[k] = []byte(v)
			}
			got, err := AuthFromSecret(data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrAuth) {
					t.Fatalf("error %v, want ErrAuth containing %q", err, tc.wantErr)
				}
				for _, v := range tc.data {
					if len(v) > 3 && strings.Contains(err.Error(), v) {
						t.Fatalf("error %q contains a secret value", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthNeverPrintsSecrets(t *testing.T) {
	a := &Auth{Username: "alice", Password: "s3cret-pass", BearerToken: "tok-123456",
		SSHPrivateKey: []byte("PRIVATE-KEY-BYTES"), SSHPassphrase: []byte("phrase-xyz")}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "auth", a, "value", *a)
	outputs := []string{
		fmt.Sprint(a), fmt.Sprint(*a), fmt.Sprintf("%v %+v %#v %s %q", a, a, a, a, a),
		fmt.Sprintf("%v %+v %#v", *a, *a, *a), fmt.Sprintf("%+v", struct{ A *Auth }{a}),
		fmt.Sprintf("%#v", []Auth{*a}), logs.String(),
	}
	for _, out := range outputs {
		for _, secret := range []string{"alice", "s3cret", "tok-123", "PRIVATE", "phrase"} {
			if strings.Contains(out, secret) {
				t.Errorf("output %q shows %q", out, secret)
			}
		}
	}
	if !strings.Contains(fmt.Sprint(a), "basic,bearer,ssh-key") {
		t.Errorf("String() = %q should name the kinds", a)
	}
}

func TestHostKeyChecker(t *testing.T) {
	_, key := newSSHKey(t)
	_, other := newSSHKey(t)
	line := func(host string, k ssh.PublicKey) string {
		return host + " " + string(ssh.MarshalAuthorizedKey(k))
	}
	salt := []byte("0123456789abcdefghij")
	m := hmac.New(sha1.New, salt)
	m.Write([]byte("[127.0.0.1]:2222"))
	hashed := "|1|" + base64.StdEncoding.EncodeToString(salt) + "|" + base64.StdEncoding.EncodeToString(m.Sum(nil))
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	for _, tc := range []struct {
		name, knownHosts string
		key              ssh.PublicKey
		wantErr          string
	}{
		{"plain", line("[127.0.0.1]:2222", key), key, ""},
		{"hashed", line(hashed, key), key, ""},
		{"several hosts", line("example.com,[127.0.0.1]:2222", key), key, ""},
		{"mismatch", line("[127.0.0.1]:2222", other), key, "does not match"},
		{"other port", line("127.0.0.1", key), key, "not in known_hosts"},
		{"revoked", "@revoked " + line("[127.0.0.1]:2222", key), key, "@revoked"},
		{"revoked after a plain line", line("[127.0.0.1]:2222", key) + "@revoked " + line("[127.0.0.1]:2222", key), key, "@revoked"},
		{"revoked under another name", line("[127.0.0.1]:2222", key) + "@revoked " + line("old.example.com", key), key, "@revoked"},
		{"another key revoked", line("[127.0.0.1]:2222", key) + "@revoked " + line("[127.0.0.1]:2222", other), key, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newHostKeyChecker([]byte("# comment\n\n" + tc.knownHosts))
			if err != nil {
				t.Fatal(err)
			}
			err = c.callback("127.0.0.1:2222", addr, tc.key)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if algos := c.algorithms("127.0.0.1", 2222); len(algos) == 0 || algos[0] != ssh.KeyAlgoED25519 {
					t.Fatalf("algorithms = %v", algos)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || classify(err) != ErrAuth {
				t.Fatalf("error %v, want ErrAuth containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := newHostKeyChecker([]byte("# nothing\n")); err == nil {
		t.Fatal("empty known_hosts accepted")
	}
}
