// Reads ../shared/conformance at test time and compares answers with expectations.
// Shared by the conformance runners (engine through SQLite, and over the socket).

public import AuthzDocument
public import AuthzEngine
public import AuthzQuery
public import Foundation

public enum Conformance {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// `../shared/conformance` next to the package root (the folder holding Package.swift),
    /// or `$AUTHZ_CONFORMANCE_DIR`. Never optional: a missing folder is an error.
    public static func directory(filePath: String = #filePath) throws -> URL {
        if let override = ProcessInfo.processInfo.environment["AUTHZ_CONFORMANCE_DIR"], !override.isEmpty {
            return URL(fileURLWithPath: override)
        }
        var root = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
            let parent = root.deletingLastPathComponent()
            guard parent.path != root.path else { throw Failure("no Package.swift above \(filePath)") }
            root = parent
        }
        let directory = root.deletingLastPathComponent().appendingPathComponent("shared/conformance")
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw Failure("conformance folder missing: \(directory.path) (expected ../shared/conformance beside the package)")
        }
        return directory
    }

    /// The names of every `*.json` file in the folder, sorted. Empty if the folder is
    /// missing: the runners separately fail on a missing or empty folder.
    public static func fileNames() -> [String] {
        guard let directory = try? directory(),
              let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path)
        else { return [] }
        return names.filter { $0.hasSuffix(".json") }.sorted()
    }

    public struct Scenario {
        public var name: String
        public var document: JSONValue?
        public var checks: [JSONValue]
        public var invalidDocuments: [(name: String, document: JSONValue, errors: [String])]
    }

    public static func load(_ fileName: String) throws -> Scenario {
        let url = try directory().appendingPathComponent(fileName)
        let data = try Data(contentsOf: url)
        let json = try JSONValue.parse([UInt8](data))
        guard case .object(let root) = json else { throw Failure("\(fileName): not a JSON object") }
        var invalid: [(String, JSONValue, [String])] = []
        for (index, entry) in (root["invalid_documents"]?.array ?? []).enumerated() {
            guard let document = entry["workspace"], let errors = entry["errors"]?.array?.compactMap(\.string) else {
                throw Failure("\(fileName): invalid_documents[\(index)] lacks workspace or errors")
            }
            invalid.append((entry["name"]?.string ?? "#\(index)", document, errors))
        }
        let scenario = Scenario(
            name: root["name"]?.string ?? fileName,
            document: root["workspace"],
            checks: root["checks"]?.array ?? [],
            invalidDocuments: invalid
        )
        if scenario.document == nil, scenario.invalidDocuments.isEmpty {
            throw Failure("\(fileName): neither a workspace with checks nor invalid_documents")
        }
        if scenario.document != nil, scenario.checks.isEmpty {
            throw Failure("\(fileName): a workspace without checks")
        }
        return scenario
    }

    /// The question of a check (its `expect` stripped): a decision, or a lookup
    /// (`list_projects`, `list_project_access`, `list_assets`).
    public static func query(of check: JSONValue) throws -> Question {
        try Question(json: check, ignoring: ["expect"])
    }

    /// The answer object of a question from `snapshot`; for a lookup, the complete listing
    /// (every page followed): `{"items":[…],"snapshot_version":N}`, plus `"reason"` when the
    /// subject is unknown or inactive, so a check can expect `items` (or `reason`).
    public static func answer(_ question: Question, snapshot: Snapshot) async -> JSONValue {
        switch question {
        case .check(let query): Answer(query, snapshot: snapshot).json
        case .lookup(let lookup): await lookup.completeListing { lookup.page(snapshot, token: $0) }
        }
    }

    /// Every way `answer` (an `authzctl check` answer object) disagrees with `expect`.
    /// Each expected key must match exactly; `has`/`lacks` are checked against the answer's
    /// capability list.
    public static func mismatches(expect: JSONValue, answer: JSONValue) -> [String] {
        guard case .object(let expected) = expect else { return ["expect is not an object"] }
        var problems: [String] = []
        let capabilities = Set(answer["capabilities"]?.array?.compactMap(\.string) ?? [])
        for member in expected {
            switch member.key {
            case "has":
                for name in member.value.array?.compactMap(\.string) ?? [] where !capabilities.contains(name) {
                    problems.append("lacks capability \(name)")
                }
            case "lacks":
                for name in member.value.array?.compactMap(\.string) ?? [] where capabilities.contains(name) {
                    problems.append("has capability \(name)")
                }
            default:
                let actual = answer[member.key]
                if actual != member.value {
                    problems.append("\(member.key): expected \(member.value), got \(actual.map { "\($0)" } ?? "nothing")")
                }
            }
        }
        // An answer for an unknown/inactive user names no role.
        if answer["seat"]?.string == "none", answer["role"] != nil || answer["role_source"] != nil {
            problems.append("seat none must carry no role")
        }
        return problems
    }
}
