// The lookups of `authzctl check` (RULES.md §8):
//
//   {"op":"list_projects","user":"u"}
//   {"op":"list_project_access","project":"p"}
//   {"op":"list_assets","user":"u","project":"p"}                 (project optional)
//
// each with optional "min_level" (list_projects, list_project_access) or "min_access"
// (list_assets), "page_size", "page_token" and "all". Without "all" the answer is one line per
// page: {"items":[…],"next_page_token":…,"snapshot_version":N,"snapshot_changed":…} (plus
// "reason" when the subject is unknown or inactive and "page_size_clamped" when the page size
// was clamped). With "all":true the pages are followed and each item is one line:
// {"id":…,"level":…,"reason":…,"snapshot_version":N} ("access" for assets). The local engine
// (`--db`) and the socket (`--socket`) go through the same rendering, so both print the same
// bytes.

public import AuthzDocument
public import AuthzEngine

/// One lookup question.
public struct LookupQuery: Sendable, Equatable {
    public enum Subject: Sendable, Equatable {
        /// ListProjects(user); the empty user is the anonymous web viewer.
        case projects(user: String)
        /// ListProjectAccess(project).
        case projectAccess(project: String)
        /// ListAssets(user, project?).
        case assets(user: String, project: String?)
    }

    public var subject: Subject
    /// `min_level` (projects, project access); nil: `can_view_app`.
    public var minLevel: Level?
    /// `min_access` (assets); nil: `view`.
    public var minAccess: Access?
    /// nil: the server's default (with `all`: the largest page).
    public var pageSize: Int?
    /// nil: from the start.
    public var pageToken: String?
    /// Follow every page and print one line per item.
    public var all: Bool

    public init(
        _ subject: Subject, minLevel: Level? = nil, minAccess: Access? = nil, pageSize: Int? = nil,
        pageToken: String? = nil, all: Bool = false
    ) {
        self.subject = subject
        self.minLevel = minLevel
        self.minAccess = minAccess
        self.pageSize = pageSize
        self.pageToken = pageToken
        self.all = all
    }

    public var kind: LookupKind {
        switch subject {
        case .projects: .projects
        case .projectAccess: .projectAccess
        case .assets: .assets
        }
    }

    /// The page size to ask for: the query's, else the largest page when following them all,
    /// else 0 (the server's default).
    public var requestedPageSize: Int { pageSize ?? (all ? LookupLimits.maxPageSize : 0) }

    /// Parses a lookup object whose `op` is one of `LookupKind`'s names; `ignoring` names
    /// extra keys to tolerate.
    init(json object: JSONObject, op: String, ignoring ignored: Set<String>) throws(QueryError) {
        let kind = LookupKind.allCases.first { $0.name == op }!
        var allowed = ["op", "page_size", "page_token", "all"]
        switch kind {
        case .projects: allowed += ["user", "min_level"]
        case .projectAccess: allowed += ["project", "min_level"]
        case .assets: allowed += ["user", "project", "min_access"]
        }
        for member in object where !allowed.contains(member.key) && !ignored.contains(member.key) {
            throw QueryError("unknown field '\(member.key)' for op '\(op)'")
        }
        func id(_ key: String, required: Bool, emptyAllowed: Bool) throws(QueryError) -> String? {
            guard let value = object[key] else {
                if required { throw QueryError("missing field '\(key)'") }
                return nil
            }
            guard case .string(let text) = value else { throw QueryError("field '\(key)' must be a string") }
            if text.isEmpty, emptyAllowed { return text }
            guard Identifier.isValid(text) else {
                throw QueryError(text.isEmpty
                    ? "field '\(key)' is empty"
                    : "field '\(key)' is not a valid id (1 to \(Identifier.maxLength) characters from A-Z a-z 0-9 . _ : @ -)")
            }
            return text
        }
        switch kind {
        case .projects:
            subject = .projects(user: try id("user", required: true, emptyAllowed: true) ?? "")
        case .projectAccess:
            subject = .projectAccess(project: try id("project", required: true, emptyAllowed: false) ?? "")
        case .assets:
            subject = .assets(
                user: try id("user", required: true, emptyAllowed: true) ?? "",
                project: try id("project", required: false, emptyAllowed: false))
        }
        minLevel = nil
        minAccess = nil
        if let value = object["min_level"] {
            guard case .string(let name) = value, let level = Level(name: name) else {
                throw QueryError("field 'min_level' must be one of \(Level.allNames.dropFirst().joined(separator: ", "))")
            }
            // RULES.md §8: below can_view_app is invalid (checked here so both paths say the same).
            guard level >= .canViewApp else { throw QueryError("field 'min_level': \(name) is below can_view_app, the least a listing can ask for") }
            minLevel = level
        }
        if let value = object["min_access"] {
            guard case .string(let name) = value, let access = Access(name: name) else {
                throw QueryError("field 'min_access' must be one of \(Access.allNames.dropFirst().joined(separator: ", "))")
            }
            guard access >= .view else { throw QueryError("field 'min_access': \(name) is below view, the least a listing can ask for") }
            minAccess = access
        }
        pageSize = nil
        if let value = object["page_size"] {
            guard let size = value.uint64, size <= UInt64(UInt32.max) else {
                throw QueryError("field 'page_size' must be a whole number from 0 to \(UInt32.max) (0: the default)")
            }
            pageSize = Int(size)
        }
        pageToken = nil
        if let value = object["page_token"] {
            guard case .string(let token) = value else { throw QueryError("field 'page_token' must be a string") }
            pageToken = token
        }
        all = false
        if let value = object["all"] {
            guard case .bool(let flag) = value else { throw QueryError("field 'all' must be true or false") }
            all = flag
        }
    }

