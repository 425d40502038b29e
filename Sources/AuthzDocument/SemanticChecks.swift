// Semantic checks on a draft: id syntax and uniqueness, references, built-in groups,
// plan-dependent roles, role rules per origin, value ranges. Shared by `decode` (drafts
// with holes, document indexes) and `validate` (drafts of a model, model indexes); a hole
// (a field that was missing or malformed, already reported) skips the checks that need it.

import AuthzEngine

struct SemanticChecks {
    private let draft: DraftDocument
    private var issues: IssueList

    /// First position (document index) of each valid id, per kind.
    private var userIndex: [String: Int] = [:]
    private var groupIndex: [String: (index: Int, source: GroupSource?)] = [:]
    private var assetIndex: [String: Int] = [:]

    static let idRule = "ids are 1 to \(Identifier.maxLength) characters from A-Z a-z 0-9 . _ : @ -"

    private init(draft: DraftDocument, issues: IssueList) {
        self.draft = draft
        self.issues = issues
    }

    /// Adds every semantic problem of `draft` to `issues`.
    static func run(_ draft: DraftDocument, into issues: inout IssueList) {
        var checks = SemanticChecks(draft: draft, issues: issues)
        checks.indexIds()
        checks.checkSettings()
        checks.checkUsers()
        checks.checkGroups()
        checks.checkAssets()
        checks.checkProjects()
        issues = checks.issues
    }

    // MARK: Ids

    /// Indexes ids, reporting bad syntax, built-in group ids and duplicates (at the later
    /// entry).
    private mutating func indexIds() {
        for user in draft.users {
            guard let id = user.id else { continue }
            let path = { DocumentPath.member(DocumentPath.element("users", user.index), "id") }
            guard checkIdSyntax(id, at: path()) else { continue }
            if let first = userIndex[id] {
                issues.add(path(), "duplicate user id \(quotedForMessage(id)) (first defined at users[\(first)])")
            } else {
                userIndex[id] = user.index
            }
        }
        for group in draft.groups {
            guard let id = group.id else { continue }
            let path = { DocumentPath.member(DocumentPath.element("groups", group.index), "id") }
            guard checkIdSyntax(id, at: path()) else { continue }
            if isBuiltinGroup(id) {
                issues.add(path(), "\(quotedForMessage(id)) is a built-in group and cannot be defined")
            } else if let first = groupIndex[id] {
                issues.add(path(), "duplicate group id \(quotedForMessage(id)) (first defined at groups[\(first.index)])")
            } else {
                groupIndex[id] = (group.index, group.source)
            }
        }
        for asset in draft.assets {
            guard let id = asset.id else { continue }
            let path = { DocumentPath.member(DocumentPath.element("assets", asset.index), "id") }
            guard checkIdSyntax(id, at: path()) else { continue }
            if let first = assetIndex[id] {
                issues.add(path(), "duplicate asset id \(quotedForMessage(id)) (first defined at assets[\(first)])")
            } else {
                assetIndex[id] = asset.index
            }
        }
        var projectIndex: [String: Int] = [:]
        for project in draft.projects {
            guard let id = project.id else { continue }
            let path = { DocumentPath.member(DocumentPath.element("projects", project.index), "id") }
            guard checkIdSyntax(id, at: path()) else { continue }
            if let first = projectIndex[id] {
                issues.add(path(), "duplicate project id \(quotedForMessage(id)) (first defined at projects[\(first)])")
            } else {
                projectIndex[id] = project.index
            }
        }
    }

    private mutating func checkIdSyntax(_ id: String, at path: @autoclosure () -> String) -> Bool {
        guard Identifier.isValid(id) else {
            issues.add(path(), "invalid id \(quotedForMessage(id)) (\(Self.idRule))")
            return false
        }
        return true
    }

    private enum ReferenceKind: String {
        case user, asset
    }

    /// A reference to a user or an asset.
    private mutating func checkReference(_ id: String, to kind: ReferenceKind, at path: @autoclosure () -> String) {
        guard checkIdSyntax(id, at: path()) else { return }
        let known: Bool
        switch kind {
        case .user: known = userIndex[id] != nil || !draft.userIdsComplete
        case .asset: known = assetIndex[id] != nil || !draft.assetIdsComplete
        }
        if !known {
            issues.add(path(), "unknown \(kind.rawValue) \(quotedForMessage(id))")
        }
    }

    private var groupsIncomplete: Bool { !draft.groupIdsComplete }

    // MARK: Settings

    private var plan: Plan? { draft.settings?.plan }

    /// Whether `role` is `explorer` on a plan known not to have it.
    private func explorerUnavailable(_ role: Role?) -> Bool {
        guard role == .explorer, let plan else { return false }
        return !plan.hasExplorerRole
    }

    private var explorerReason: String {
        "role 'explorer' is not available on the \(plan?.name ?? "current") plan (only on team and enterprise)"
    }

    private mutating func checkSettings() {
        guard let settings = draft.settings else { return }
        for domain in settings.allowedDomains {
            checkDomain(domain.value, at: DocumentPath.element("workspace.allowed_domains", domain.index))
        }
        if explorerUnavailable(settings.defaultDomainRole) {
            issues.add("workspace.default_domain_role", explorerReason)
        }
        for mapping in settings.roleMappings {
            let path = DocumentPath.element("workspace.directory_sync.role_mappings", mapping.index)
            if let group = mapping.group {
                checkRoleMappingGroup(group, at: path + ".group")
            }
            if explorerUnavailable(mapping.role) {
                issues.add(path + ".role", explorerReason)
            }
        }
    }

