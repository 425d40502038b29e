// Structural decoding: JSON → draft. Reports missing required fields, unknown and repeated
// keys, wrong types and unknown enum values; normalises (legacy role names, lower-case
// domains, de-duplicated lists, defaults). Cross-entry rules live in SemanticChecks.swift.

import AuthzEngine

struct DocumentReader {
    private(set) var issues: IssueList
    private var draft = DraftDocument()

    private init(issues: IssueList) {
        self.issues = issues
    }

    /// Reads `root` into a draft, adding every structural problem to `issues`.
    static func read(_ root: JSONValue, into issues: inout IssueList) -> DraftDocument {
        var reader = DocumentReader(issues: issues)
        reader.readDocument(root)
        issues = reader.issues
        return reader.draft
    }

    // MARK: Field names

    private enum Keys {
        static let document = ["workspace", "users", "groups", "assets", "projects"]
        static let settings = ["plan", "allowed_domains", "default_domain_role", "viewer_seats_paid", "directory_sync"]
        static let directorySync = ["enabled", "role_sync", "role_mappings"]
        static let roleMapping = ["group", "role"]
        static let user = ["id", "email", "origin", "role", "active"]
        static let group = ["id", "name", "source", "members"]
        static let asset = ["id", "kind", "name", "groups"]
        static let project = ["id", "owner", "workspace_access", "public_access", "grants", "assets"]
        static let grant = ["user", "group", "level"]
    }

    /// The members of one object, matched against its allowed keys.
    private struct Fields {
        let path: String
        let names: [String]
        var values: [JSONValue?]

        /// The value of an allowed key (nil when absent).
        subscript(name: String) -> JSONValue? {
            guard let index = names.firstIndex(of: name) else { return nil }
            return values[index]
        }

        /// The path of a field of this object.
        func path(_ name: String) -> String { DocumentPath.member(path, name) }
    }

    /// Matches an object's members to `names`; reports unknown and repeated keys (the
    /// first occurrence of a repeated key is the one read).
    private mutating func matchFields(_ object: JSONObject, _ names: [String], at path: String) -> Fields {
        var fields = Fields(path: path, names: names, values: Array(repeating: nil, count: names.count))
        for member in object.members {
            if let index = names.firstIndex(of: member.key) {
                if fields.values[index] != nil {
                    issues.add(fields.path(member.key), "duplicate key \(quotedForMessage(member.key))")
                } else {
                    fields.values[index] = member.value
                }
            } else {
                issues.add(
                    fields.path(member.key),
                    "unknown field \(quotedForMessage(member.key)) (expected one of \(names.joined(separator: ", ")))")
            }
        }
        return fields
    }

    // MARK: Typed values

    private mutating func wrongType(_ value: JSONValue, expected: String, at path: String) {
        issues.add(path, "expected \(expected), found \(value.typeDescription)")
    }

    private mutating func requiredString(_ fields: Fields, _ name: String) -> String? {
        guard let value = fields[name] else {
            issues.add(fields.path(name), "missing required field '\(name)'")
            return nil
        }
        guard case .string(let string) = value else {
            wrongType(value, expected: "a string", at: fields.path(name))
            return nil
        }
        return string
    }

    /// An optional string; `null` counts as absent.
    private mutating func optionalString(_ fields: Fields, _ name: String) -> DraftField<String> {
        switch fields[name] {
        case nil, .null?:
            return .absent
        case .string(let string)?:
            return .value(string)
        case let value?:
            wrongType(value, expected: "a string", at: fields.path(name))
            return .invalid
        }
    }

    private mutating func bool(_ fields: Fields, _ name: String, default defaultValue: Bool) -> Bool? {
        guard let value = fields[name] else { return defaultValue }
        guard case .bool(let flag) = value else {
            wrongType(value, expected: "a boolean", at: fields.path(name))
            return nil
        }
        return flag
    }

    /// An enum field: absent gives `defaultValue` (or a "missing" issue when nil).
    private mutating func enumeration<Value>(
        _ fields: Fields, _ name: String, kind: String, names: [String], default defaultValue: Value?,
        parse: (String) -> Value?
    ) -> Value? {
        guard let value = fields[name] else {
            if defaultValue == nil {
                issues.add(fields.path(name), "missing required field '\(name)'")
            }
            return defaultValue
        }
        guard case .string(let string) = value else {
            wrongType(value, expected: "a string (\(kind))", at: fields.path(name))
            return nil
        }
        guard let parsed = parse(string) else {
            issues.add(
                fields.path(name),
                "unknown \(kind) \(quotedForMessage(string)) (expected one of \(names.joined(separator: ", ")))")
            return nil
        }
        return parsed
    }

