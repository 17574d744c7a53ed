package sync

import (
	"context"
	"fmt"
	gosync "sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/source"
)

// DefaultCredentialsTTL is how long the agent reuses credentials read from
// a Secret. A refused authentication and a resync read the Secret again at
// once, so a rotated Secret is picked up on the first poll that needs it.
const DefaultCredentialsTTL = 10 * time.Minute

// Credentials turns a GitSync's spec.source.secretRef into source.Auth.
// The agent reads Secrets straight from the API server (it caches none in
// an informer), so Credentials keeps what it read for TTL: an idle poll
// then costs no API request. Entries are per Secret, so GitSyncs naming the
// same Secret share one read. It is safe for concurrent use.
type Credentials struct {
	reader client.Reader
	ttl    time.Duration
	now    func() time.Time

	mu   gosync.Mutex
	kept map[types.NamespacedName]keptAuth
}

type keptAuth struct {
	auth *source.Auth
	read time.Time
}

// NewCredentials reads Secrets through reader and reuses each for ttl; a
// ttl of 0 reads the Secret on every call (`tether diff`).
func NewCredentials(reader client.Reader, ttl time.Duration) *Credentials {
	return &Credentials{reader: reader, ttl: ttl, now: time.Now, kept: map[types.NamespacedName]keptAuth{}}
}

// Get returns the credentials of gs's secretRef (nil without one). fresh
// reads the Secret even when a read within TTL is kept. Errors name the
// Secret and the keys at fault, never a value.
func (c *Credentials) Get(ctx context.Context, gs *v1alpha1.GitSync, fresh bool) (*source.Auth, error) {
	ref := gs.Spec.Source.SecretRef
	if ref == nil {
		return nil, nil
	}
	key := types.NamespacedName{Namespace: gs.Namespace, Name: ref.Name}
	now := c.now()
	if !fresh && c.ttl > 0 {
		c.mu.Lock()
		k, ok := c.kept[key]
		c.mu.Unlock()
		if ok && now.Sub(k.read) < c.ttl {
			return k.auth, nil
		}
	}
	secret := &corev1.Secret{}
	if err := c.reader.Get(ctx, key, secret); err != nil {
		c.drop(key)
		return nil, fmt.Errorf("secret %s: %w", key, err)
	}
	auth, err := source.AuthFromSecret(secret.Data)
	if err != nil {
		c.drop(key)
		return nil, fmt.Errorf("secret %s: %w", key, err)
	}
	if c.ttl > 0 {
		c.mu.Lock()
		// Expired entries of Secrets no GitSync reads any more go here,
		// so the map holds at most the Secrets read within one TTL.
		for k, v := range c.kept {
			if now.Sub(v.read) >= c.ttl {
				delete(c.kept, k)
			}
		}
		c.kept[key] = keptAuth{auth: auth, read: now}
		c.mu.Unlock()
	}
	return auth, nil
}

func (c *Credentials) drop(key types.NamespacedName) {
	c.mu.Lock()
	delete(c.kept, key)
	c.mu.Unlock()
}