    private mutating func checkDomain(_ domain: String, at path: String) {
        if domain.isEmpty {
            issues.add(path, "an allowed domain must not be empty")
        } else if domain.utf8.contains(UInt8(ascii: "@")) {
            issues.add(path, "allowed domain \(quotedForMessage(domain)) must not contain '@' (write the domain only)")
        } else if domain.unicodeScalars.contains(where: { $0.properties.isWhitespace }) {
            issues.add(path, "allowed domain \(quotedForMessage(domain)) must not contain whitespace")
        } else if domain != domain.lowercased() {
            issues.add(path, "allowed domain \(quotedForMessage(domain)) must be lower-case")
        }
    }

    private mutating func checkRoleMappingGroup(_ id: String, at path: String) {
        guard checkIdSyntax(id, at: path) else { return }
        if isBuiltinGroup(id) {
            issues.add(
                path,
                "built-in group \(quotedForMessage(id)) cannot be used in a role mapping (role mappings name a directory group)"
            )
        } else if let group = groupIndex[id] {
            if let source = group.source, source != .directory {
                issues.add(
                    path,
                    "group \(quotedForMessage(id)) has source '\(source.name)'; a role mapping must name a group whose source is 'directory'"
                )
            }
        } else if !groupsIncomplete {
            issues.add(path, "unknown group \(quotedForMessage(id))")
        }
    }

    // MARK: Entries

    private mutating func checkUsers() {
        let syncOwnsRoles = draft.settings?.syncEnabled == true && draft.settings?.roleSync == true
        for user in draft.users {
            let path = { DocumentPath.element("users", user.index) }
            if let email = user.email {
                if email.isEmpty {
                    issues.add(path() + ".email", "email must not be empty")
                } else if !email.utf8.contains(UInt8(ascii: "@")) {
                    issues.add(path() + ".email", "email \(quotedForMessage(email)) must contain '@'")
                }
            }
            switch user.role {
            case .absent:
                if user.origin == .manual {
                    issues.add(path() + ".role", "a manual user must have a role")
                }
            case .value(let role):
                if explorerUnavailable(role) {
                    issues.add(path() + ".role", explorerReason)
                }
                if user.origin == .directory && syncOwnsRoles {
                    issues.add(
                        path() + ".role",
                        "a directory user cannot have a role while directory sync and role sync are on (the role comes from workspace.directory_sync.role_mappings)"
                    )
                }
            case .invalid:
                break
            }
        }
    }

    private mutating func checkGroups() {
        for group in draft.groups {
            let path = { DocumentPath.element("groups", group.index) }
            if group.name?.isEmpty == true {
                issues.add(path() + ".name", "name must not be empty")
            }
            for member in group.members {
                checkReference(member.value, to: .user, at: DocumentPath.element(path() + ".members", member.index))
            }
        }
    }

    private mutating func checkAssets() {
        for asset in draft.assets {
            let path = { DocumentPath.element("assets", asset.index) }
            if asset.name?.isEmpty == true {
                issues.add(path() + ".name", "name must not be empty")
            }
            for group in asset.groups {
                let groupPath = { DocumentPath.element(path() + ".groups", group.index) }
                guard checkIdSyntax(group.value, at: groupPath()) else { continue }
                if !isBuiltinGroup(group.value) && groupIndex[group.value] == nil && !groupsIncomplete {
                    issues.add(
                        groupPath(),
                        "unknown group \(quotedForMessage(group.value)) (neither a custom group nor a built-in one: \(BuiltinGroup.allNames.joined(separator: ", ")))"
                    )
                }
            }
        }
    }

    private mutating func checkProjects() {
        for project in draft.projects {
            let path = { DocumentPath.element("projects", project.index) }
            if let owner = project.owner.value {
                checkReference(owner, to: .user, at: path() + ".owner")
            }
            if let access = project.publicAccess, access != .none, access != .canViewApp {
                issues.add(
                    path() + ".public_access", "public_access must be 'none' or 'can_view_app', not '\(access.name)'")
            }
            for grant in project.grants {
                let grantPath = { DocumentPath.element(path() + ".grants", grant.index) }
                switch grant.target {
                case .user(let user)?:
                    checkReference(user, to: .user, at: grantPath() + ".user")
                case .group(let group)?:
                    checkGrantGroup(group, at: grantPath() + ".group")
                case nil:
                    break
                }
            }
            for asset in project.assets {
                checkReference(asset.value, to: .asset, at: DocumentPath.element(path() + ".assets", asset.index))
            }
        }
    }

    private mutating func checkGrantGroup(_ id: String, at path: @autoclosure () -> String) {
        guard checkIdSyntax(id, at: path()) else { return }
        if isBuiltinGroup(id) {
            issues.add(
                path(),
                "built-in group \(quotedForMessage(id)) cannot be granted (grant a custom group; share with everyone through workspace_access or public_access)"
            )
        } else if groupIndex[id] == nil && !groupsIncomplete {
            issues.add(path(), "unknown group \(quotedForMessage(id))")
        }
    }
}

/// Whether `id` is a built-in group id (without allocating, unlike `BuiltinGroup(name:)`).
func isBuiltinGroup(_ id: String) -> Bool {
    id == BuiltinGroup.workspace.name || id == BuiltinGroup.workspaceGuests.name || id == BuiltinGroup.public.name
}
