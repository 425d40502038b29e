#!/bin/sh
# Litestream on a FOLLOWER node: restores the workspace database from the replica, then
# keeps it current (`litestream restore -f`), for the node's authzd (`authzd --db
# "$AUTHZ_DB"`). Run it as a service next to authzd (systemd, a native sidecar: see
# deploy/litestream/kubernetes). Stop it with SIGTERM: it stops between transactions.
#
#   AUTHZ_DB               the node's database, e.g. /var/lib/authz/workspace.db
#   AUTHZ_REPLICA_URL      file:///srv/authz-replica/workspace (a file replica), or
#                          s3://BUCKET/PATH?region=R[&endpoint=https://host:port]
#   AUTHZ_FOLLOW_INTERVAL  how often to look for new transactions: 100ms for a file
#                          replica; 1s for object storage (each look costs up to 9 LIST
#                          requests; README.md, "Many nodes")
#
# Every start restores from nothing: the database left by an earlier run is deleted
# first. Litestream 0.5.17 can resume from "$AUTHZ_DB-txid" only while no transaction
# was replicated since the primary's last snapshot (a day by default): otherwise it exits
# with "saved TXID ... is ahead of latest snapshot" (replica.go, Restore; upstream PR
# #1385 is open). A fresh restore is also what a file left half-written by a follower
# that was killed (SIGKILL, OOM) in the middle of a transaction needs. Meanwhile the
# node's authzd keeps serving its last snapshot, and loads the new file when the restore
# renames it into place.
set -eu
: "${AUTHZ_DB:?set AUTHZ_DB}" "${AUTHZ_REPLICA_URL:?set AUTHZ_REPLICA_URL}"
rm -f "$AUTHZ_DB" "$AUTHZ_DB-txid" "$AUTHZ_DB.tmp"
exec litestream restore -f -follow-interval "${AUTHZ_FOLLOW_INTERVAL:-100ms}" -o "$AUTHZ_DB" "$AUTHZ_REPLICA_URL"
