package sync

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
)

// Stages are the first stages of a sync — fetch (Secret → credentials →
// ref listing → checkout), render and plan — as the library entry point
// that both the agent's loop and `tether diff` / `tether render` call, so
// that what those commands show is what a sync would apply by
// construction. Each stage returns a *StageError that carries the
// condition reason a sync reports.
type Stages struct {
	Source   Source
	Renderer Renderer
	// Credentials reads spec.source.secretRef; nil when no GitSync the
	// stages serve names one.
	Credentials *Credentials
}

// StageError is a failed stage: the condition reason a sync reports and
// whether the user must change something before a retry can succeed.
type StageError struct {
	Reason string
	User   bool
	Err    error
}

// Error is the stage's error message.
func (e *StageError) Error() string { return e.Err.Error() }

// Unwrap returns the stage's error.
func (e *StageError) Unwrap() error { return e.Err }

// Resolve lists gs's ref and returns the revision it points at now, with
// the credentials that listing used. A resync the status has not echoed
// yet always lists the ref (never a cached listing) and re-reads the
// Secret, so that it applies the newest commit with the newest
// credentials. A refused authentication re-reads the Secret once, for a
// rotated one.
func (s *Stages) Resolve(ctx context.Context, gs *v1alpha1.GitSync) (source.Revision, *source.Auth, error) {
	resync := resyncPending(gs)
	if resync {
		s.Source.Forget(gs.Spec.Source.URL)
	}
	auth, err := s.auth(ctx, gs, resync)
	if err != nil {
		return source.Revision{}, nil, &StageError{Reason: v1alpha1.ReasonFetchFailed, User: apierrors.IsNotFound(err), Err: err}
	}
	ref := SourceRef(gs)
	rev, err := s.Source.Resolve(ctx, gs.Spec.Source.URL, ref, auth)
	if errors.Is(err, source.ErrAuth) && gs.Spec.Source.SecretRef != nil && !resync {
		if auth, err = s.auth(ctx, gs, true); err == nil {
			rev, err = s.Source.Resolve(ctx, gs.Spec.Source.URL, ref, auth)
		}
	}
	if err != nil {
		return source.Revision{}, nil, &StageError{Reason: v1alpha1.ReasonFetchFailed, User: !source.IsTransient(err), Err: err}
	}
	return rev, auth, nil
}

func (s *Stages) auth(ctx context.Context, gs *v1alpha1.GitSync, fresh bool) (*source.Auth, error) {
	if gs.Spec.Source.SecretRef == nil {
		return nil, nil
	}
	if s.Credentials == nil {
		return nil, fmt.Errorf("GitSync %s/%s: spec.source.secretRef is set but nothing reads Secrets here", gs.Namespace, gs.Name)
	}
	return s.Credentials.Get(ctx, gs, fresh)
}

// Checkout makes rev of gs's source available as a folder.
func (s *Stages) Checkout(ctx context.Context, gs *v1alpha1.GitSync, rev source.Revision, auth *source.Auth) (string, error) {
	dir, err := s.Source.Checkout(ctx, gs.Spec.Source.URL, rev, auth)
	if err != nil {
		return "", &StageError{Reason: v1alpha1.ReasonFetchFailed, User: !source.IsTransient(err), Err: err}
	}
	return dir, nil
}

// Render builds gs's spec.path under root with gs's settings
// (substitution, remote bases). rev names the revision in errors; the zero
// Revision stands for a local folder.
func (s *Stages) Render(ctx context.Context, gs *v1alpha1.GitSync, root string, rev source.Revision) (*render.Result, error) {
	res, err := s.Renderer.Render(ctx, render.Options{
		Root: root, Path: gs.Spec.Path, AllowRemoteBases: gs.Spec.AllowRemoteBases, Substitute: gs.Spec.Substitute,
	})
	if err != nil {
		where := displayPath(gs.Spec.Path)
		if !rev.IsZero() {
			where += " at " + rev.String()
		}
		var re *render.Error
		return nil, &StageError{Reason: v1alpha1.ReasonRenderFailed, User: errors.As(err, &re), Err: fmt.Errorf("%s: %w", where, err)}
	}
	return res, nil
}

// Plan normalises and validates objs with gs's apply settings (owner
// labels, target and allowed namespaces).
func Plan(ctx context.Context, p Planner, gs *v1alpha1.GitSync, objs []*unstructured.Unstructured) (*apply.Plan, error) {
	plan, err := p.Plan(ctx, objs, ApplyOptions(gs))
	if err != nil {
		return nil, applyError(err)
	}
	return plan, nil
}

// Desired is what a sync of a GitSync would apply now.
type Desired struct {
	Revision source.Revision
	Render   *render.Result
	Plan     *apply.Plan
}

// Desired runs fetch → render → plan for gs exactly as a sync does, and
// writes nothing: `tether diff --gitsync` shows its plan.
func (s *Stages) Desired(ctx context.Context, gs *v1alpha1.GitSync, p Planner) (*Desired, error) {
	rev, auth, err := s.Resolve(ctx, gs)
	if err != nil {
		return nil, err
	}
	dir, err := s.Checkout(ctx, gs, rev, auth)
	if err != nil {
		return nil, err
	}
	res, err := s.Render(ctx, gs, dir, rev)
	if err != nil {
		return nil, err
	}
	plan, err := Plan(ctx, p, gs, res.Objects)
	if err != nil {
		return nil, err
	}
	return &Desired{Revision: rev, Render: res, Plan: plan}, nil
}

// applyError classifies an error of the apply package: the condition
// reason and whether it is the user's to fix.
func applyError(err error) *StageError {
	reason := v1alpha1.ReasonApplyFailed
	switch {
	case errors.Is(err, apply.ErrNamespaceNotAllowed):
		reason = v1alpha1.ReasonNamespaceDenied
	case errors.Is(err, apply.ErrOwnershipConflict):
		reason = v1alpha1.ReasonOwnershipConflict
	}
	return &StageError{Reason: reason, User: apply.IsUserError(err), Err: err}
}

// ApplyOptions are the apply settings of gs, as a sync uses them.
func ApplyOptions(gs *v1alpha1.GitSync) apply.Options {
	return apply.Options{
		Owner:             ownerOf(gs),
		TargetNamespace:   targetNamespace(gs),
		AllowedNamespaces: gs.Spec.AllowedNamespaces,
		Prune:             gs.Spec.Prune,
		Timeout:           timeout(gs),
	}
}

func displayPath(p string) string {
	if p == "" {
		return "./"
	}
	return p
}