    /// The query as a JSON object.
    public var json: JSONValue {
        var object: JSONObject = ["op": .string(kind.name)]
        switch subject {
        case .projects(let user): object["user"] = .string(user)
        case .projectAccess(let project): object["project"] = .string(project)
        case .assets(let user, let project):
            object["user"] = .string(user)
            if let project { object["project"] = .string(project) }
        }
        if let minLevel { object["min_level"] = .string(minLevel.name) }
        if let minAccess { object["min_access"] = .string(minAccess.name) }
        if let pageSize { object["page_size"] = .number(Double(pageSize)) }
        if let pageToken { object["page_token"] = .string(pageToken) }
        if all { object["all"] = .bool(true) }
        return .object(object)
    }

    // MARK: Answering

    /// One page from the local engine, or the error line text the socket path prints for the
    /// same request (`INVALID_ARGUMENT: list_projects.page_token: …`).
    public func page(_ snapshot: Snapshot, token: String) -> Result<ListingPage, LookupFailure> {
        do throws(LookupError) {
            switch subject {
            case .projects(let user):
                let page = try snapshot.listProjects(
                    user: user, minLevel: minLevel ?? .canViewApp, pageSize: requestedPageSize, pageToken: token)
                return .success(ListingPage(page, ids: snapshot.projectIds) { .level($0.level) })
            case .projectAccess(let project):
                let page = try snapshot.listProjectAccess(
                    project: project, minLevel: minLevel ?? .canViewApp, pageSize: requestedPageSize, pageToken: token)
                return .success(ListingPage(page, ids: snapshot.userIds) { .level($0.level) })
            case .assets(let user, let project):
                let page = try snapshot.listAssets(
                    user: user, project: project, minAccess: minAccess ?? .view, pageSize: requestedPageSize,
                    pageToken: token)
                return .success(ListingPage(page, ids: snapshot.assetIds) { .access($0.access) })
            }
        } catch {
            return .failure(LookupFailure("INVALID_ARGUMENT: \(kind.name).\(error)"))
        }
    }

    /// The lines `authzctl check` prints for this query, fetching pages with `fetch` (the
    /// local engine or the socket): one page line, or with `all` one line per item.
    public func lines(_ fetch: (String) async -> Result<ListingPage, LookupFailure>) async -> [JSONValue] {
        guard all else {
            switch await fetch(pageToken ?? "") {
            case .success(let page): return [page.json]
            case .failure(let failure): return [errorLine(failure.message)]
            }
        }
        var lines: [JSONValue] = []
        var token = pageToken ?? ""
        var first = true
        while true {
            switch await fetch(token) {
            case .failure(let failure):
                lines.append(errorLine(failure.message))
                return lines
            case .success(let page):
                lines += page.itemLines
                if first, page.items.isEmpty, let reason = page.reason {
                    // An unknown or inactive subject: say so once instead of printing nothing.
                    lines.append(["reason": .string(reason.name), "snapshot_version": .number(Double(page.snapshotVersion))])
                }
                first = false
                guard !page.nextPageToken.isEmpty else { return lines }
                guard page.nextPageToken != token else {
                    lines.append(errorLine("the server returned the same page token twice"))
                    return lines
                }
                token = page.nextPageToken
            }
        }
    }

