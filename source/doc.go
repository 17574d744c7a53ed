// Package source turns a Git URL and a ref into a local, read-only tree of
// files for the sync loop to render.
//
// It owns resolving a ref (branch, tag, semver range, exact commit) to a
// Revision with one ls-remote, fetching only the revision that changed
// (shallow where the server allows it) into a cache, checking it out into
// its own directory, and authenticating to the Git host (HTTPS basic or
// bearer token, SSH key checked against known_hosts, custom CA). One listing
// and one fetch serve every caller that asks for the same URL and ref with
// the same credentials.
//
// The cache is shared only between callers that present the same
// credentials (keyed by the normalised URL and a keyed hash of the
// credentials), and every Resolve and Checkout first proves with a listing
// made with the caller's credentials that the caller may read the
// repository. A checked-out tree holds no symbolic link that leads out of
// it, stays within Options' size and file-count limits, and leaves
// submodules empty (they are never fetched).
//
// It never writes to the cluster, never changes a checkout directory once it
// has been handed out (a new revision gets a new directory), and never puts
// credentials into an error, a log line, a cache path or a formatted Auth.
package source
