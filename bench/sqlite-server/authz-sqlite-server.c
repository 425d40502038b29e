/*
 * authz-sqlite-server: the "naive alternative" benchmark baseline.
 *
 * Speaks the sidecar's wire protocol (proto/README.md) on a Unix socket, but answers every
 * request by running SQL against the workspace store (the same SQLite file authzd loads),
 * with no in-memory snapshot: no result or workspace data survives from one request to
 * the next. This is what a team would write without the snapshot design:
 *
 *   - one thread per connection, blocking reads; every complete frame of a read is
 *     answered, and the responses of that read go out in one write;
 *   - each connection thread opens its own read-only SQLite connection and prepares its
 *     statements once; each request runs its queries inside ONE read transaction
 *     (BEGIN ... COMMIT), and its snapshot_version is meta.version read in it;
 *   - the decisions follow spec/RULES.md exactly as Sources/AuthzEngine/Snapshot.swift
 *     implements them (same reasons, same explanation steps, same first asset by id).
 *
 * Methods: EffectivePermission, CanUse, SeatType, Capabilities and Batch of those.
 * Status and Reload answer UNIMPLEMENTED (12). deadline_ms is ignored (as authzd does).
 *
 *   authz-sqlite-server --socket PATH --db PATH [--threads N]
 *
 * --threads N: at most N connections (one thread each) are served at once, default 1024;
 * one more gets RESOURCE_EXHAUSTED and is closed, as authzd's --max-connections.
 * A stale socket file is replaced; a live one (something accepts on it) is never stolen.
 * SIGTERM/SIGINT remove the socket and exit 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sqlite3.h>

#include "authz/v1/authz.pb-c.h"

/* ---------------------------------------------------------------------------------------
 * Limits and protocol constants (proto/README.md)
 * ------------------------------------------------------------------------------------- */

enum {
  HEADER_SIZE = 5,
  MAX_PAYLOAD = 65536,
  MAX_BATCH = 256,
  MAX_ID = 128,
  READ_BUFFER = 256 * 1024,
  MAX_STEPS = 5,
};

enum {
  CODE_OK = 0,
  CODE_INVALID_ARGUMENT = 3,
  CODE_FAILED_PRECONDITION = 9,
  CODE_RESOURCE_EXHAUSTED = 8,
  CODE_UNIMPLEMENTED = 12,
  CODE_INTERNAL = 13,
  CODE_UNAVAILABLE = 14,
};

/* ---------------------------------------------------------------------------------------
 * Vocabulary. Internal values are the engine's (0-based, lowest first); the proto value
 * of a level, role, access or seat is the internal value + 1.
 * ------------------------------------------------------------------------------------- */

enum { ROLE_GUEST, ROLE_VIEWER, ROLE_EXPLORER, ROLE_EDITOR, ROLE_MANAGER, ROLE_ADMIN };
enum { LV_NONE, LV_CAN_VIEW_APP, LV_CAN_VIEW, LV_CAN_EXPLORE, LV_CAN_EDIT, LV_FULL_ACCESS };
enum { ACC_NONE, ACC_VIEW, ACC_USE };
enum { ORIGIN_MANUAL, ORIGIN_DOMAIN, ORIGIN_INVITE, ORIGIN_DIRECTORY };

static const char *const role_names[] = {"guest", "viewer", "explorer", "editor", "manager", "admin"};
static const char *const level_names[] = {"none",        "can_view_app", "can_view",
                                          "can_explore", "can_edit",     "full_access"};
static const char *const origin_names[] = {"manual", "domain", "invite", "directory"};
static const char *const plan_names[] = {"community", "professional", "team", "enterprise"};

/* The index of `text` in `names`, or -1. */
static int lookup_name(const unsigned char *text, const char *const *names, int count) {
  if (text == NULL) return -1;
  for (int i = 0; i < count; i++) {
    if (strcmp((const char *)text, names[i]) == 0) return i;
  }
  return -1;
}

#define NAME_INDEX(text, names) lookup_name((text), (names), (int)(sizeof(names) / sizeof(names[0])))

/* RULES.md §4 step 4. */
static int role_level_cap(int role) {
  switch (role) {
    case ROLE_VIEWER: return LV_CAN_VIEW;
    case ROLE_EXPLORER: return LV_CAN_EXPLORE;
    default: return LV_FULL_ACCESS;
  }
}

/* RULES.md §3: the lowest role holding each capability, in Capability enum order (1...14). */
static const int capability_minimum_role[14] = {
    ROLE_ADMIN,    ROLE_ADMIN,    ROLE_ADMIN,    /* view_all, manage_settings, self_grant */
    ROLE_MANAGER,  ROLE_MANAGER,                 /* update_metadata, endorsed_statuses */
    ROLE_EDITOR,   ROLE_EDITOR,                  /* create_projects, use_api */
    ROLE_EXPLORER, ROLE_EXPLORER, ROLE_EXPLORER, /* schedule, build_explorations, notifications */
    ROLE_VIEWER,   ROLE_GUEST,                   /* workspace projects, shared projects */
    ROLE_VIEWER,   ROLE_GUEST,                   /* workspace apps, shared apps */
};

/* ---------------------------------------------------------------------------------------
 * SQL. Every statement is prepared once per connection thread.
 * ------------------------------------------------------------------------------------- */

enum {
  Q_BEGIN,
  Q_COMMIT,
  Q_ROLLBACK,
  Q_SETTINGS,
  Q_USER,
  Q_MAPPED_ROLES,
  Q_DOMAIN,
  Q_PROJECT,
  Q_USER_GRANTS,
  Q_GROUP_GRANTS,
  Q_DOWNGRADE_ASSET,
  Q_ASSET,
  Q_IN_ASSET_GROUPS,
  Q_COUNT
};