    /// The whole listing as one answer object (the conformance runners compare it):
    /// `{"items":[every item of every page],"snapshot_version":N}` (plus `"reason"`), the
    /// version being the last page's; or the error line.
    public func completeListing(_ fetch: (String) async -> Result<ListingPage, LookupFailure>) async -> JSONValue {
        var items: [JSONValue] = []
        var token = ""
        var reason: Reason?
        var version: UInt64 = 0
        for _ in 0 ..< 1_000_000 {
            switch await fetch(token) {
            case .failure(let failure):
                return errorLine(failure.message)
            case .success(let page):
                items += page.items.map { .object($0.json) }
                reason = page.reason
                version = page.snapshotVersion
                token = page.nextPageToken
            }
            if token.isEmpty { break }
        }
        var object: JSONObject = ["items": .array(items)]
        if let reason { object["reason"] = .string(reason.name) }
        object["snapshot_version"] = .number(Double(version))
        return .object(object)
    }
}

/// A lookup page that could not be had: the error line's text.
public struct LookupFailure: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// One page of a listing as `authzctl check` prints it.
public struct ListingPage: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        case level(Level)
        case access(Access)
    }

    public struct Item: Sendable, Equatable {
        public var id: String
        public var value: Value
        public var reason: Reason

        public init(id: String, value: Value, reason: Reason) {
            self.id = id
            self.value = value
            self.reason = reason
        }

        /// `{"id","level"|"access","reason"}`.
        var json: JSONObject {
            var object: JSONObject = ["id": .string(id)]
            switch value {
            case .level(let level): object["level"] = .string(level.name)
            case .access(let access): object["access"] = .string(access.name)
            }
            object["reason"] = .string(reason.name)
            return object
        }
    }

    public var items: [Item]
    /// Empty when the listing is complete.
    public var nextPageToken: String
    public var snapshotVersion: UInt64
    public var snapshotChanged: Bool
    public var pageSizeClamped: Bool
    public var reason: Reason?

    public init(
        items: [Item], nextPageToken: String, snapshotVersion: UInt64, snapshotChanged: Bool, pageSizeClamped: Bool,
        reason: Reason?
    ) {
        self.items = items
        self.nextPageToken = nextPageToken
        self.snapshotVersion = snapshotVersion
        self.snapshotChanged = snapshotChanged
        self.pageSizeClamped = pageSizeClamped
        self.reason = reason
    }

    init<Entry: LookupEntry>(_ page: LookupPage<Entry>, ids: IdIndex, _ value: (Entry) -> Value) {
        self.init(
            items: page.entries.map { Item(id: ids.id(at: $0.index), value: value($0), reason: $0.reason) },
            nextPageToken: page.nextPageToken, snapshotVersion: page.snapshotVersion,
            snapshotChanged: page.snapshotChanged, pageSizeClamped: page.pageSizeClamped, reason: page.reason)
    }

    /// The page line: `{"items":[…],"next_page_token":"…"|null,"snapshot_version":N,
    /// "snapshot_changed":bool}` plus `"reason"` (an unknown or inactive subject) and
    /// `"page_size_clamped":true` when they apply.
    public var json: JSONValue {
        var object: JSONObject = ["items": .array(items.map { .object($0.json) })]
        object["next_page_token"] = nextPageToken.isEmpty ? .null : .string(nextPageToken)
        object["snapshot_version"] = .number(Double(snapshotVersion))
        object["snapshot_changed"] = .bool(snapshotChanged)
        if let reason { object["reason"] = .string(reason.name) }
        if pageSizeClamped { object["page_size_clamped"] = .bool(true) }
        return .object(object)
    }

    /// One line per item: `{"id","level"|"access","reason","snapshot_version"}`.
    public var itemLines: [JSONValue] {
        items.map { item in
            var object = item.json
            object["snapshot_version"] = .number(Double(snapshotVersion))
            return .object(object)
        }
    }
}

/// A line of `authzctl check` or a check of a conformance file: a decision or a lookup.
public enum Question: Sendable, Equatable {
    case check(Query)
    case lookup(LookupQuery)

    /// Parses a question object (see `Query` and `LookupQuery`).
    public init(json: JSONValue, ignoring ignored: Set<String> = []) throws(QueryError) {
        if case .object(let object) = json, case .string(let op)? = object["op"],
            LookupKind.allCases.contains(where: { $0.name == op })
        {
            self = .lookup(try LookupQuery(json: object, op: op, ignoring: ignored))
        } else {
            self = .check(try Query(json: json, ignoring: ignored))
        }
    }

    /// Parses one JSON line.
    public init(line: some Collection<UInt8>) throws(QueryError) {
        let value: JSONValue
        do {
            value = try JSONValue.parse(line)
        } catch {
            throw QueryError("malformed JSON: \(error)")
        }
        try self.init(json: value)
    }
}