    /// Canonical names for messages and lookup tables, computed once.
    private enum Names {
        static let roles = Role.allNames.reversed().map { $0 }
        static let levels = Level.allNames
        static let plans = Plan.allNames
        static let origins = Origin.allNames
        static let groupSources = GroupSource.allNames
        static let assetKinds = AssetKind.allNames
        static let levelTable = table(Level.self)
        static let originTable = table(Origin.self)
        static let assetKindTable = table(AssetKind.self)

        private static func table<Value: NamedEnum>(_: Value.Type) -> [String: Value] {
            Dictionary(uniqueKeysWithValues: Value.allCases.map { ($0.name, $0) })
        }
    }

    private mutating func role(_ fields: Fields, _ name: String, default defaultValue: Role?) -> Role? {
        enumeration(fields, name, kind: "role", names: Names.roles, default: defaultValue) {
            Role(acceptingLegacy: $0)
        }
    }

    private mutating func level(_ fields: Fields, _ name: String, default defaultValue: Level?) -> Level? {
        enumeration(fields, name, kind: "level", names: Names.levels, default: defaultValue) { Names.levelTable[$0] }
    }

    /// A list of strings, absent → nil. Non-string elements are reported and skipped.
    /// Repeated elements keep their first occurrence (after `transform`).
    private mutating func stringList(
        _ fields: Fields, _ name: String, transform: (String) -> String = { $0 }
    ) -> [Indexed<String>]? {
        guard let value = fields[name] else { return nil }
        guard case .array(let elements) = value else {
            wrongType(value, expected: "an array of strings", at: fields.path(name))
            return []
        }
        var result: [Indexed<String>] = []
        result.reserveCapacity(elements.count)
        var seen = Set<String>()
        for (index, element) in elements.enumerated() {
            guard case .string(let string) = element else {
                wrongType(element, expected: "a string", at: DocumentPath.element(fields.path(name), index))
                continue
            }
            let normalised = transform(string)
            if seen.insert(normalised).inserted {
                result.append(Indexed(index: index, value: normalised))
            }
        }
        return result
    }