static const char *const query_sql[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    /* The snapshot version and the workspace settings, in one row. */
    [Q_SETTINGS] =
        "SELECT m.version, w.plan, w.default_domain_role, w.viewer_seats_paid, "
        "w.directory_sync_enabled, w.directory_role_sync "
        "FROM meta m LEFT JOIN workspace w ON w.id = 1 WHERE m.id = 1",
    [Q_USER] = "SELECT pk, email, origin, role, active FROM users WHERE id = ?1",
    /* The roles mapped to the user's directory groups (role sync). */
    [Q_MAPPED_ROLES] =
        "SELECT rm.role FROM group_members gm JOIN role_mappings rm ON rm.group_pk = gm.group_pk "
        "WHERE gm.user_pk = ?1",
    [Q_DOMAIN] = "SELECT 1 FROM allowed_domains WHERE domain = ?1",
    [Q_PROJECT] = "SELECT pk, owner_pk, workspace_access, public_access FROM projects WHERE id = ?1",
    /* By the project's grants (a few dozen at most): without ANALYZE statistics SQLite would
     * pick project_grants_by_user, and a popular user holds hundreds of grants. */
    [Q_USER_GRANTS] = "SELECT level FROM project_grants WHERE project_pk = ?1 AND +user_pk = ?2",
    /* Grants to the groups the user belongs to; the group id names the explanation step. */
    [Q_GROUP_GRANTS] =
        "SELECT pg.group_pk, pg.level, g.id FROM project_grants pg "
        "JOIN group_members gm ON gm.group_pk = pg.group_pk AND gm.user_pk = ?2 "
        "JOIN groups g ON g.pk = pg.group_pk "
        "WHERE pg.project_pk = ?1",
    /* The first asset (by id) of the project the user cannot access (RULES.md §4 step 6):
     * none of its built-in groups applies (?3 is 'workspace' or 'workspace_guests') and the
     * user is in none of its custom groups. */
    [Q_DOWNGRADE_ASSET] =
        "SELECT a.id FROM project_assets pa JOIN assets a ON a.pk = pa.asset_pk "
        "WHERE pa.project_pk = ?1 "
        "AND NOT EXISTS (SELECT 1 FROM asset_groups ag "
        "  WHERE ag.asset_pk = pa.asset_pk AND ag.builtin IN ('public', ?3)) "
        "AND NOT EXISTS (SELECT 1 FROM asset_groups ag "
        "  JOIN group_members gm ON gm.group_pk = ag.group_pk AND gm.user_pk = ?2 "
        "  WHERE ag.asset_pk = pa.asset_pk) "
        "ORDER BY a.id LIMIT 1",
    [Q_ASSET] = "SELECT pk FROM assets WHERE id = ?1",
    /* RULES.md §5 step 3: the user belongs to one of the asset's groups. */
    [Q_IN_ASSET_GROUPS] =
        "SELECT EXISTS (SELECT 1 FROM asset_groups WHERE asset_pk = ?1 AND builtin IN ('public', ?3)) "
        "OR EXISTS (SELECT 1 FROM asset_groups ag "
        "  JOIN group_members gm ON gm.group_pk = ag.group_pk AND gm.user_pk = ?2 "
        "  WHERE ag.asset_pk = ?1)",
};

/* ---------------------------------------------------------------------------------------
 * Per-connection state
 * ------------------------------------------------------------------------------------- */

/* The result of one check, with storage for its protobuf-c messages. */
typedef struct {
  Authz__V1__CheckResult check;
  Authz__V1__CanUseResult can_use;
  Authz__V1__EffectivePermissionResult permission;
  Authz__V1__SeatTypeResult seat;
  Authz__V1__CapabilitiesResult capabilities;
  Authz__V1__Capability capability_values[14];
  Authz__V1__Step steps[MAX_STEPS];
  Authz__V1__Step *step_pointers[MAX_STEPS];
  char subjects[MAX_STEPS][MAX_ID + 1];
} Slot;

/* The settings row of the current transaction. */
typedef struct {
  uint64_t version;
  int plan;
  int default_domain_role;
  int viewer_seats_paid;
  int sync_enabled;
  int role_sync;
} Settings;

typedef struct {
  int fd;
  sqlite3 *db;
  sqlite3_stmt *stmt[Q_COUNT];
  Settings settings;
  /* Set when a query failed: the request is answered with this status. */
  int failed;
  uint32_t fail_code;
  char fail_message[512];

  Slot *slots; /* MAX_BATCH */
  Authz__V1__CheckResult *result_pointers[MAX_BATCH];
  char error_message[512];

  uint8_t *in;
  size_t in_length;
  uint8_t *out;
  size_t out_length;
  size_t out_capacity;
} Conn;

/* ---------------------------------------------------------------------------------------
 * Process-wide state
 * ------------------------------------------------------------------------------------- */

static const char *db_path;
static const char *socket_path;
static int max_connections = 1024;
static int connections_open;
static pthread_mutex_t connections_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_message(const char *format, ...) {
  va_list arguments;
  va_start(arguments, format);
  fputs("authz-sqlite-server: ", stderr);
  vfprintf(stderr, format, arguments);
  fputc('\n', stderr);
  va_end(arguments);
}

static void *xmalloc(size_t size) {
  void *p = malloc(size > 0 ? size : 1);
  if (p == NULL) {
    log_message("out of memory");
    abort();
  }
  return p;
}

/* ---------------------------------------------------------------------------------------
 * SQL helpers: a failing query marks the connection's current request as failed.
 * ------------------------------------------------------------------------------------- */

static void fail_sql(Conn *c, int rc, const char *what) {
  if (c->failed) return;
  c->failed = 1;
  c->fail_code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? CODE_UNAVAILABLE : CODE_INTERNAL;
  snprintf(c->fail_message, sizeof c->fail_message, "database error (%s): %s", what, sqlite3_errmsg(c->db));
}

/* Steps `s`: 1 for a row, 0 when done, -1 on error (recorded). */
static int step(Conn *c, sqlite3_stmt *s, const char *what) {
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return 1;
  if (rc == SQLITE_DONE) return 0;
  fail_sql(c, rc, what);
  return -1;
}

static sqlite3_stmt *stmt_text(Conn *c, int query, const char *text) {
  sqlite3_stmt *s = c->stmt[query];
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, text, -1, SQLITE_STATIC);
  return s;
}

