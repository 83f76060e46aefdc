// Package cache is the edge's response cache: the "cache" policy
// (plugins.PhaseCache, the last phase before the forwarder) and the
// node-wide store it keeps objects in.
//
// A Factory holds one Store for the node, bounded by a byte budget and
// shared by every stage (keys include the API and stage), so it outlives
// snapshot swaps. The policy follows RFC 9111 for what it stores and how
// long, RFC 5861 for serving stale objects, coalesces concurrent misses,
// and sends the origin only what is in the key. The Store is also the
// Purger the admin API calls; purges are data (PurgeRequest) so the origin
// can ship them to every edge.
//
// docs/cache.md is the manual.
package cache
