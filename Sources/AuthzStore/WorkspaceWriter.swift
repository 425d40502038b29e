// Inserts a whole (validated) workspace into empty tables with prepared statements. Runs
// inside the importer's transaction; every error names the entry that failed.
//
// A repeated entry in an id list (group members, asset groups, project assets, allowed
// domains) is not a validation problem; it is stored once, at its first position
// (`ON CONFLICT DO NOTHING` on the list's UNIQUE constraint, which, unlike `OR IGNORE`,
// still fails on any other constraint). What is stored is therefore
// `WorkspaceDocument.normalized(workspace)`, the model its document decodes to. Grants are
// stored as they are, repeats included.

import AuthzEngine

struct WorkspaceWriter {
    let connection: Connection

    func insert(_ workspace: Workspace) throws(StoreError) {
        try insertSettings(workspace.settings)
        let userPks = try insertUsers(workspace.users)
        let groupPks = try insertGroups(workspace.groups, userPks: userPks)
        try insertRoleMappings(workspace.settings.directorySync.roleMappings, groupPks: groupPks)
        let assetPks = try insertAssets(workspace.assets, groupPks: groupPks)
        try insertProjects(workspace.projects, userPks: userPks, groupPks: groupPks, assetPks: assetPks)
    }

    /// A reference the validator should have caught: fail (and roll back) with its path.
    private func unknown(_ kind: String, _ id: String, at path: String) -> StoreError {
        StoreError(code: .constraint, message: "\(path): unknown \(kind) '\(id)'")
    }

    /// Runs `body`, prefixing any error with the entry's path.
    private func at<T>(_ path: @autoclosure () -> String, _ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch {
            throw error.prefixed(path())
        }
    }

    private func insertSettings(_ settings: WorkspaceSettings) throws(StoreError) {
        let statement = try connection.prepare("""
            INSERT INTO workspace (id, plan, default_domain_role, viewer_seats_paid,
                directory_sync_enabled, directory_role_sync)
            VALUES (1, ?, ?, ?, ?, ?)
            """)
        try at("workspace") { () throws(StoreError) in
            try statement.bind(settings.plan.name, at: 1)
            try statement.bind(settings.defaultDomainRole.name, at: 2)
            try statement.bind(settings.viewerSeatsPaid, at: 3)
            try statement.bind(settings.directorySync.enabled, at: 4)
            try statement.bind(settings.directorySync.roleSync, at: 5)
            try statement.run()
        }
        let domain = try connection.prepare("INSERT INTO allowed_domains (domain) VALUES (?) ON CONFLICT DO NOTHING")
        for (index, name) in settings.allowedDomains.enumerated() {
            try at("workspace.allowed_domains[\(index)] ('\(name)')") { () throws(StoreError) in
                try domain.bind(name, at: 1)
                try domain.run()
            }
        }
    }

    private func insertUsers(_ users: [User]) throws(StoreError) -> [String: Int64] {
        let insert = BatchInsert<Int>(
            connection, table: "users", columns: ["pk", "id", "email", "origin", "role", "active"],
            describe: { "users[\($0)] ('\(users[$0].id)')" })
        var pks: [String: Int64] = [:]
        pks.reserveCapacity(users.count)
        for (index, user) in users.enumerated() {
            let pk = Int64(index + 1)
            try insert.append(
                .integer(pk), .text(user.id), .text(user.email), .text(user.origin.name), SQLValue(user.role?.name),
                SQLValue(user.active), context: index)
            pks[user.id] = pk
        }
        try insert.finish()
        return pks
    }

    private func insertGroups(_ groups: [Group], userPks: [String: Int64]) throws(StoreError) -> [String: Int64] {
        let insert = BatchInsert<Int>(
            connection, table: "groups", columns: ["pk", "id", "name", "source"],
            describe: { "groups[\($0)] ('\(groups[$0].id)')" })
        let members = BatchInsert<(Int, Int)>(
            connection, table: "group_members", columns: ["group_pk", "user_pk"], tail: "ON CONFLICT DO NOTHING",
            describe: { "groups[\($0.0)].members[\($0.1)] ('\(groups[$0.0].members[$0.1])')" })
        var pks: [String: Int64] = [:]
        pks.reserveCapacity(groups.count)
        for (index, group) in groups.enumerated() {
            let pk = Int64(index + 1)
            try insert.append(
                .integer(pk), .text(group.id), .text(group.name), .text(group.source.name), context: index)
            pks[group.id] = pk
        }
        // Members after every group row, so a member batch never refers to a group that is
        // still buffered.
        try insert.finish()
        for (index, group) in groups.enumerated() {
            let pk = Int64(index + 1)
            for (memberIndex, userID) in group.members.enumerated() {
                guard let userPk = userPks[userID] else {
                    throw unknown("user", userID, at: "groups[\(index)].members[\(memberIndex)]")
                }
                try members.append(.integer(pk), .integer(userPk), context: (index, memberIndex))
            }
        }
        try members.finish()
        return pks
    }

