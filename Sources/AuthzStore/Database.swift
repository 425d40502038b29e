// Checks and helpers shared by the writer (`WorkspaceStore`) and the read-only side
// (`SnapshotLoader`, `VersionProbe`): schema identity, schema version, snapshot version.

import CSQLite

extension Connection {
    /// Fails unless the file is empty or a workspace store whose schema this build knows:
    /// `.schemaTooNew` above the newest version, `.notAWorkspaceStore` for a database with
    /// foreign content. Returns the schema version (0 for a new, empty database).
    func checkStoreIdentity() throws(StoreError) -> Int {
        let found = try userVersion()
        let supported = Schema.latestVersion
        guard found <= supported else {
            throw StoreError(
                code: .schemaTooNew(found: found, supported: supported),
                message: "\(path) has schema version \(found), but this build supports versions up to \(supported); "
                    + "use a newer build (nothing was changed)")
        }
        guard found >= 0 else {
            throw StoreError(code: .notAWorkspaceStore, message: "\(path) has a negative schema version \(found)")
        }
        if found == 0 {
            let objects = try queryInt("SELECT count(*) FROM sqlite_schema") ?? 0
            guard objects == 0 else {
                throw StoreError(
                    code: .notAWorkspaceStore,
                    message: "\(path) is an SQLite database with \(objects) schema object(s) but no schema version; "
                        + "it is not a workspace store (nothing was changed)")
            }
        } else {
            let applicationID = try queryInt("PRAGMA application_id") ?? 0
            guard applicationID == storeApplicationID else {
                throw StoreError(
                    code: .notAWorkspaceStore,
                    message: "\(path) has application_id \(applicationID), not \(storeApplicationID); "
                        + "it is not a workspace store (nothing was changed)")
            }
        }
        return found
    }

    /// For readers: fails unless the schema is exactly the newest this build supports.
    /// `.notInitialized` for a database without a schema (or an older one only the writer
    /// can migrate).
    func requireCurrentSchema() throws(StoreError) {
        let found = try checkStoreIdentity()
        guard found != 0 else {
            throw StoreError(code: .notInitialized, message: "\(path) has no workspace store schema (user_version 0)")
        }
        guard found == Schema.latestVersion else {
            throw StoreError(
                code: .notInitialized,
                message: "\(path) has schema version \(found), older than \(Schema.latestVersion); "
                    + "open it with the store (read-write) to migrate it")
        }
    }

    /// The snapshot version (`meta.version`).
    func snapshotVersion() throws(StoreError) -> UInt64 {
        let statement = try prepare("SELECT version FROM meta WHERE id = 1")
        guard try statement.step() else {
            throw StoreError(code: .corrupt, message: "\(path): the meta row (snapshot version) is missing")
        }
        return try Self.snapshotVersion(statement, column: 0, path: path)
    }

    /// Reads a snapshot version column, which must hold a non-negative integer.
    static func snapshotVersion(_ statement: Statement, column: Int32, path: String) throws(StoreError) -> UInt64 {
        guard !statement.isNull(column), let version = UInt64(exactly: statement.int64(column)) else {
            throw StoreError(code: .corrupt, message: "\(path): meta.version is not a non-negative integer")
        }
        return version
    }
}

/// An index or trigger dropped for the length of a bulk write.
struct SchemaObject {
    let type: String
    let name: String
    let sql: String
}

extension Connection {
    /// Drops the indexes and triggers called `names` that exist, returning their stored
    /// definitions in creation order. Call inside the transaction that `recreate`s them.
    func dropSchemaObjects(named names: Set<String>) throws(StoreError) -> [SchemaObject] {
        let statement = try prepare("""
            SELECT type, name, sql FROM sqlite_schema
            WHERE type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY rowid
            """)
        var objects: [SchemaObject] = []
        while try statement.step() {
            guard let type = statement.text(0), let name = statement.text(1), let sql = statement.text(2),
                names.contains(name)
            else { continue }
            objects.append(SchemaObject(type: type, name: name, sql: sql))
        }
        for object in objects {
            try exec("DROP \(object.type == "index" ? "INDEX" : "TRIGGER") \(quotedIdentifier(object.name))")
        }
        return objects
    }

    /// Recreates dropped objects from their definitions: indexes first, then triggers.
    func recreate(_ objects: [SchemaObject]) throws(StoreError) {
        for object in objects where object.type == "index" { try exec(object.sql) }
        for object in objects where object.type != "index" { try exec(object.sql) }
    }
}

/// `name` as an SQL identifier: in double quotes, inner quotes doubled.
func quotedIdentifier(_ name: String) -> String {
    "\"" + name.replacing("\"", with: "\"\"") + "\""
}
