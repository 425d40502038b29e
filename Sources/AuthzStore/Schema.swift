// The store's SQLite schema and its forward-only migrations.
//
// Design (schema version 1):
// - Every entity table has an `INTEGER PRIMARY KEY` named `pk` (the rowid) and the
//   document's external id in a UNIQUE text column named `id`; link tables refer to rows by
//   `pk`, so joins are integer joins. Lists keep their document order as `pk` order.
// - Enum values are stored as their canonical document spelling (`'can_edit'`), checked by
//   CHECK constraints, so a person with the `sqlite3` CLI can read and hand-edit rows.
//   Tables are STRICT, so a hand edit cannot store a value of the wrong type either.
// - An asset's group list mixes custom groups and the built-in ids (`workspace`,
//   `workspace_guests`, `public`), which have no row in `groups`: each `asset_groups` row
//   has exactly one of `group_pk` (a custom group) or `builtin` (a built-in id). No rows
//   for an asset means the explicit empty list (Admins only); the document's "omitted"
//   default is resolved before the store sees the workspace.
// - Foreign keys cascade from parents to link rows; deleting a project's owner sets the
//   owner to NULL. Because the `sqlite3` CLI runs with `foreign_keys` OFF by default, the
//   same cascades are also done by triggers, so a hand-deleted user never leaves dangling
//   memberships or grants behind.
// - `meta` holds the snapshot version. Every INSERT, UPDATE and DELETE on a data table
//   bumps it by a trigger, whoever wrote it (the sqlite3 CLI included). Triggers refuse to
//   decrease the version, to delete the meta row or to add another.
// - Bulk import. SQLite runs a row trigger's program for every row (its WHEN clause
//   included, so silencing the triggers with a "bulk" flag column saves little) and
//   maintains every index row by row. The importer therefore drops the store's own row
//   triggers and secondary indexes (`importSuspended`) inside its transaction, inserts with
//   64-row INSERT statements, recreates the indexes and triggers from the definitions stored
//   in sqlite_schema, bumps the version once and commits. DDL is transactional in SQLite: a
//   failed import rolls all of it back, and no committed state ever lacks a trigger (there
//   is no flag that could be left set). Triggers and indexes added by others are kept and
//   fire as usual. Measured on 100k users / 500k memberships / 50k projects / 1M grants
//   (release build, shared 2-core machine): bulk-flag design ~95 s (~105 s without the
//   flag); this design ~11 s (~30 s with the triggers and indexes left in place).
// - `PRAGMA user_version` is the schema version, `PRAGMA application_id` marks the file as
//   a workspace store.
//
// Design (schema version 2, the change log; issue 13):
// - `changes` records every row change of a data table: the snapshot version it made, the
//   table, the row's key (below) and the operation ('insert', 'update', 'delete'), and
//   when (`at_unix_ms`). The version triggers write it in the same trigger body that
//   bumps `meta.version`, so it is part of the writer's transaction, whoever the writer is
//   (the sqlite3 CLI included). The version keeps its meaning: every row change bumps it by
//   one, so a commit of N row changes bumps it by N and logs N rows, each with its own
//   version. Exception: an UPDATE that changes a row's key is logged as a 'delete' of the
//   old key and an 'insert' of the new one, both with the same version.
// - Keys are external, never rowids: `workspace` → 'workspace'; `allowed_domains` → the
//   domain; users, groups, assets, projects → their id; link rows → the parent's id, '/',
//   the target: group_members 'g/u', role_mappings 'g' (the group), asset_groups 'a/g' (g
//   a group id or built-in id), project_grants 'p/user/u' or 'p/group/g', project_assets
//   'p/a'. Ids never contain '/', so a key splits unambiguously. An entity's id cannot be
//   changed by an UPDATE (a trigger refuses it; delete and insert instead), so a link row's
//   key never changes behind the log's back.
// - The cascade triggers run BEFORE the parent row is deleted (they ran after it in
//   version 1), so a cascaded link row's key can still name its parent; with foreign keys
//   on, the foreign-key cascade then finds nothing left. Cascaded rows are logged like any
//   other delete.
// - `meta.log_floor`: the log holds every change after this version, so it answers "what
//   changed between A and B" for every A >= log_floor (one indexed range query on
//   `changes.version`). A bulk replace (`importChanges(_:mode: .replace)`, the first
//   import) logs nothing and moves the floor to its new version; pruning moves it up too.
// - Retention: `meta.log_keep_versions` (default 100,000) and `meta.log_keep_ms` (default
//   7 days; NULL = no limit on that axis). The store prunes at the end of each of its
//   write transactions (import, apply) and on `pruneChangeLog()`; hand edits do not prune.

