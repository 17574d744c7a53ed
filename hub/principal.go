package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"tether.dev/tether/hub/giturl"
	"tether.dev/tether/hub/store"
)

// PrincipalKind is what kind of holder a hub token names.
type PrincipalKind string

// Kinds of principals. Operators hold the API tokens of `tether hub token
// create --api --name NAME`: every action on every project.
const (
	KindOperator PrincipalKind = "operator"
	KindProject  PrincipalKind = "project"
	KindUser     PrincipalKind = "user"
)

// Action is something a token may be allowed to do.
type Action string

// Actions a token may carry.
const (
	ActionRead   Action = "read"
	ActionResync Action = "resync"
	// ActionProxy opens /k8s-proxy/{agent}/...; what the request may then
	// do in the cluster is the agent's decision, never the hub's.
	ActionProxy Action = "proxy"
)

// Principal is who holds a token: its kind, name and actions.
type Principal struct {
	Kind    PrincipalKind
	Name    string
	Actions []Action
	// Repos are a project's repositories (giturl keys): the GitSyncs whose
	// source is one of them are the project's. Empty for other kinds.
	Repos []string
}

// Can says whether the principal may do a.
func (p Principal) Can(a Action) bool { return slices.Contains(p.Actions, a) }

// Sees says whether the principal may see a GitSync with this source URL:
// a project sees its own repositories' GitSyncs, operators and users every
// GitSync (a user's reach into clusters is the agents' decision).
func (p Principal) Sees(sourceURL string) bool {
	if p.Kind != KindProject {
		return true
	}
	key := giturl.Key(sourceURL)
	return key != "" && slices.Contains(p.Repos, key)
}

// Principals turns a bearer token into its principal. An unknown or
// revoked token is store.ErrInvalidToken; any other error is the store's.
type Principals interface {
	Principal(ctx context.Context, token string) (Principal, error)
}

// allActions are an operator's: `tether hub token create --api` tokens.
var allActions = []Action{ActionRead, ActionResync, ActionProxy}

// ParseActions reads a comma-separated list of actions ("read,resync"),
// refusing an unknown one or an empty list.
func ParseActions(list string) ([]Action, error) {
	var out []Action
	for _, f := range strings.Split(list, ",") {
		a := Action(strings.TrimSpace(f))
		if a == "" {
			continue
		}
		if !slices.Contains(allActions, a) {
			return nil, fmt.Errorf("unknown action %q: want read, resync or proxy", string(a))
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("at least one action is required: read, resync or proxy")
	}
	return out, nil
}

// SessionPrincipals are Principals whose tokens the page's sessions can
// name without holding them: by the id of the token's row in the store
// (a session row references it, so the ids must be the store's). With
// Principals that are not SessionPrincipals the page has no login form;
// bearer tokens work as ever.
type SessionPrincipals interface {
	Principals
	// PrincipalID is Principal, and the id of the token's row.
	PrincipalID(ctx context.Context, token string) (Principal, int64, error)
	// PrincipalByID is the principal of the valid token whose row is
	// id, read again on every call: store.ErrInvalidToken once it is
	// revoked, and a project's changed repositories count at once.
	PrincipalByID(ctx context.Context, id int64) (Principal, error)
}

// storeTokens are the store's client tokens as principals: API tokens are
// operators with every action; project and user tokens carry their own.
type storeTokens struct{ store *store.Store }

func (t storeTokens) Principal(ctx context.Context, token string) (Principal, error) {
	p, _, err := t.PrincipalID(ctx, token)
	return p, err
}

func (t storeTokens) PrincipalID(ctx context.Context, token string) (Principal, int64, error) {
	tok, err := t.store.AuthenticateClient(ctx, token)
	if err != nil {
		return Principal{}, 0, err
	}
	p, err := t.principal(ctx, tok)
	return p, tok.ID, err
}

func (t storeTokens) PrincipalByID(ctx context.Context, id int64) (Principal, error) {
	tok, err := t.store.ClientTokenByID(ctx, id)
	if err != nil {
		return Principal{}, err
	}
	return t.principal(ctx, tok)
}

// principal is who holds a valid client token.
func (t storeTokens) principal(ctx context.Context, tok store.Token) (Principal, error) {
	p := Principal{Name: tok.Subject}
	switch tok.Kind {
	case store.KindAPI:
		p.Kind, p.Actions = KindOperator, allActions
		return p, nil
	case store.KindProject:
		p.Kind = KindProject
		proj, err := t.store.Project(ctx, tok.Subject)
		if err != nil {
			return Principal{}, err
		}
		p.Repos = proj.Keys
	case store.KindUser:
		p.Kind = KindUser
	default:
		return Principal{}, store.ErrInvalidToken
	}
	for _, a := range tok.Actions {
		// An action this hub does not know (from a newer hub) grants
		// nothing.
		if slices.Contains(allActions, Action(a)) {
			p.Actions = append(p.Actions, Action(a))
		}
	}
	return p, nil
}
