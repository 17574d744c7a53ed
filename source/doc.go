// Package source turns a Git URL and a ref into a local, read-only tree of
// files for the sync loop to render.
//
// It owns resolving a ref (branch, tag, semver range, exact commit) to a
// Revision with one ls-remote, fetching only the revision that changed
// (shallow where the server allows it) into a per-URL cache, checking it out
// into its own directory, and authenticating to the Git host (HTTPS basic or
// bearer token, SSH key checked against known_hosts, custom CA). One listing
// and one fetch serve every caller that asks for the same URL and ref.
//
// It never writes to the cluster, never changes a checkout directory once it
// has been handed out (a new revision gets a new directory), and never puts
// credentials into an error, a log line or a formatted Auth.
package source