/// `PRAGMA application_id` of a workspace store ("AzSt").
let storeApplicationID: Int64 = 0x417A_5374

/// One forward-only schema step: run in its own transaction, then `user_version` = `version`.
struct Migration {
    let version: Int
    let summary: String
    let sql: String
}

enum Schema {
    /// Every migration, in order; the last one's version is the newest schema this build
    /// reads and writes. Never edit a shipped step: append a new one.
    static let migrations: [Migration] = [
        Migration(version: 1, summary: "initial schema", sql: version1),
        Migration(version: 2, summary: "change log", sql: version2),
    ]

    /// The store's own row triggers and secondary (non-UNIQUE) indexes of the newest
    /// schema: the importer drops them for the length of its transaction and recreates
    /// them from their stored definitions (see the design note above).
    static let importSuspended: Set<String> = {
        var names: Set<String> = [
            "group_members_by_user", "role_mappings_by_group", "asset_groups_by_group", "projects_by_owner",
            "project_grants_by_project", "project_grants_by_user", "project_grants_by_group",
            "project_assets_by_asset",
            "users_cascade", "groups_cascade", "assets_cascade", "projects_cascade",
        ]
        for table in v1DataTables {
            for event in ["insert", "update", "delete"] { names.insert("\(table)_version_\(event)") }
        }
        return names
    }()

    /// The newest schema version this build supports.
    static var latestVersion: Int { migrations.last?.version ?? 0 }

    /// The data tables of the newest schema, children before parents (the order in which
    /// the importer empties them): every change to one of them is a new snapshot version.
    static let dataTables = [
        "project_assets", "project_grants", "projects", "asset_groups", "assets",
        "role_mappings", "group_members", "groups", "users", "allowed_domains", "workspace",
    ]

    // The vocabulary as it was when version 1 shipped. These are literals, not derived
    // from the engine's enums, so that the migration never changes under an existing
    // database; a test checks they still match the enums (a new value needs a migration).
    static let v1Plans = "'community', 'professional', 'team', 'enterprise'"
    static let v1Roles = "'guest', 'viewer', 'explorer', 'editor', 'manager', 'admin'"
    static let v1Levels = "'none', 'can_view_app', 'can_view', 'can_explore', 'can_edit', 'full_access'"
    static let v1Origins = "'manual', 'domain', 'invite', 'directory'"
    static let v1GroupSources = "'workspace', 'directory'"
    static let v1AssetKinds = "'data_connection', 'secret', 'git_package', 'external_file'"
    static let v1Builtins = "'workspace', 'workspace_guests', 'public'"

    /// An id column's CHECK: 1 to 128 characters from `A-Z a-z 0-9 . _ : @ -`.
    private static func idCheck(_ column: String) -> String {
        "length(\(column)) BETWEEN 1 AND 128 AND \(column) NOT GLOB '*[^A-Za-z0-9._:@-]*'"
    }

    /// Version 1's data tables, each with a version trigger per event.
    private static let v1DataTables = [
        "workspace", "allowed_domains", "users", "groups", "group_members", "role_mappings",
        "assets", "asset_groups", "projects", "project_grants", "project_assets",
    ]

    /// Version 2's entity tables (their `id` cannot change) and how each data table's key
    /// is computed from a row `r` (NEW or OLD).
    static let v2EntityTables = ["users", "groups", "assets", "projects"]

    private static func idOf(_ table: String, _ pk: String) -> String {
        "coalesce((SELECT id FROM \(table) WHERE pk = \(pk)), '#' || \(pk))"
    }

