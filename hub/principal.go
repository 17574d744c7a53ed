package hub

import (
	"context"
	"slices"

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
}

// Can says whether the principal may do a.
func (p Principal) Can(a Action) bool { return slices.Contains(p.Actions, a) }

// Principals turns a bearer token into its principal. An unknown or
// revoked token is store.ErrInvalidToken; any other error is the store's.
// Scoped project and user tokens plug in here (Options.Principals).
type Principals interface {
	Principal(ctx context.Context, token string) (Principal, error)
}

// operatorTokens are the store's API tokens as principals: operators with
// every action.
type operatorTokens struct{ store *store.Store }

func (o operatorTokens) Principal(ctx context.Context, token string) (Principal, error) {
	name, err := o.store.Authenticate(ctx, store.KindAPI, token)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Kind: KindOperator, Name: name, Actions: []Action{ActionRead, ActionResync, ActionProxy}}, nil
}