    /// The objects of an array field with their indexes; absent → empty. `complete` is
    /// false when the field or one of its elements is not of the right type.
    private mutating func objects(
        _ value: JSONValue?, at path: String
    ) -> (entries: [(index: Int, object: JSONObject)], complete: Bool) {
        guard let value else { return ([], true) }
        guard case .array(let elements) = value else {
            wrongType(value, expected: "an array of objects", at: path)
            return ([], false)
        }
        var complete = true
        var result: [(index: Int, object: JSONObject)] = []
        result.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard case .object(let object) = element else {
                wrongType(element, expected: "an object", at: DocumentPath.element(path, index))
                complete = false
                continue
            }
            result.append((index, object))
        }
        return (result, complete)
    }

    // MARK: Document

    private mutating func readDocument(_ root: JSONValue) {
        guard case .object(let object) = root else {
            issues.add("$", "expected the document to be a JSON object, found \(root.typeDescription)")
            draft.userIdsComplete = false
            draft.groupIdsComplete = false
            draft.assetIdsComplete = false
            return
        }
        let fields = matchFields(object, Keys.document, at: "")
        switch fields["workspace"] {
        case nil:
            issues.add("workspace", "missing required field 'workspace'")
        case .object(let settings)?:
            readSettings(settings)
        case let value?:
            wrongType(value, expected: "an object", at: "workspace")
        }
        let users = objects(fields["users"], at: "users")
        draft.userIdsComplete = users.complete
        for (index, object) in users.entries {
            readUser(object, index: index)
        }
        let groups = objects(fields["groups"], at: "groups")
        draft.groupIdsComplete = groups.complete
        for (index, object) in groups.entries {
            readGroup(object, index: index)
        }
        let assets = objects(fields["assets"], at: "assets")
        draft.assetIdsComplete = assets.complete
        for (index, object) in assets.entries {
            readAsset(object, index: index)
        }
        for (index, object) in objects(fields["projects"], at: "projects").entries {
            readProject(object, index: index)
        }
    }

    private mutating func readSettings(_ object: JSONObject) {
        let fields = matchFields(object, Keys.settings, at: "workspace")
        var settings = DraftSettings()
        settings.plan = enumeration(fields, "plan", kind: "plan", names: Names.plans, default: nil) {
            Plan(name: $0)
        }
        settings.allowedDomains = stringList(fields, "allowed_domains") { $0.lowercased() } ?? []
        settings.defaultDomainRole = role(fields, "default_domain_role", default: .viewer)
        settings.viewerSeatsPaid = bool(fields, "viewer_seats_paid", default: false)
        switch fields["directory_sync"] {
        case nil:
            break
        case .object(let sync)?:
            let syncFields = matchFields(sync, Keys.directorySync, at: fields.path("directory_sync"))
            settings.syncEnabled = bool(syncFields, "enabled", default: false)
            settings.roleSync = bool(syncFields, "role_sync", default: true)
            let mappingsPath = syncFields.path("role_mappings")
            for (index, mapping) in objects(syncFields["role_mappings"], at: mappingsPath).entries {
                let mappingFields = matchFields(mapping, Keys.roleMapping, at: DocumentPath.element(mappingsPath, index))
                settings.roleMappings.append(
                    DraftRoleMapping(
                        index: index,
                        group: requiredString(mappingFields, "group"),
                        role: role(mappingFields, "role", default: nil)))
            }
        case let value?:
            wrongType(value, expected: "an object", at: fields.path("directory_sync"))
            // Unknown sync settings: skip the checks that depend on them.
            settings.syncEnabled = nil
            settings.roleSync = nil
        }
        draft.settings = settings
    }

    private mutating func readUser(_ object: JSONObject, index: Int) {
        let fields = matchFields(object, Keys.user, at: DocumentPath.element("users", index))
        var user = DraftUser(index: index)
        user.id = requiredString(fields, "id")
        if user.id == nil { draft.userIdsComplete = false }
        user.email = requiredString(fields, "email")
        user.origin = enumeration(fields, "origin", kind: "origin", names: Names.origins, default: nil) {
            Names.originTable[$0]
        }
        switch fields["role"] {
        case nil, .null?:
            user.role = .absent
        default:
            user.role = role(fields, "role", default: nil).map(DraftField.value) ?? .invalid
        }
        user.active = bool(fields, "active", default: true)
        draft.users.append(user)
    }

    private mutating func readGroup(_ object: JSONObject, index: Int) {
        let fields = matchFields(object, Keys.group, at: DocumentPath.element("groups", index))
        var group = DraftGroup(index: index)
        group.id = requiredString(fields, "id")
        if group.id == nil { draft.groupIdsComplete = false }
        group.name = requiredString(fields, "name")
        group.source = enumeration(
            fields, "source", kind: "group source", names: Names.groupSources, default: .workspace
        ) { GroupSource(name: $0) }
        group.members = stringList(fields, "members") ?? []
        draft.groups.append(group)
    }

    private mutating func readAsset(_ object: JSONObject, index: Int) {
        let fields = matchFields(object, Keys.asset, at: DocumentPath.element("assets", index))
        var asset = DraftAsset(index: index)
        asset.id = requiredString(fields, "id")
        if asset.id == nil { draft.assetIdsComplete = false }
        asset.kind = enumeration(fields, "kind", kind: "asset kind", names: Names.assetKinds, default: nil) {
            Names.assetKindTable[$0]
        }
        asset.name = requiredString(fields, "name")
        if let groups = stringList(fields, "groups") {
            asset.groups = groups
        }
        draft.assets.append(asset)
    }

    private mutating func readProject(_ object: JSONObject, index: Int) {
        let path = DocumentPath.element("projects", index)
        let fields = matchFields(object, Keys.project, at: path)
        var project = DraftProject(index: index)
        project.id = requiredString(fields, "id")
        project.owner = optionalString(fields, "owner")
        project.workspaceAccess = level(fields, "workspace_access", default: Level.none)
        project.publicAccess = level(fields, "public_access", default: Level.none)
        let grantsPath = fields.path("grants")
        for (grantIndex, grant) in objects(fields["grants"], at: grantsPath).entries {
            project.grants.append(readGrant(grant, index: grantIndex, at: DocumentPath.element(grantsPath, grantIndex)))
        }
        project.assets = stringList(fields, "assets") ?? []
        draft.projects.append(project)
    }

    private mutating func readGrant(_ object: JSONObject, index: Int, at path: String) -> DraftGrant {
        let fields = matchFields(object, Keys.grant, at: path)
        var grant = DraftGrant(index: index)
        // `null` is not accepted here: a grant target is never optional.
        let user = fields["user"].map { _ in requiredString(fields, "user") }
        let group = fields["group"].map { _ in requiredString(fields, "group") }
        switch (user, group) {
        case (nil, nil):
            issues.add(path, "a grant must name a 'user' or a 'group'")
        case (.some, .some):
            issues.add(path, "a grant must name exactly one of 'user' or 'group', not both")
        case (let user??, nil):
            grant.target = .user(user)
        case (nil, let group??):
            grant.target = .group(group)
        default:
            break  // Wrong type, already reported.
        }
        grant.level = level(fields, "level", default: nil)
        return grant
    }
}