    static func v2Key(_ table: String, _ r: String) -> String {
        switch table {
        case "workspace": return "'workspace'"
        case "allowed_domains": return "\(r).domain"
        case "group_members": return "\(idOf("groups", "\(r).group_pk")) || '/' || \(idOf("users", "\(r).user_pk"))"
        case "role_mappings": return idOf("groups", "\(r).group_pk")
        case "asset_groups":
            return "\(idOf("assets", "\(r).asset_pk")) || '/' || coalesce(\(r).builtin, \(idOf("groups", "\(r).group_pk")))"
        case "project_grants":
            return "\(idOf("projects", "\(r).project_pk")) || '/' || CASE WHEN \(r).user_pk IS NOT NULL "
                + "THEN 'user/' || \(idOf("users", "\(r).user_pk")) ELSE 'group/' || \(idOf("groups", "\(r).group_pk")) END"
        case "project_assets": return "\(idOf("projects", "\(r).project_pk")) || '/' || \(idOf("assets", "\(r).asset_pk"))"
        default: return "\(r).id"
        }
    }

    /// The current time in milliseconds since the epoch, in SQL ('now' is fixed for one
    /// statement).
    static let nowMs = "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"

    private static func v2LogRow(_ table: String, key: String, op: String, when: String? = nil) -> String {
        """
        INSERT INTO changes (version, tbl, key, op, at_unix_ms)
            SELECT version, '\(table)', \(key), \(op), \(nowMs) FROM meta WHERE id = 1\(when.map { " AND " + $0 } ?? "");
        """
    }

    /// Version 2's row triggers: bump the version and log the change.
    private static var v2VersionTriggers: String {
        v1DataTables.map { table in
            let bump = "UPDATE meta SET version = version + 1 WHERE id = 1;"
            let newKey = v2Key(table, "NEW"), oldKey = v2Key(table, "OLD")
            return """
                DROP TRIGGER \(table)_version_insert;
                CREATE TRIGGER \(table)_version_insert AFTER INSERT ON \(table)
                BEGIN
                    \(bump)
                    \(v2LogRow(table, key: newKey, op: "'insert'"))
                END;
                DROP TRIGGER \(table)_version_update;
                CREATE TRIGGER \(table)_version_update AFTER UPDATE ON \(table)
                BEGIN
                    \(bump)
                    \(v2LogRow(table, key: oldKey, op: "'delete'", when: "(\(oldKey)) IS NOT (\(newKey))"))
                    \(v2LogRow(table, key: newKey, op: "CASE WHEN (\(oldKey)) IS (\(newKey)) THEN 'update' ELSE 'insert' END"))
                END;
                DROP TRIGGER \(table)_version_delete;
                CREATE TRIGGER \(table)_version_delete AFTER DELETE ON \(table)
                BEGIN
                    \(bump)
                    \(v2LogRow(table, key: oldKey, op: "'delete'"))
                END;

                """
        }.joined()
    }

    private static var v2FixedIdTriggers: String {
        v2EntityTables.map { table in
            """
            CREATE TRIGGER \(table)_id_is_fixed BEFORE UPDATE OF id ON \(table) WHEN NEW.id IS NOT OLD.id
            BEGIN SELECT RAISE(ABORT, '\(table).id cannot change (delete the row and insert a new one)'); END;

            """
        }.joined()
    }

    static var version2: String {
        """
        CREATE TABLE changes (
            seq INTEGER PRIMARY KEY,
            version INTEGER NOT NULL CHECK (version >= 0),
            tbl TEXT NOT NULL,
            key TEXT NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
            at_unix_ms INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX changes_by_version ON changes (version);
        ALTER TABLE meta ADD COLUMN log_floor INTEGER NOT NULL DEFAULT 0 CHECK (log_floor >= 0);
        ALTER TABLE meta ADD COLUMN log_keep_versions INTEGER DEFAULT 100000 CHECK (log_keep_versions >= 0);
        ALTER TABLE meta ADD COLUMN log_keep_ms INTEGER DEFAULT 604800000 CHECK (log_keep_ms >= 0);
        -- Changes before this migration were not logged.
        UPDATE meta SET log_floor = version WHERE id = 1;

        -- An entity's id is its identity (and part of its link rows' keys in the log).
        \(v2FixedIdTriggers)
        -- The cascades run before the parent row goes, so the log can still name it.
        DROP TRIGGER users_cascade;
        CREATE TRIGGER users_cascade BEFORE DELETE ON users
        BEGIN
            DELETE FROM group_members WHERE user_pk = OLD.pk;
            DELETE FROM project_grants WHERE user_pk = OLD.pk;
            UPDATE projects SET owner_pk = NULL WHERE owner_pk = OLD.pk;
        END;
        DROP TRIGGER groups_cascade;
        CREATE TRIGGER groups_cascade BEFORE DELETE ON groups
        BEGIN
            DELETE FROM group_members WHERE group_pk = OLD.pk;
            DELETE FROM role_mappings WHERE group_pk = OLD.pk;
            DELETE FROM asset_groups WHERE group_pk = OLD.pk;
            DELETE FROM project_grants WHERE group_pk = OLD.pk;
        END;
        DROP TRIGGER assets_cascade;
        CREATE TRIGGER assets_cascade BEFORE DELETE ON assets
        BEGIN
            DELETE FROM asset_groups WHERE asset_pk = OLD.pk;
            DELETE FROM project_assets WHERE asset_pk = OLD.pk;
        END;
        DROP TRIGGER projects_cascade;
        CREATE TRIGGER projects_cascade BEFORE DELETE ON projects
        BEGIN
            DELETE FROM project_grants WHERE project_pk = OLD.pk;
            DELETE FROM project_assets WHERE project_pk = OLD.pk;
        END;

        -- Every change to a data table is a new snapshot version and a row in the log.
        \(v2VersionTriggers)
        """
    }