static int run_simple(Conn *c, int query) {
  sqlite3_stmt *s = c->stmt[query];
  sqlite3_reset(s);
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    fail_sql(c, rc, query_sql[query]);
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------
 * Decisions (RULES.md §2-§6), mirroring Sources/AuthzEngine/Snapshot.swift
 * ------------------------------------------------------------------------------------- */

enum { USER_UNKNOWN, USER_ANONYMOUS, USER_KNOWN };

typedef struct {
  int kind;
  sqlite3_int64 pk;
  int active;
  int role;
  int role_source; /* proto RoleSource value */
  int plan_downgrade;
} UserInfo;

typedef struct {
  int known;
  sqlite3_int64 pk;
  int has_owner;
  sqlite3_int64 owner_pk;
  int workspace_access;
  int public_access;
} ProjectInfo;

typedef struct {
  int reason; /* proto Reason */
  int level;  /* internal level */
  const char *subject;
} TraceStep;

typedef struct {
  int level;
  int reason;
  int count;
  TraceStep steps[MAX_STEPS];
  char group_subject[MAX_ID + 1];
  char asset_subject[MAX_ID + 1];
} Decision;

static void trace(Decision *d, int reason, int level, const char *subject) {
  d->steps[d->count].reason = reason;
  d->steps[d->count].level = level;
  d->steps[d->count].subject = subject;
  d->count++;
  d->level = level;
  d->reason = reason;
}

/* Reads the settings row and the snapshot version of the current transaction. */
static int read_settings(Conn *c) {
  sqlite3_stmt *s = c->stmt[Q_SETTINGS];
  sqlite3_reset(s);
  int row = step(c, s, "meta/workspace");
  if (row < 0) return -1;
  if (row == 0) {
    c->failed = 1;
    c->fail_code = CODE_UNAVAILABLE;
    snprintf(c->fail_message, sizeof c->fail_message, "%s: the meta row (snapshot version) is missing", db_path);
    sqlite3_reset(s);
    return -1;
  }
  Settings *w = &c->settings;
  w->version = (uint64_t)sqlite3_column_int64(s, 0);
  if (sqlite3_column_type(s, 1) == SQLITE_NULL) {
    c->failed = 1;
    c->fail_code = CODE_UNAVAILABLE;
    snprintf(c->fail_message, sizeof c->fail_message, "%s: no workspace has been imported yet", db_path);
    sqlite3_reset(s);
    return -1;
  }
  w->plan = NAME_INDEX(sqlite3_column_text(s, 1), plan_names);
  w->default_domain_role = NAME_INDEX(sqlite3_column_text(s, 2), role_names);
  w->viewer_seats_paid = sqlite3_column_int(s, 3) != 0;
  w->sync_enabled = sqlite3_column_int(s, 4) != 0;
  w->role_sync = sqlite3_column_int(s, 5) != 0;
  sqlite3_reset(s);
  if (w->plan < 0 || w->default_domain_role < 0) {
    c->failed = 1;
    c->fail_code = CODE_INTERNAL;
    snprintf(c->fail_message, sizeof c->fail_message, "%s: workspace row holds an unknown plan or role", db_path);
    return -1;
  }
  return 0;
}

/* Whether the lower-cased domain of `email` (after the last '@') is an allowed domain. */
static int domain_allowed(Conn *c, const unsigned char *email, int email_length) {
  int at = -1;
  for (int i = 0; i < email_length; i++) {
    if (email[i] == '@') at = i;
  }
  if (at < 0) return 0; /* no domain: "" is never an allowed domain */
  int length = email_length - at - 1;
  char small[256];
  char *domain = length < (int)sizeof small ? small : xmalloc((size_t)length + 1);
  for (int i = 0; i < length; i++) {
    unsigned char b = email[at + 1 + i];
    domain[i] = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
  }
  domain[length] = '\0';
  sqlite3_stmt *s = c->stmt[Q_DOMAIN];
  sqlite3_reset(s);
  sqlite3_bind_text(s, 1, domain, length, SQLITE_STATIC);
  int row = step(c, s, "allowed_domains");
  sqlite3_reset(s);
  if (domain != small) free(domain);
  return row > 0;
}

/* Looks the user up and resolves its role (RULES.md §2). Returns -1 on a query failure. */
static int resolve_user(Conn *c, const char *id, UserInfo *u) {
  memset(u, 0, sizeof *u);
  if (id[0] == '\0') {
    u->kind = USER_ANONYMOUS;
    return 0;
  }
  sqlite3_stmt *s = stmt_text(c, Q_USER, id);
  int row = step(c, s, "users");
  if (row <= 0) {
    sqlite3_reset(s);
    u->kind = USER_UNKNOWN;
    return row;
  }
  u->kind = USER_KNOWN;
  u->pk = sqlite3_column_int64(s, 0);
  u->active = sqlite3_column_int(s, 4) != 0;
  if (!u->active) {
    /* An inactive user has no role for any decision. */
    sqlite3_reset(s);
    return 0;
  }
  int origin = NAME_INDEX(sqlite3_column_text(s, 2), origin_names);
  int explicit_role = sqlite3_column_type(s, 3) == SQLITE_NULL ? -1 : NAME_INDEX(sqlite3_column_text(s, 3), role_names);
  const Settings *w = &c->settings;
  int role, source;
  if (origin == ORIGIN_DIRECTORY) {
    if (w->sync_enabled && w->role_sync) {
      sqlite3_stmt *m = c->stmt[Q_MAPPED_ROLES];
      sqlite3_reset(m);
      sqlite3_bind_int64(m, 1, u->pk);
      int best = -1;
      int r;
      while ((r = step(c, m, "role_mappings")) > 0) {
        int mapped = NAME_INDEX(sqlite3_column_text(m, 0), role_names);
        if (mapped > best) best = mapped;
      }
      sqlite3_reset(m);
      if (r < 0) {
        sqlite3_reset(s);
        return -1;
      }
      if (best >= 0) {
        role = best;
        source = AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_DIRECTORY_MAPPING;
      } else {
        role = ROLE_VIEWER;
        source = AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_DIRECTORY_DEFAULT;
      }
    } else if (explicit_role >= 0) {
      role = explicit_role;
      source = AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_EXPLICIT;
    } else {
      role = ROLE_VIEWER;
      source = AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_DIRECTORY_DEFAULT;
    }
  } else if (explicit_role >= 0) {
    role = explicit_role;
    source = AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_EXPLICIT;
  } else if (domain_allowed(c, sqlite3_column_text(s, 1), sqlite3_column_bytes(s, 1))) {
    role = w->default_domain_role;
    source = AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_DOMAIN_DEFAULT;
  } else {
    role = ROLE_GUEST;
    source = AUTHZ__V1__ROLE_SOURCE__ROLE_SOURCE_INVITE_DEFAULT;
  }
  sqlite3_reset(s);
  if (c->failed) return -1;
  /* The Explorer role exists on team and enterprise only. */
  if (role == ROLE_EXPLORER && !(w->plan == 2 || w->plan == 3)) {
    role = ROLE_VIEWER;
    u->plan_downgrade = 1;
  }
  u->role = role;
  u->role_source = source;
  return 0;
}

static int lookup_project(Conn *c, const char *id, ProjectInfo *p) {
  memset(p, 0, sizeof *p);
  sqlite3_stmt *s = stmt_text(c, Q_PROJECT, id);
  int row = step(c, s, "projects");
  if (row > 0) {
    p->known = 1;
    p->pk = sqlite3_column_int64(s, 0);
    p->has_owner = sqlite3_column_type(s, 1) != SQLITE_NULL;
    p->owner_pk = sqlite3_column_int64(s, 1);
    p->workspace_access = NAME_INDEX(sqlite3_column_text(s, 2), level_names);
    p->public_access = NAME_INDEX(sqlite3_column_text(s, 3), level_names);
    if (p->workspace_access < 0) p->workspace_access = LV_NONE;
    if (p->public_access < 0) p->public_access = LV_NONE;
    if (p->public_access > LV_CAN_VIEW_APP) p->public_access = LV_CAN_VIEW_APP;
  }
  sqlite3_reset(s);
  return row < 0 ? -1 : 0;
}

/* RULES.md §4 for a looked-up user and project. */
static void effective_permission(Conn *c, const UserInfo *u, const ProjectInfo *p, Decision *d) {
  d->count = 0;
  /* Step 1: unknown ids, inactive users, the anonymous viewer. */
  if (!p->known) {
    trace(d, AUTHZ__V1__REASON__REASON_UNKNOWN_PROJECT, LV_NONE, NULL);
    return;
  }
  if (u->kind == USER_UNKNOWN) {
    trace(d, AUTHZ__V1__REASON__REASON_UNKNOWN_USER, LV_NONE, NULL);
    return;
  }
  if (u->kind == USER_ANONYMOUS) {
    if (p->public_access > LV_NONE) {
      trace(d, AUTHZ__V1__REASON__REASON_PUBLIC_SHARE, p->public_access, NULL);
    } else {
      trace(d, AUTHZ__V1__REASON__REASON_NO_GRANT, LV_NONE, NULL);
    }
    return;
  }
  if (!u->active) {
    trace(d, AUTHZ__V1__REASON__REASON_USER_INACTIVE, LV_NONE, NULL);
    return;
  }
  int role = u->role;

  /* Step 2: the granted level; ties keep the earlier source. */
  int level = LV_NONE;
  int reason = AUTHZ__V1__REASON__REASON_NO_GRANT;
  const char *subject = NULL;
  if (p->has_owner && p->owner_pk == u->pk) {
    level = LV_FULL_ACCESS;
    reason = AUTHZ__V1__REASON__REASON_OWNER;
  }
  if (level < LV_FULL_ACCESS) {
    sqlite3_stmt *s = c->stmt[Q_USER_GRANTS];
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, p->pk);
    sqlite3_bind_int64(s, 2, u->pk);
    int granted = -1;
    while (step(c, s, "project_grants (user)") > 0) {
      int g = NAME_INDEX(sqlite3_column_text(s, 0), level_names);
      if (g > granted) granted = g;
    }
    sqlite3_reset(s);
    if (granted > level) {
      level = granted;
      reason = AUTHZ__V1__REASON__REASON_USER_GRANT;
    }
  }
  if (role != ROLE_GUEST) {
    if (level < LV_FULL_ACCESS) {
      sqlite3_stmt *s = c->stmt[Q_GROUP_GRANTS];
      sqlite3_reset(s);
      sqlite3_bind_int64(s, 1, p->pk);
      sqlite3_bind_int64(s, 2, u->pk);
      int best = LV_NONE;
      int found = 0;
      while (step(c, s, "project_grants (groups)") > 0) {
        int g = NAME_INDEX(sqlite3_column_text(s, 1), level_names);
        const unsigned char *text = sqlite3_column_text(s, 2);
        const char *id = text != NULL ? (const char *)text : "";
        /* The highest level; among equals the group with the smallest id (byte order,
           RULES.md §4 step 2). */
        if (g > best || (found && g == best && strcmp(id, d->group_subject) < 0)) {
          best = g;
          found = 1;
          snprintf(d->group_subject, sizeof d->group_subject, "%s", id);
        }
      }
      sqlite3_reset(s);
      if (found && best > level) {
        level = best;
        reason = AUTHZ__V1__REASON__REASON_GROUP_GRANT;
        subject = d->group_subject;
      }
    }
    if (p->workspace_access > level) {
      level = p->workspace_access;
      reason = AUTHZ__V1__REASON__REASON_WORKSPACE_SHARE;
      subject = NULL;
    }
  }
  if (p->public_access > level) {
    level = p->public_access;
    reason = AUTHZ__V1__REASON__REASON_PUBLIC_SHARE;
    subject = NULL;
  }
  trace(d, reason, level, subject);

  /* Step 3: the admin floor. */
  if (role == ROLE_ADMIN && level < LV_CAN_EXPLORE) {
    level = LV_CAN_EXPLORE;
    trace(d, AUTHZ__V1__REASON__REASON_ADMIN_FLOOR, level, NULL);
  }
  /* Step 4: role caps. */
  int cap = role_level_cap(role);
  if (level > cap) {
    level = cap;
    trace(d, AUTHZ__V1__REASON__REASON_ROLE_CAP, level, NULL);
  }
  /* Step 5: exploring needs build_explorations (explorer and up). */
  if (level == LV_CAN_EXPLORE && role < ROLE_EXPLORER) {
    level = LV_CAN_VIEW;
    trace(d, AUTHZ__V1__REASON__REASON_EXPLORE_NEEDS_ROLE, level, NULL);
  }
  /* Step 6: an asset the user cannot access caps the level at can_view. */
  if (level > LV_CAN_VIEW && role != ROLE_ADMIN) {
    sqlite3_stmt *s = c->stmt[Q_DOWNGRADE_ASSET];
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, p->pk);
    sqlite3_bind_int64(s, 2, u->pk);
    sqlite3_bind_text(s, 3, role == ROLE_GUEST ? "workspace_guests" : "workspace", -1, SQLITE_STATIC);
    if (step(c, s, "project_assets") > 0) {
      const unsigned char *id = sqlite3_column_text(s, 0);
      snprintf(d->asset_subject, sizeof d->asset_subject, "%s", id != NULL ? (const char *)id : "");
      level = LV_CAN_VIEW;
      trace(d, AUTHZ__V1__REASON__REASON_ASSET_DOWNGRADE, level, d->asset_subject);
    }
    sqlite3_reset(s);
  }
}