    private func insertRoleMappings(_ mappings: [RoleMapping], groupPks: [String: Int64]) throws(StoreError) {
        let insert = BatchInsert<Int>(
            connection, table: "role_mappings", columns: ["group_pk", "role"],
            describe: { "workspace.directory_sync.role_mappings[\($0)]" })
        for (index, mapping) in mappings.enumerated() {
            guard let groupPk = groupPks[mapping.group] else {
                throw unknown("group", mapping.group, at: "workspace.directory_sync.role_mappings[\(index)].group")
            }
            try insert.append(.integer(groupPk), .text(mapping.role.name), context: index)
        }
        try insert.finish()
    }

    private func insertAssets(_ assets: [Asset], groupPks: [String: Int64]) throws(StoreError) -> [String: Int64] {
        let insert = BatchInsert<Int>(
            connection, table: "assets", columns: ["pk", "id", "kind", "name"],
            describe: { "assets[\($0)] ('\(assets[$0].id)')" })
        let assetGroups = BatchInsert<(Int, Int)>(
            connection, table: "asset_groups", columns: ["asset_pk", "group_pk", "builtin"],
            tail: "ON CONFLICT DO NOTHING",
            describe: { "assets[\($0.0)].groups[\($0.1)] ('\(assets[$0.0].groups[$0.1])')" })
        var pks: [String: Int64] = [:]
        pks.reserveCapacity(assets.count)
        for (index, asset) in assets.enumerated() {
            let pk = Int64(index + 1)
            try insert.append(.integer(pk), .text(asset.id), .text(asset.kind.name), .text(asset.name), context: index)
            pks[asset.id] = pk
        }
        try insert.finish()
        for (index, asset) in assets.enumerated() {
            let pk = Int64(index + 1)
            for (groupIndex, groupID) in asset.groups.enumerated() {
                let builtin = BuiltinGroup(name: groupID)
                let groupPk = builtin == nil ? groupPks[groupID] : nil
                guard builtin != nil || groupPk != nil else {
                    throw unknown("group", groupID, at: "assets[\(index)].groups[\(groupIndex)]")
                }
                try assetGroups.append(
                    .integer(pk), SQLValue(groupPk), SQLValue(builtin?.name), context: (index, groupIndex))
            }
        }
        try assetGroups.finish()
        return pks
    }

    private func insertProjects(
        _ projects: [Project], userPks: [String: Int64], groupPks: [String: Int64], assetPks: [String: Int64]
    ) throws(StoreError) {
        let insert = BatchInsert<Int>(
            connection, table: "projects", columns: ["pk", "id", "owner_pk", "workspace_access", "public_access"],
            describe: { "projects[\($0)] ('\(projects[$0].id)')" })
        let grants = BatchInsert<(Int, Int)>(
            connection, table: "project_grants", columns: ["project_pk", "user_pk", "group_pk", "level"],
            describe: { "projects[\($0.0)].grants[\($0.1)]" })
        let projectAssets = BatchInsert<(Int, Int)>(
            connection, table: "project_assets", columns: ["project_pk", "asset_pk"], tail: "ON CONFLICT DO NOTHING",
            describe: { "projects[\($0.0)].assets[\($0.1)] ('\(projects[$0.0].assets[$0.1])')" })
        for (index, project) in projects.enumerated() {
            var ownerPk: Int64?
            if let owner = project.owner {
                guard let found = userPks[owner] else { throw unknown("user", owner, at: "projects[\(index)].owner") }
                ownerPk = found
            }
            try insert.append(
                .integer(Int64(index + 1)), .text(project.id), SQLValue(ownerPk), .text(project.workspaceAccess.name),
                .text(project.publicAccess.name), context: index)
        }
        try insert.finish()
        for (index, project) in projects.enumerated() {
            let pk = Int64(index + 1)
            for (grantIndex, grant) in project.grants.enumerated() {
                var userPk: Int64?
                var groupPk: Int64?
                switch grant.target {
                case .user(let id):
                    guard let found = userPks[id] else {
                        throw unknown("user", id, at: "projects[\(index)].grants[\(grantIndex)].user")
                    }
                    userPk = found
                case .group(let id):
                    guard let found = groupPks[id] else {
                        throw unknown("group", id, at: "projects[\(index)].grants[\(grantIndex)].group")
                    }
                    groupPk = found
                }
                try grants.append(
                    .integer(pk), SQLValue(userPk), SQLValue(groupPk), .text(grant.level.name),
                    context: (index, grantIndex))
            }
            for (assetIndex, assetID) in project.assets.enumerated() {
                guard let assetPk = assetPks[assetID] else {
                    throw unknown("asset", assetID, at: "projects[\(index)].assets[\(assetIndex)]")
                }
                try projectAssets.append(.integer(pk), .integer(assetPk), context: (index, assetIndex))
            }
        }
        try grants.finish()
        try projectAssets.finish()
    }
}