    private static var v1VersionTriggers: String {
        v1DataTables.map { table in
            ["INSERT", "UPDATE", "DELETE"].map { event in
                """
                CREATE TRIGGER \(table)_version_\(event.lowercased()) AFTER \(event) ON \(table)
                BEGIN UPDATE meta SET version = version + 1 WHERE id = 1; END;

                """
            }.joined()
        }.joined()
    }

    static let version1 = """
        CREATE TABLE meta (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL CHECK (version >= 0)
        ) STRICT;
        INSERT INTO meta (id, version) VALUES (1, 0);
        CREATE TRIGGER meta_version_never_decreases BEFORE UPDATE OF version ON meta
        WHEN NEW.version < OLD.version
        BEGIN SELECT RAISE(ABORT, 'meta.version (the snapshot version) can never decrease'); END;
        CREATE TRIGGER meta_no_delete BEFORE DELETE ON meta
        BEGIN SELECT RAISE(ABORT, 'the meta row cannot be deleted'); END;
        CREATE TRIGGER meta_single_row BEFORE INSERT ON meta
        BEGIN SELECT RAISE(ABORT, 'meta holds exactly one row; update it instead'); END;

        CREATE TABLE workspace (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            plan TEXT NOT NULL CHECK (plan IN (\(v1Plans))),
            default_domain_role TEXT NOT NULL DEFAULT 'viewer' CHECK (default_domain_role IN (\(v1Roles))),
            viewer_seats_paid INTEGER NOT NULL DEFAULT 0 CHECK (viewer_seats_paid IN (0, 1)),
            directory_sync_enabled INTEGER NOT NULL DEFAULT 0 CHECK (directory_sync_enabled IN (0, 1)),
            directory_role_sync INTEGER NOT NULL DEFAULT 1 CHECK (directory_role_sync IN (0, 1))
        ) STRICT;

        CREATE TABLE allowed_domains (
            pk INTEGER PRIMARY KEY,
            domain TEXT NOT NULL UNIQUE CHECK (domain <> '' AND domain = lower(domain))
        ) STRICT;

        CREATE TABLE users (
            pk INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE CHECK (\(idCheck("id"))),
            email TEXT NOT NULL,
            origin TEXT NOT NULL CHECK (origin IN (\(v1Origins))),
            role TEXT CHECK (role IN (\(v1Roles))),
            active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
            CHECK (origin <> 'manual' OR role IS NOT NULL)
        ) STRICT;

        CREATE TABLE groups (
            pk INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE CHECK (\(idCheck("id")) AND id NOT IN (\(v1Builtins))),
            name TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT 'workspace' CHECK (source IN (\(v1GroupSources)))
        ) STRICT;

        CREATE TABLE group_members (
            pk INTEGER PRIMARY KEY,
            group_pk INTEGER NOT NULL REFERENCES groups (pk) ON DELETE CASCADE,
            user_pk INTEGER NOT NULL REFERENCES users (pk) ON DELETE CASCADE,
            UNIQUE (group_pk, user_pk)
        ) STRICT;
        CREATE INDEX group_members_by_user ON group_members (user_pk);

        CREATE TABLE role_mappings (
            pk INTEGER PRIMARY KEY,
            group_pk INTEGER NOT NULL REFERENCES groups (pk) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN (\(v1Roles)))
        ) STRICT;
        CREATE INDEX role_mappings_by_group ON role_mappings (group_pk);

        CREATE TABLE assets (
            pk INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE CHECK (\(idCheck("id"))),
            kind TEXT NOT NULL CHECK (kind IN (\(v1AssetKinds))),
            name TEXT NOT NULL
        ) STRICT;

        CREATE TABLE asset_groups (
            pk INTEGER PRIMARY KEY,
            asset_pk INTEGER NOT NULL REFERENCES assets (pk) ON DELETE CASCADE,
            group_pk INTEGER REFERENCES groups (pk) ON DELETE CASCADE,
            builtin TEXT CHECK (builtin IN (\(v1Builtins))),
            CHECK ((group_pk IS NULL) <> (builtin IS NULL)),
            UNIQUE (asset_pk, group_pk),
            UNIQUE (asset_pk, builtin)
        ) STRICT;
        CREATE INDEX asset_groups_by_group ON asset_groups (group_pk);

        CREATE TABLE projects (
            pk INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE CHECK (\(idCheck("id"))),
            owner_pk INTEGER REFERENCES users (pk) ON DELETE SET NULL,
            workspace_access TEXT NOT NULL DEFAULT 'none' CHECK (workspace_access IN (\(v1Levels))),
            public_access TEXT NOT NULL DEFAULT 'none' CHECK (public_access IN ('none', 'can_view_app'))
        ) STRICT;
        CREATE INDEX projects_by_owner ON projects (owner_pk);

        CREATE TABLE project_grants (
            pk INTEGER PRIMARY KEY,
            project_pk INTEGER NOT NULL REFERENCES projects (pk) ON DELETE CASCADE,
            user_pk INTEGER REFERENCES users (pk) ON DELETE CASCADE,
            group_pk INTEGER REFERENCES groups (pk) ON DELETE CASCADE,
            level TEXT NOT NULL CHECK (level IN (\(v1Levels))),
            CHECK ((user_pk IS NULL) <> (group_pk IS NULL))
        ) STRICT;
        CREATE INDEX project_grants_by_project ON project_grants (project_pk);
        CREATE INDEX project_grants_by_user ON project_grants (user_pk);
        CREATE INDEX project_grants_by_group ON project_grants (group_pk);

        CREATE TABLE project_assets (
            pk INTEGER PRIMARY KEY,
            project_pk INTEGER NOT NULL REFERENCES projects (pk) ON DELETE CASCADE,
            asset_pk INTEGER NOT NULL REFERENCES assets (pk) ON DELETE CASCADE,
            UNIQUE (project_pk, asset_pk)
        ) STRICT;
        CREATE INDEX project_assets_by_asset ON project_assets (asset_pk);

        -- The foreign-key cascades again, for writers running with foreign_keys OFF (the
        -- sqlite3 CLI's default). With foreign keys ON they find nothing left to do.
        CREATE TRIGGER users_cascade AFTER DELETE ON users
        BEGIN
            DELETE FROM group_members WHERE user_pk = OLD.pk;
            DELETE FROM project_grants WHERE user_pk = OLD.pk;
            UPDATE projects SET owner_pk = NULL WHERE owner_pk = OLD.pk;
        END;
        CREATE TRIGGER groups_cascade AFTER DELETE ON groups
        BEGIN
            DELETE FROM group_members WHERE group_pk = OLD.pk;
            DELETE FROM role_mappings WHERE group_pk = OLD.pk;
            DELETE FROM asset_groups WHERE group_pk = OLD.pk;
            DELETE FROM project_grants WHERE group_pk = OLD.pk;
        END;
        CREATE TRIGGER assets_cascade AFTER DELETE ON assets
        BEGIN
            DELETE FROM asset_groups WHERE asset_pk = OLD.pk;
            DELETE FROM project_assets WHERE asset_pk = OLD.pk;
        END;
        CREATE TRIGGER projects_cascade AFTER DELETE ON projects
        BEGIN
            DELETE FROM project_grants WHERE project_pk = OLD.pk;
            DELETE FROM project_assets WHERE project_pk = OLD.pk;
        END;

        -- Every change to a data table is a new snapshot version.
        \(v1VersionTriggers)
        PRAGMA application_id = \(storeApplicationID);
        """
}