/* RULES.md §5 step 3 (and the anonymous viewer's `public` check). */
static int in_asset_groups(Conn *c, sqlite3_int64 asset, const UserInfo *u) {
  sqlite3_stmt *s = c->stmt[Q_IN_ASSET_GROUPS];
  sqlite3_reset(s);
  sqlite3_bind_int64(s, 1, asset);
  const char *builtin = "public";
  if (u->kind == USER_KNOWN) {
    sqlite3_bind_int64(s, 2, u->pk);
    builtin = u->role == ROLE_GUEST ? "workspace_guests" : "workspace";
  } else {
    sqlite3_bind_null(s, 2);
  }
  sqlite3_bind_text(s, 3, builtin, -1, SQLITE_STATIC);
  int result = 0;
  if (step(c, s, "asset_groups") > 0) result = sqlite3_column_int(s, 0) != 0;
  sqlite3_reset(s);
  return result;
}

/* CanUse (RULES.md §5): sets access (internal) and reason (proto). */
static void can_use(Conn *c, const char *user_id, const char *asset_id, const char *project_id, int *access,
                    int *reason) {
  sqlite3_stmt *s = stmt_text(c, Q_ASSET, asset_id);
  int row = step(c, s, "assets");
  sqlite3_int64 asset = row > 0 ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_reset(s);
  /* Step 1. */
  if (row <= 0) {
    *access = ACC_NONE;
    *reason = AUTHZ__V1__REASON__REASON_UNKNOWN_ASSET;
    return;
  }
  /* Then an unknown project, before anything about the user. */
  ProjectInfo p;
  if (project_id != NULL) {
    if (lookup_project(c, project_id, &p) < 0) return;
    if (!p.known) {
      *access = ACC_NONE;
      *reason = AUTHZ__V1__REASON__REASON_UNKNOWN_PROJECT;
      return;
    }
  }
  UserInfo u;
  if (resolve_user(c, user_id, &u) < 0) return;
  if (u.kind == USER_UNKNOWN) {
    *access = ACC_NONE;
    *reason = AUTHZ__V1__REASON__REASON_UNKNOWN_USER;
    return;
  }
  if (u.kind == USER_ANONYMOUS) {
    if (in_asset_groups(c, asset, &u)) {
      *access = ACC_VIEW;
      *reason = AUTHZ__V1__REASON__REASON_ANONYMOUS_PUBLIC;
    } else {
      *access = ACC_NONE;
      *reason = AUTHZ__V1__REASON__REASON_NOT_IN_ASSET_GROUPS;
    }
  } else if (!u.active) {
    *access = ACC_NONE;
    *reason = AUTHZ__V1__REASON__REASON_USER_INACTIVE;
    return;
  } else if (u.role == ROLE_ADMIN) {
    /* Step 2. */
    *access = ACC_USE;
    *reason = AUTHZ__V1__REASON__REASON_ADMIN;
  } else if (!in_asset_groups(c, asset, &u)) {
    /* Step 3. */
    *access = ACC_NONE;
    *reason = AUTHZ__V1__REASON__REASON_NOT_IN_ASSET_GROUPS;
    return;
  } else if (role_level_cap(u.role) >= LV_CAN_EDIT) {
    /* Step 4: roles that can hold can_edit use; explorers and viewers view. */
    *access = ACC_USE;
    *reason = AUTHZ__V1__REASON__REASON_GROUP_ACCESS;
  } else {
    *access = ACC_VIEW;
    *reason = AUTHZ__V1__REASON__REASON_ROLE_CANNOT_USE;
  }
  if (*access == ACC_NONE || project_id == NULL) return;
  /* Step 5: using an asset in a project needs can_edit on it (an unknown project was
     answered in step 1). */
  if (*access == ACC_USE) {
    Decision d;
    effective_permission(c, &u, &p, &d);
    if (d.level < LV_CAN_EDIT) {
      *access = ACC_VIEW;
      *reason = AUTHZ__V1__REASON__REASON_PROJECT_NEEDS_CAN_EDIT;
    }
  }
}

