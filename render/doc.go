// Package render turns a checked-out Git tree into Kubernetes objects with
// kustomize (sigs.k8s.io/kustomize/api/krusty): overlays, components,
// patches, images; a plain folder of YAML is decoded directly, with the same
// result as kustomize would give (plain.go), or, when it holds something
// kustomize treats specially, gets a generated kustomization; and variables
// are substituted after the build, as Flux's postBuild does.
//
// Render never reads outside the repository root (symlinks included), never
// writes into the checkout (checkouts are shared between GitSyncs and are
// read-only: generated kustomizations live in memory), and never touches a
// cluster. It makes no network request unless the GitSync allows remote
// bases, and then only git clones of https URLs: kustomize's own reads of
// http(s) URLs are refused in every build (network.go), and every
// kustomization is checked as kustomize reads it (guard.go). Every file it
// reads is held to size limits before it is read, and every manifest to a
// strict decoder (decode.go), so that a hostile tree gets an error, not the
// agent's memory.
//
// Cache (cache.go) keeps successful renders by the Git tree hash of the
// folder they read, spec.path and the options, shared by every GitSync of
// the process.
//
// Errors that a retry will not fix (the tree or the spec is wrong) are
// returned as *Error.
package render
