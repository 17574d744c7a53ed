// Package replica is what lets several hub processes on one PostgreSQL
// act as one hub: a message for the replica that holds an agent's stream,
// or word to the leader that the commit-status outbox in the database has
// work, goes by PostgreSQL NOTIFY (Listen, Message), and a tunnelled
// Kubernetes API request is passed on as it came to that replica's
// internal URL (Forward). A NOTIFY is at most once; what must arrive is
// recorded in the database first (a "sync now" in table sync_now, a
// commit status in the outbox) and the message only says where to look
// now, so a lost one delays the work and loses nothing.
//
// It adds no trust between replicas: a forwarded request carries the
// caller's own credentials and the replica that serves it checks them as
// it checks a direct request. A replica never forwards a request that was
// forwarded to it (HopHeader), so requests cannot loop. On SQLite there is
// one replica and none of this runs.
package replica