/* ---------------------------------------------------------------------------------------
 * Request validation (mirrors Sources/AuthzWire/RequestCodec.swift, messages included)
 * ------------------------------------------------------------------------------------- */

typedef struct {
  uint32_t code;
  char message[512];
} WireError;

static int set_error(WireError *e, uint32_t code, const char *format, ...) {
  va_list arguments;
  va_start(arguments, format);
  e->code = code;
  vsnprintf(e->message, sizeof e->message, format, arguments);
  va_end(arguments);
  return -1;
}

static int is_id_byte(unsigned char b) {
  return (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '.' || b == '_' ||
         b == ':' || b == '@' || b == '-';
}

/* `prefix` is "" or "batch.checks[N]."; `field` e.g. "can_use.asset". */
static int check_id(const char *text, int allow_empty, const char *prefix, const char *field, WireError *e) {
  if (text == NULL || text[0] == '\0') {
    if (allow_empty) return 0;
    return set_error(e, CODE_INVALID_ARGUMENT, "%s%s: the id is empty", prefix, field);
  }
  int count = 0;
  for (;;) {
    unsigned char b = (unsigned char)text[count];
    if (b == 0) break;
    if (!is_id_byte(b)) {
      return set_error(e, CODE_INVALID_ARGUMENT, "%s%s: byte %d of the id is 0x%02X; ids use only A-Z a-z 0-9 . _ : @ -",
                       prefix, field, count, b);
    }
    count++;
    if (count > MAX_ID) {
      return set_error(e, CODE_INVALID_ARGUMENT, "%s%s: the id is longer than %d bytes", prefix, field, MAX_ID);
    }
  }
  return 0;
}

static int check_enum(int value, int maximum, const char *name, const char *prefix, const char *field, WireError *e) {
  if (value == 0 || (value >= 1 && value <= maximum)) return 0;
  return set_error(e, CODE_INVALID_ARGUMENT, "%s%s: %d is not a known %s value", prefix, field, value, name);
}

static int validate_can_use(const Authz__V1__CanUse *q, const char *prefix, WireError *e) {
  if (q == NULL) return set_error(e, CODE_INVALID_ARGUMENT, "%scan_use.asset: the id is empty", prefix);
  if (check_id(q->project, 1, prefix, "can_use.project", e) < 0) return -1;
  if (check_id(q->user, 1, prefix, "can_use.user", e) < 0) return -1;
  if (check_id(q->asset, 0, prefix, "can_use.asset", e) < 0) return -1;
  return check_enum((int)q->required_access, 3, "Access", prefix, "can_use.required_access", e);
}

static int validate_permission(const Authz__V1__EffectivePermission *q, const char *prefix, WireError *e) {
  if (q == NULL) return set_error(e, CODE_INVALID_ARGUMENT, "%seffective_permission.project: the id is empty", prefix);
  if (check_id(q->user, 1, prefix, "effective_permission.user", e) < 0) return -1;
  if (check_id(q->project, 0, prefix, "effective_permission.project", e) < 0) return -1;
  return check_enum((int)q->required_level, 6, "Level", prefix, "effective_permission.required_level", e);
}

static const char *user_of_seat(const Authz__V1__SeatType *q) { return q != NULL && q->user != NULL ? q->user : ""; }
static const char *user_of_caps(const Authz__V1__Capabilities *q) {
  return q != NULL && q->user != NULL ? q->user : "";
}

/* The number of the first unknown field numbered `minimum` or more, or 0. */
static uint32_t first_unknown_field(const ProtobufCMessage *base, uint32_t minimum) {
  for (unsigned i = 0; i < base->n_unknown_fields; i++) {
    if (base->unknown_fields[i].tag >= minimum) return base->unknown_fields[i].tag;
  }
  return 0;
}

static int validate_check(const Authz__V1__Check *check, size_t index, WireError *e) {
  char prefix[48];
  snprintf(prefix, sizeof prefix, "batch.checks[%zu].", index);
  if (check == NULL) return set_error(e, CODE_INVALID_ARGUMENT, "%skind: no check kind set", prefix);
  switch (check->kind_case) {
    case AUTHZ__V1__CHECK__KIND_CAN_USE: return validate_can_use(check->can_use, prefix, e);
    case AUTHZ__V1__CHECK__KIND_EFFECTIVE_PERMISSION: return validate_permission(check->effective_permission, prefix, e);
    case AUTHZ__V1__CHECK__KIND_SEAT_TYPE: return check_id(user_of_seat(check->seat_type), 1, prefix, "seat_type.user", e);
    case AUTHZ__V1__CHECK__KIND_CAPABILITIES:
      return check_id(user_of_caps(check->capabilities), 1, prefix, "capabilities.user", e);
    default: {
      uint32_t field = first_unknown_field(&check->base, 1);
      if (field != 0) {
        return set_error(e, CODE_UNIMPLEMENTED, "%skind: check kind field %u is not implemented by this server", prefix,
                         field);
      }
      return set_error(e, CODE_INVALID_ARGUMENT, "%skind: no check kind set", prefix);
    }
  }
}

/* The call_id of a payload protobuf-c rejected: the last top-level field 1 read as a varint
 * before the first malformed field. */
static int read_varint(const uint8_t *bytes, size_t length, size_t *offset, uint64_t *value) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*offset >= length) return 0;
    uint8_t b = bytes[(*offset)++];
    result |= (uint64_t)(b & 0x7F) << shift;
    if ((b & 0x80) == 0) {
      *value = result;
      return 1;
    }
  }
  return 0;
}

static uint64_t salvage_call_id(const uint8_t *bytes, size_t length) {
  size_t offset = 0;
  uint64_t call_id = 0, tag, value;
  while (offset < length) {
    if (!read_varint(bytes, length, &offset, &tag) || (tag >> 3) == 0) break;
    switch (tag & 7) {
      case 0:
        if (!read_varint(bytes, length, &offset, &value)) return call_id;
        if ((tag >> 3) == 1) call_id = value;
        break;
      case 1:
        if (length - offset < 8) return call_id;
        offset += 8;
        break;
      case 2:
        if (!read_varint(bytes, length, &offset, &value) || value > length - offset) return call_id;
        offset += value;
        break;
      case 5:
        if (length - offset < 4) return call_id;
        offset += 4;
        break;
      default: return call_id;
    }
  }
  return call_id;
}

/* ---------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------- */

static void out_reserve(Conn *c, size_t more) {
  if (c->out_length + more <= c->out_capacity) return;
  size_t capacity = c->out_capacity > 0 ? c->out_capacity : 64 * 1024;
  while (capacity < c->out_length + more) capacity *= 2;
  uint8_t *grown = realloc(c->out, capacity);
  if (grown == NULL) {
    log_message("out of memory");
    abort();
  }
  c->out = grown;
  c->out_capacity = capacity;
}

