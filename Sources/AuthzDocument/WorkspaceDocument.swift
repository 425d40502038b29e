// The workspace document (spec/WORKSPACE-FORMAT.md): decode with full validation,
// validate a model built in code, encode in canonical form.

public import AuthzEngine

/// Reads, validates and writes workspace documents.
///
/// Decoding rejects the whole document and lists every problem found (`DocumentError`),
/// each with the JSON path of the offending field (`users[1].role`,
/// `projects[0].grants[0].group`, `workspace.plan`, `$` for malformed JSON). Accepted input
/// is normalised: legacy role names (`member`, `author`) become canonical, allowed domains
/// become lower-case, repeated entries inside a list keep their first occurrence, omitted
/// fields take their defaults (an omitted asset `groups` is `["workspace"]`). A `null`
/// `role` or `owner` counts as omitted; any other `null` is a wrong type. A key repeated
/// within one object is reported as "duplicate key".
public enum WorkspaceDocument {
    // MARK: Decode

    /// Decodes and validates a document from UTF-8 JSON.
    public static func decode(_ json: some Collection<UInt8>) throws(DocumentError) -> Workspace {
        let value: JSONValue
        do {
            value = try JSONValue.parse(json)
        } catch {
            throw DocumentError(issues: [ValidationIssue(path: "$", reason: error.description)])
        }
        return try decode(value)
    }

    /// Decodes and validates a document from JSON text.
    public static func decode(_ string: String) throws(DocumentError) -> Workspace {
        try decode(string.utf8)
    }

    /// Decodes and validates an already parsed document.
    public static func decode(_ value: JSONValue) throws(DocumentError) -> Workspace {
        var issues = IssueList()
        let draft = DocumentReader.read(value, into: &issues)
        SemanticChecks.run(draft, into: &issues)
        guard issues.isEmpty else {
            throw DocumentError(issues: issues.ordered())
        }
        guard let workspace = draft.build() else {
            // Unreachable unless the checks above miss a hole.
            throw DocumentError(issues: [
                ValidationIssue(path: "$", reason: "internal error: the document passed validation but is incomplete")
            ])
        }
        return workspace
    }

    // MARK: Validate

    /// The semantic problems of a model built in code, with the paths its document would
    /// have (indexes into the model's arrays): id syntax and uniqueness, references, built-in
    /// groups, `explorer` on a plan without it, a `manual` user without a role, a
    /// `directory` user with a role under role sync, `public_access` above `can_view_app`,
    /// emails without '@', empty names, allowed domains that are empty, contain '@' or
    /// whitespace, or are not lower-case. Repeated entries inside a list are not problems
    /// (see `normalized(_:)`). Empty when the model is valid.
    public static func validate(_ workspace: Workspace) -> [ValidationIssue] {
        var issues = IssueList()
        SemanticChecks.run(DraftDocument(workspace), into: &issues)
        return issues.ordered()
    }

    /// The model as decoding its document would give it: allowed domains lower-cased and,
    /// in every id list (group members, asset groups, project assets, allowed domains),
    /// repeated entries removed keeping the first. Grants are kept as they are.
    public static func normalized(_ workspace: Workspace) -> Workspace {
        var result = workspace
        result.settings.allowedDomains = deduplicated(workspace.settings.allowedDomains.map { $0.lowercased() })
        for index in result.groups.indices {
            result.groups[index].members = deduplicated(result.groups[index].members)
        }
        for index in result.assets.indices {
            result.assets[index].groups = deduplicated(result.assets[index].groups)
        }
        for index in result.projects.indices {
            result.projects[index].assets = deduplicated(result.projects[index].assets)
        }
        return result
    }

    private static func deduplicated(_ values: [String]) -> [String] {
        var seen = Set<String>()
        return values.filter { seen.insert($0).inserted }
    }

    // MARK: Encode

    /// The document of `workspace` as JSON text (2-space indented when `pretty`, no
    /// trailing newline). See `encodeValue(_:)` for the canonical form.
    public static func encode(_ workspace: Workspace, pretty: Bool = true) -> String {
        encodeValue(workspace).serialized(pretty: pretty)
    }

    /// The document of `normalized(workspace)` in canonical form: every field written
    /// explicitly in the order of WORKSPACE-FORMAT.md, defaults included, canonical enum
    /// names; a user's `role` and a project's `owner` are omitted when nil; an asset's
    /// `groups` is always written. For a valid model, `decode(encodeValue(w)) ==
    /// normalized(w)` (`== w` when no list repeats an entry), and decode → encode is a
    /// fixed point.
    public static func encodeValue(_ workspace: Workspace) -> JSONValue {
        let workspace = normalized(workspace)
        let settings = workspace.settings
        let sync = settings.directorySync
        let settingsObject: JSONObject = [
            "plan": .string(settings.plan.name),
            "allowed_domains": strings(settings.allowedDomains),
            "default_domain_role": .string(settings.defaultDomainRole.name),
            "viewer_seats_paid": .bool(settings.viewerSeatsPaid),
            "directory_sync": [
                "enabled": .bool(sync.enabled),
                "role_sync": .bool(sync.roleSync),
                "role_mappings": .array(
                    sync.roleMappings.map { mapping in
                        ["group": .string(mapping.group), "role": .string(mapping.role.name)]
                    }),
            ],
        ]
        let users = workspace.users.map { user -> JSONValue in
            var object: JSONObject = [
                "id": .string(user.id),
                "email": .string(user.email),
                "origin": .string(user.origin.name),
            ]
            if let role = user.role {
                object.append("role", .string(role.name))
            }
            object.append("active", .bool(user.active))
            return .object(object)
        }
        let groups = workspace.groups.map { group -> JSONValue in
            [
                "id": .string(group.id),
                "name": .string(group.name),
                "source": .string(group.source.name),
                "members": strings(group.members),
            ]
        }
        let assets = workspace.assets.map { asset -> JSONValue in
            [
                "id": .string(asset.id),
                "kind": .string(asset.kind.name),
                "name": .string(asset.name),
                "groups": strings(asset.groups),
            ]
        }
        let projects = workspace.projects.map { project -> JSONValue in
            var object: JSONObject = ["id": .string(project.id)]
            if let owner = project.owner {
                object.append("owner", .string(owner))
            }
            object.append("workspace_access", .string(project.workspaceAccess.name))
            object.append("public_access", .string(project.publicAccess.name))
            object.append(
                "grants",
                .array(
                    project.grants.map { grant -> JSONValue in
                        switch grant.target {
                        case .user(let user): ["user": .string(user), "level": .string(grant.level.name)]
                        case .group(let group): ["group": .string(group), "level": .string(grant.level.name)]
                        }
                    }))
            object.append("assets", strings(project.assets))
            return .object(object)
        }
        return [
            "workspace": .object(settingsObject),
            "users": .array(users),
            "groups": .array(groups),
            "assets": .array(assets),
            "projects": .array(projects),
        ]
    }

    private static func strings(_ values: [String]) -> JSONValue {
        .array(values.map(JSONValue.string))
    }
}
