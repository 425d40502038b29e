// The JSON query/answer language of `authzctl check` and of the conformance files:
//
//   {"op":"effective_permission","user":"u","project":"p"}
//   {"op":"can_use","user":"u","asset":"a","project":"p"}        (project optional)
//   {"op":"seat_type","user":"u"}
//   {"op":"capabilities","user":"u"}
//
// and the lookups (Lookup.swift: `list_projects`, `list_project_access`, `list_assets`).
//
// Answers are JSON objects that always name the snapshot version they came from. The same
// answer rendering serves the local engine (`--db`) and the socket (`--socket`), so the
// two paths print identical bytes.

public import AuthzDocument
public import AuthzEngine

/// One question.
public enum Query: Sendable, Equatable {
    case effectivePermission(user: String, project: String)
    case canUse(user: String, asset: String, project: String?)
    case seatType(user: String)
    case capabilities(user: String)

    /// The operation names, as spelled in `op`.
    public static let operations = ["effective_permission", "can_use", "seat_type", "capabilities"]

    /// Parses a query object. `ignoring` names extra keys to tolerate (the conformance
    /// runner passes `expect`); any other unknown key is an error.
    public init(json: JSONValue, ignoring ignored: Set<String> = []) throws(QueryError) {
        guard case .object(let object) = json else { throw QueryError("a query must be a JSON object") }
        guard let op = object["op"] else { throw QueryError("missing field 'op'") }
        guard case .string(let name) = op else { throw QueryError("field 'op' must be a string") }
        let allowed: [String]
        switch name {
        case "effective_permission": allowed = ["op", "user", "project"]
        case "can_use": allowed = ["op", "user", "asset", "project"]
        case "seat_type", "capabilities": allowed = ["op", "user"]
        default:
            let all = Query.operations + LookupKind.allCases.map(\.name)
            throw QueryError("unknown op '\(name)' (expected one of \(all.joined(separator: ", ")))")
        }
        for member in object where !allowed.contains(member.key) && !ignored.contains(member.key) {
            throw QueryError("unknown field '\(member.key)' for op '\(name)'")
        }
        func string(_ key: String, required: Bool = true) throws(QueryError) -> String? {
            guard let value = object[key] else {
                if required { throw QueryError("missing field '\(key)'") }
                return nil
            }
            guard case .string(let text) = value else { throw QueryError("field '\(key)' must be a string") }
            return text
        }
        func id(_ key: String, required: Bool = true, emptyAllowed: Bool = false) throws(QueryError) -> String? {
            guard let text = try string(key, required: required) else { return nil }
            if text.isEmpty, emptyAllowed { return text }
            guard Identifier.isValid(text) else {
                throw QueryError(text.isEmpty
                    ? "field '\(key)' is empty"
                    : "field '\(key)' is not a valid id (1 to \(Identifier.maxLength) characters from A-Z a-z 0-9 . _ : @ -)")
            }
            return text
        }
        // The empty user id is the anonymous web viewer; every other id must be well-formed
        // (the socket rejects malformed ids too, so both paths answer alike).
        let user = try id("user", emptyAllowed: true) ?? ""
        switch name {
        case "effective_permission":
            self = .effectivePermission(user: user, project: try id("project") ?? "")
        case "can_use":
            self = .canUse(user: user, asset: try id("asset") ?? "", project: try id("project", required: false))
        case "seat_type":
            self = .seatType(user: user)
        default:
            self = .capabilities(user: user)
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

    /// The query as a JSON object (what `--socket` clients and logs print).
    public var json: JSONValue {
        switch self {
        case .effectivePermission(let user, let project):
            ["op": "effective_permission", "user": .string(user), "project": .string(project)]
        case .canUse(let user, let asset, let project?):
            ["op": "can_use", "user": .string(user), "asset": .string(asset), "project": .string(project)]
        case .canUse(let user, let asset, nil):
            ["op": "can_use", "user": .string(user), "asset": .string(asset)]
        case .seatType(let user):
            ["op": "seat_type", "user": .string(user)]
        case .capabilities(let user):
            ["op": "capabilities", "user": .string(user)]
        }
    }
}

/// A query that could not be understood.
public struct QueryError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One answer, with the snapshot version it was computed from.
public struct Answer: Sendable, Equatable {
    public enum Result: Sendable, Equatable {
        case permission(level: Level, reason: Reason, steps: [ExplanationStep])
        case access(AccessDecision)
        case seat(SeatDecision)
        case capabilities([Capability])
    }

    public var result: Result
    public var snapshotVersion: UInt64

    public init(_ result: Result, snapshotVersion: UInt64) {
        self.result = result
        self.snapshotVersion = snapshotVersion
    }

    /// Answers `query` from `snapshot`, with the explanation steps.
    public init(_ query: Query, snapshot: Snapshot) {
        let result: Result
        switch query {
        case .effectivePermission(let user, let project):
            let decision = snapshot.effectivePermission(user: user, project: project)
            result = .permission(level: decision.level, reason: decision.reason, steps: snapshot.explain(decision))
        case .canUse(let user, let asset, let project):
            result = .access(snapshot.canUse(user: user, asset: asset, project: project))
        case .seatType(let user):
            result = .seat(snapshot.seatType(user: user))
        case .capabilities(let user):
            result = .capabilities(Array(snapshot.capabilities(user: user)))
        }
        self.init(result, snapshotVersion: snapshot.version)
    }

    /// The answer object, keys in a fixed order:
    /// `{"level","reason","steps","snapshot_version"}`, `{"access","reason","snapshot_version"}`,
    /// `{"seat","paid","role","role_source","plan_downgrade","snapshot_version"}` (role
    /// fields absent for `none`), `{"capabilities","snapshot_version"}`.
    public var json: JSONValue {
        var object = JSONObject()
        switch result {
        case .permission(let level, let reason, let steps):
            object["level"] = .string(level.name)
            object["reason"] = .string(reason.name)
            object["steps"] = .array(steps.map { step in
                var entry: JSONObject = ["reason": .string(step.reason.name), "level": .string(step.level.name)]
                if let subject = step.subject { entry["subject"] = .string(subject) }
                return .object(entry)
            })
        case .access(let decision):
            object["access"] = .string(decision.access.name)
            object["reason"] = .string(decision.reason.name)
        case .seat(let decision):
            object["seat"] = .string(decision.seat.name)
            object["paid"] = .bool(decision.paid)
            if let role = decision.role { object["role"] = .string(role.name) }
            if let source = decision.roleSource { object["role_source"] = .string(source.name) }
            if decision.seat != .none { object["plan_downgrade"] = .bool(decision.planDowngrade) }
        case .capabilities(let capabilities):
            object["capabilities"] = .array(capabilities.map { .string($0.name) })
        }
        object["snapshot_version"] = .number(Double(snapshotVersion))
        return .object(object)
    }
}

/// The line printed for a query that could not be answered.
public func errorLine(_ message: String) -> JSONValue {
    ["error": .string(message)]
}