/* Appends `response` as one frame to the connection's output. Like authzd, the status is
 * always present (code 0 and an empty message when OK). */
static void append_response(Conn *c, Authz__V1__Response *response, uint32_t code, const char *message) {
  Authz__V1__RpcStatus status = AUTHZ__V1__RPC_STATUS__INIT;
  status.code = code;
  if (message != NULL && message[0] != '\0') status.message = (char *)message;
  response->status = &status;
  size_t length = authz__v1__response__get_packed_size(response);
  out_reserve(c, HEADER_SIZE + length);
  uint8_t *frame = c->out + c->out_length;
  frame[0] = 0;
  frame[1] = (uint8_t)(length >> 24);
  frame[2] = (uint8_t)(length >> 16);
  frame[3] = (uint8_t)(length >> 8);
  frame[4] = (uint8_t)length;
  authz__v1__response__pack(response, frame + HEADER_SIZE);
  c->out_length += HEADER_SIZE + length;
  response->status = NULL;
}

static void append_error(Conn *c, uint64_t call_id, uint64_t version, uint32_t code, const char *message) {
  Authz__V1__Response response = AUTHZ__V1__RESPONSE__INIT;
  response.call_id = call_id;
  response.snapshot_version = version;
  append_response(c, &response, code, message);
}

/* Answers one check into `slot`; returns the filled CheckResult. */
static Authz__V1__CheckResult *answer_check(Conn *c, Slot *slot, int kind, const void *query, int explain) {
  Authz__V1__CheckResult *result = &slot->check;
  authz__v1__check_result__init(result);
  switch (kind) {
    case AUTHZ__V1__CHECK__KIND_EFFECTIVE_PERMISSION: {
      const Authz__V1__EffectivePermission *q = query;
      Authz__V1__EffectivePermissionResult *r = &slot->permission;
      authz__v1__effective_permission_result__init(r);
      ProjectInfo p;
      UserInfo u;
      Decision d;
      d.count = 0;
      if (lookup_project(c, q->project, &p) < 0) break;
      if (p.known) {
        if (resolve_user(c, q->user, &u) < 0) break;
      } else {
        u.kind = USER_UNKNOWN;
      }
      effective_permission(c, &u, &p, &d);
      if (c->failed) break;
      r->level = (Authz__V1__Level)(d.level + 1);
      r->reason = (Authz__V1__Reason)d.reason;
      r->allowed = q->required_level != 0 && (int)r->level >= (int)q->required_level;
      if (explain) {
        for (int i = 0; i < d.count; i++) {
          Authz__V1__Step *s = &slot->steps[i];
          authz__v1__step__init(s);
          s->reason = (Authz__V1__Reason)d.steps[i].reason;
          s->level = (Authz__V1__Level)(d.steps[i].level + 1);
          if (d.steps[i].subject != NULL && d.steps[i].subject[0] != '\0') {
            snprintf(slot->subjects[i], sizeof slot->subjects[i], "%s", d.steps[i].subject);
            s->subject = slot->subjects[i];
          }
          slot->step_pointers[i] = s;
        }
        r->n_steps = (size_t)d.count;
        r->steps = slot->step_pointers;
      }
      result->kind_case = AUTHZ__V1__CHECK_RESULT__KIND_EFFECTIVE_PERMISSION_RESULT;
      result->effective_permission_result = r;
      break;
    }
    case AUTHZ__V1__CHECK__KIND_CAN_USE: {
      const Authz__V1__CanUse *q = query;
      Authz__V1__CanUseResult *r = &slot->can_use;
      authz__v1__can_use_result__init(r);
      int access = ACC_NONE, reason = 0;
      const char *project = q->project != NULL && q->project[0] != '\0' ? q->project : NULL;
      can_use(c, q->user, q->asset, project, &access, &reason);
      if (c->failed) break;
      r->access = (Authz__V1__Access)(access + 1);
      r->reason = (Authz__V1__Reason)reason;
      r->allowed = q->required_access != 0 && (int)r->access >= (int)q->required_access;
      result->kind_case = AUTHZ__V1__CHECK_RESULT__KIND_CAN_USE_RESULT;
      result->can_use_result = r;
      break;
    }
    case AUTHZ__V1__CHECK__KIND_SEAT_TYPE: {
      Authz__V1__SeatTypeResult *r = &slot->seat;
      authz__v1__seat_type_result__init(r);
      UserInfo u;
      if (resolve_user(c, user_of_seat(query), &u) < 0) break;
      if (u.kind != USER_KNOWN || !u.active) {
        r->seat = AUTHZ__V1__SEAT__SEAT_NONE;
      } else {
        switch (u.role) {
          case ROLE_ADMIN:
          case ROLE_MANAGER:
          case ROLE_EDITOR:
            r->seat = AUTHZ__V1__SEAT__SEAT_PAID_AUTHOR;
            r->paid = 1;
            break;
          case ROLE_EXPLORER:
            r->seat = AUTHZ__V1__SEAT__SEAT_PAID_EXPLORER;
            r->paid = 1;
            break;
          case ROLE_VIEWER:
            r->seat = AUTHZ__V1__SEAT__SEAT_VIEWER;
            r->paid = c->settings.viewer_seats_paid;
            break;
          default:
            r->seat = AUTHZ__V1__SEAT__SEAT_GUEST;
            r->paid = 0;
            break;
        }
        r->role = (Authz__V1__Role)(u.role + 1);
        r->role_source = (Authz__V1__RoleSource)u.role_source;
        r->plan_downgrade = u.plan_downgrade;
      }
      result->kind_case = AUTHZ__V1__CHECK_RESULT__KIND_SEAT_TYPE_RESULT;
      result->seat_type_result = r;
      break;
    }
    case AUTHZ__V1__CHECK__KIND_CAPABILITIES: {
      Authz__V1__CapabilitiesResult *r = &slot->capabilities;
      authz__v1__capabilities_result__init(r);
      UserInfo u;
      if (resolve_user(c, user_of_caps(query), &u) < 0) break;
      if (u.kind == USER_KNOWN && u.active) {
        size_t n = 0;
        for (int i = 0; i < 14; i++) {
          if (u.role >= capability_minimum_role[i]) slot->capability_values[n++] = (Authz__V1__Capability)(i + 1);
        }
        if (n > 0) {
          r->n_capabilities = n;
          r->capabilities = slot->capability_values;
        }
      }
      result->kind_case = AUTHZ__V1__CHECK_RESULT__KIND_CAPABILITIES_RESULT;
      result->capabilities_result = r;
      break;
    }
    default: break;
  }
  return result;
}

/* Opens the request's read transaction and reads the version and settings. */
static int begin_request(Conn *c) {
  c->failed = 0;
  if (run_simple(c, Q_BEGIN) < 0) return -1;
  return read_settings(c);
}

static void end_request(Conn *c) {
  if (!sqlite3_get_autocommit(c->db)) {
    int failed = c->failed;
    if (run_simple(c, failed ? Q_ROLLBACK : Q_COMMIT) < 0 && !failed) {
      /* A failed COMMIT of a read transaction: roll back so the next request starts clean. */
      int saved = c->failed;
      c->failed = 0;
      run_simple(c, Q_ROLLBACK);
      c->failed = saved;
    }
  }
}

/* Handles one request payload, appending its response. */
static void handle_payload(Conn *c, const uint8_t *payload, size_t length) {
  Authz__V1__Request *request = authz__v1__request__unpack(NULL, length, payload);
  if (request == NULL) {
    append_error(c, salvage_call_id(payload, length), 0, CODE_INVALID_ARGUMENT,
                 "the payload is not a valid authz.v1.Request protobuf message");
    return;
  }
  WireError e = {0, ""};
  uint64_t call_id = request->call_id;
  int kind = 0; /* a Check kind for a single check, or -1 for a batch */
  const void *query = NULL;

  switch (request->method_case) {
    case AUTHZ__V1__REQUEST__METHOD_CAN_USE:
      kind = AUTHZ__V1__CHECK__KIND_CAN_USE;
      query = request->can_use;
      validate_can_use(request->can_use, "", &e);
      break;
    case AUTHZ__V1__REQUEST__METHOD_EFFECTIVE_PERMISSION:
      kind = AUTHZ__V1__CHECK__KIND_EFFECTIVE_PERMISSION;
      query = request->effective_permission;
      validate_permission(request->effective_permission, "", &e);
      break;
    case AUTHZ__V1__REQUEST__METHOD_SEAT_TYPE:
      kind = AUTHZ__V1__CHECK__KIND_SEAT_TYPE;
      query = request->seat_type;
      check_id(user_of_seat(request->seat_type), 1, "", "seat_type.user", &e);
      break;
    case AUTHZ__V1__REQUEST__METHOD_CAPABILITIES:
      kind = AUTHZ__V1__CHECK__KIND_CAPABILITIES;
      query = request->capabilities;
      check_id(user_of_caps(request->capabilities), 1, "", "capabilities.user", &e);
      break;
    case AUTHZ__V1__REQUEST__METHOD_BATCH: {
      kind = -1;
      const Authz__V1__Batch *batch = request->batch;
      if (batch != NULL) {
        if (batch->n_checks > MAX_BATCH) {
          set_error(&e, CODE_RESOURCE_EXHAUSTED, "batch.checks: %zu checks; the limit is %d per batch", batch->n_checks,
                    MAX_BATCH);
          break;
        }
        for (size_t i = 0; i < batch->n_checks; i++) {
          if (validate_check(batch->checks[i], i, &e) < 0) break;
        }
      }
      break;
    }
    case AUTHZ__V1__REQUEST__METHOD_STATUS:
      set_error(&e, CODE_UNIMPLEMENTED, "Status is not implemented by authz-sqlite-server");
      break;
    case AUTHZ__V1__REQUEST__METHOD_RELOAD:
      set_error(&e, CODE_UNIMPLEMENTED, "Reload is not implemented by authz-sqlite-server");
      break;
    default: {
      uint32_t field = first_unknown_field(&request->base, 10);
      if (field != 0) {
        set_error(&e, CODE_UNIMPLEMENTED, "request method field %u is not implemented by this server", field);
      } else {
        set_error(&e, CODE_INVALID_ARGUMENT, "the request has no method set");
      }
      break;
    }
  }
  if (e.code != CODE_OK) {
    append_error(c, call_id, 0, e.code, e.message);
    authz__v1__request__free_unpacked(request, NULL);
    return;
  }

  /* Every query of this request runs in one read transaction. */
  Authz__V1__Response response = AUTHZ__V1__RESPONSE__INIT;
  response.call_id = call_id;
  if (begin_request(c) == 0) {
    uint64_t version = c->settings.version;
    response.snapshot_version = version;
    if (version < request->min_snapshot_version) {
      snprintf(c->error_message, sizeof c->error_message,
               "the snapshot in service is version %llu, older than min_snapshot_version %llu",
               (unsigned long long)version, (unsigned long long)request->min_snapshot_version);
      end_request(c);
      append_error(c, call_id, version, CODE_FAILED_PRECONDITION, c->error_message);
      authz__v1__request__free_unpacked(request, NULL);
      return;
    }
    Authz__V1__BatchResult batch_result = AUTHZ__V1__BATCH_RESULT__INIT;
    if (kind > 0) {
      Authz__V1__CheckResult *r = answer_check(c, &c->slots[0], kind, query, request->explain);
      switch (r->kind_case) {
        case AUTHZ__V1__CHECK_RESULT__KIND_CAN_USE_RESULT:
          response.result_case = AUTHZ__V1__RESPONSE__RESULT_CAN_USE_RESULT;
          response.can_use_result = r->can_use_result;
          break;
        case AUTHZ__V1__CHECK_RESULT__KIND_EFFECTIVE_PERMISSION_RESULT:
          response.result_case = AUTHZ__V1__RESPONSE__RESULT_EFFECTIVE_PERMISSION_RESULT;
          response.effective_permission_result = r->effective_permission_result;
          break;
        case AUTHZ__V1__CHECK_RESULT__KIND_SEAT_TYPE_RESULT:
          response.result_case = AUTHZ__V1__RESPONSE__RESULT_SEAT_TYPE_RESULT;
          response.seat_type_result = r->seat_type_result;
          break;
        case AUTHZ__V1__CHECK_RESULT__KIND_CAPABILITIES_RESULT:
          response.result_case = AUTHZ__V1__RESPONSE__RESULT_CAPABILITIES_RESULT;
          response.capabilities_result = r->capabilities_result;
          break;
        default: break;
      }
    } else {
      const Authz__V1__Batch *batch = request->batch;
      size_t n = batch != NULL ? batch->n_checks : 0;
      for (size_t i = 0; i < n && !c->failed; i++) {
        const Authz__V1__Check *check = batch->checks[i];
        const void *q = NULL;
        switch (check->kind_case) {
          case AUTHZ__V1__CHECK__KIND_CAN_USE: q = check->can_use; break;
          case AUTHZ__V1__CHECK__KIND_EFFECTIVE_PERMISSION: q = check->effective_permission; break;
          case AUTHZ__V1__CHECK__KIND_SEAT_TYPE: q = check->seat_type; break;
          case AUTHZ__V1__CHECK__KIND_CAPABILITIES: q = check->capabilities; break;
          default: break;
        }
        c->result_pointers[i] = answer_check(c, &c->slots[i], (int)check->kind_case, q, request->explain);
      }
      batch_result.n_results = n;
      batch_result.results = c->result_pointers;
      response.result_case = AUTHZ__V1__RESPONSE__RESULT_BATCH_RESULT;
      response.batch_result = &batch_result;
    }
    end_request(c);
    if (!c->failed) {
      append_response(c, &response, CODE_OK, NULL);
      authz__v1__request__free_unpacked(request, NULL);
      return;
    }
  } else {
    end_request(c);
  }
  append_error(c, call_id, 0, c->fail_code, c->fail_message);
  authz__v1__request__free_unpacked(request, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *bytes, size_t count) {
  while (count > 0) {
    ssize_t n = send(fd, bytes, count, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    bytes += n;
    count -= (size_t)n;
  }
  return 0;
}

static int open_database(Conn *c) {
  int rc = sqlite3_open_v2(db_path, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    log_message("%s: %s", db_path, c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    return -1;
  }
  sqlite3_busy_timeout(c->db, 5000);
  for (int q = 0; q < Q_COUNT; q++) {
    rc = sqlite3_prepare_v3(c->db, query_sql[q], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[q], NULL);
    if (rc != SQLITE_OK) {
      log_message("%s: preparing \"%s\": %s", db_path, query_sql[q], sqlite3_errmsg(c->db));
      return -1;
    }
  }
  return 0;
}

static void close_database(Conn *c) {
  for (int q = 0; q < Q_COUNT; q++) sqlite3_finalize(c->stmt[q]);
  sqlite3_close(c->db);
}

static void serve(Conn *c) {
  int closing = 0;
  while (!closing) {
    ssize_t n = read(c->fd, c->in + c->in_length, READ_BUFFER - c->in_length);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n == 0) break; /* EOF: complete frames were answered; a partial one is dropped */
    c->in_length += (size_t)n;
    size_t offset = 0;
    c->out_length = 0;
    while (offset < c->in_length) {
      const uint8_t *frame = c->in + offset;
      size_t available = c->in_length - offset;
      if (frame[0] != 0) {
        char message[128];
        snprintf(message, sizeof message,
                 "frame flag byte is %u: only 0 (uncompressed) is accepted; compression is not supported", frame[0]);
        append_error(c, 0, 0, CODE_INVALID_ARGUMENT, message);
        closing = 1;
        break;
      }
      if (available < HEADER_SIZE) break;
      uint32_t length = (uint32_t)frame[1] << 24 | (uint32_t)frame[2] << 16 | (uint32_t)frame[3] << 8 | frame[4];
      if (length > MAX_PAYLOAD) {
        char message[128];
        snprintf(message, sizeof message, "frame declares a %u-byte payload; the limit is %d bytes", length,
                 MAX_PAYLOAD);
        append_error(c, 0, 0, CODE_RESOURCE_EXHAUSTED, message);
        closing = 1;
        break;
      }
      if (available < HEADER_SIZE + (size_t)length) break;
      handle_payload(c, frame + HEADER_SIZE, length);
      offset += HEADER_SIZE + length;
    }
    if (!closing && offset > 0) {
      memmove(c->in, c->in + offset, c->in_length - offset);
      c->in_length -= offset;
    }
    if (c->out_length > 0 && write_all(c->fd, c->out, c->out_length) < 0) break;
  }
}

static void *connection_thread(void *argument) {
  Conn *c = argument;
  if (open_database(c) == 0) {
    c->slots = xmalloc(sizeof(Slot) * MAX_BATCH);
    c->in = xmalloc(READ_BUFFER);
    serve(c);
  }
  close_database(c);
  close(c->fd);
  free(c->slots);
  free(c->in);
  free(c->out);
  free(c);
  pthread_mutex_lock(&connections_lock);
  connections_open--;
  pthread_mutex_unlock(&connections_lock);
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Startup, the accept loop, signals
 * ------------------------------------------------------------------------------------- */

static void *signal_thread(void *argument) {
  sigset_t *signals = argument;
  int signal_number = 0;
  sigwait(signals, &signal_number);
  unlink(socket_path);
  _exit(0);
  return NULL;
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s --socket PATH --db PATH [--threads N]\n", argv0);
  exit(2);
}

/* A stale socket file is removed; a live one (a server accepts on it) is an error. */
static void prepare_socket_path(const struct sockaddr_un *address) {
  struct stat info;
  if (lstat(socket_path, &info) != 0) return;
  if (!S_ISSOCK(info.st_mode)) {
    log_message("%s exists and is not a socket", socket_path);
    exit(1);
  }
  int probe = socket(AF_UNIX, SOCK_STREAM, 0);
  if (probe >= 0 && connect(probe, (const struct sockaddr *)address, sizeof *address) == 0) {
    log_message("%s: another server is listening on this socket", socket_path);
    exit(1);
  }
  if (probe >= 0) close(probe);
  if (unlink(socket_path) != 0 && errno != ENOENT) {
    log_message("cannot remove the stale socket %s: %s", socket_path, strerror(errno));
    exit(1);
  }
}

/* Fails early when the database cannot be read (authzd's --require-database). */
static void check_database(void) {
  Conn probe;
  memset(&probe, 0, sizeof probe);
  if (open_database(&probe) != 0) exit(1);
  if (begin_request(&probe) != 0) {
    log_message("%s", probe.fail_message);
    end_request(&probe);
    close_database(&probe);
    exit(1);
  }
  end_request(&probe);
  close_database(&probe);
}

int main(int argc, char **argv) {
  const char *argv0 = argc > 0 ? argv[0] : "authz-sqlite-server";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
      socket_path = argv[++i];
    } else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
      db_path = argv[++i];
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      char *end = NULL;
      long n = strtol(argv[++i], &end, 10);
      if (end == NULL || *end != '\0' || n < 1 || n > 65536) usage(argv0);
      max_connections = (int)n;
    } else {
      usage(argv0);
    }
  }
  if (socket_path == NULL || db_path == NULL) usage(argv0);

  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (strlen(socket_path) >= sizeof address.sun_path) {
    log_message("socket path too long: %s", socket_path);
    return 1;
  }
  strcpy(address.sun_path, socket_path);

  if (sqlite3_threadsafe() == 0) {
    log_message("this libsqlite3 is built without thread support");
    return 1;
  }
  check_database();

  /* SIGINT/SIGTERM go to one thread that removes the socket and exits 0; every other
   * thread inherits the blocked mask. */
  static sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, NULL);
  signal(SIGPIPE, SIG_IGN);

  prepare_socket_path(&address);
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  if (listener < 0 || bind(listener, (const struct sockaddr *)&address, sizeof address) != 0 ||
      listen(listener, 1024) != 0) {
    log_message("%s: %s", socket_path, strerror(errno));
    return 1;
  }

  pthread_t signal_handler;
  if (pthread_create(&signal_handler, NULL, signal_thread, &signals) != 0) {
    log_message("cannot start the signal thread");
    unlink(socket_path);
    return 1;
  }
  log_message("serving %s on %s (at most %d connections)", db_path, socket_path, max_connections);

  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attributes, 1024 * 1024);
  for (;;) {
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        sleep(1);
        continue;
      }
      log_message("accept: %s", strerror(errno));
      continue;
    }
    pthread_mutex_lock(&connections_lock);
    int admitted = connections_open < max_connections;
    if (admitted) connections_open++;
    pthread_mutex_unlock(&connections_lock);
    Conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
      close(fd);
      continue;
    }
    c->fd = fd;
    if (!admitted) {
      char message[128];
      snprintf(message, sizeof message, "too many connections: this server accepts at most %d at once",
               max_connections);
      append_error(c, 0, 0, CODE_RESOURCE_EXHAUSTED, message);
      write_all(fd, c->out, c->out_length);
      close(fd);
      free(c->out);
      free(c);
      continue;
    }
    pthread_t thread;
    if (pthread_create(&thread, &attributes, connection_thread, c) != 0) {
      log_message("cannot start a connection thread: %s", strerror(errno));
      close(fd);
      free(c);
      pthread_mutex_lock(&connections_lock);
      connections_open--;
      pthread_mutex_unlock(&connections_lock);
    }
  }
}
