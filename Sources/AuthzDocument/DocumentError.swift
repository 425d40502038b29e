// Problems found in a workspace document or model.

/// One problem: where (a JSON path such as `users[1].role`, `workspace.plan` or `$` for
/// the document itself) and why.
public struct ValidationIssue: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The JSON path of the offending field or entry.
    public var path: String
    /// What is wrong, e.g. "unknown role 'wizard' (expected one of admin, manager, ...)".
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    /// "users[1].role: unknown role 'wizard' (expected one of ...)".
    public var description: String { "\(path): \(reason)" }
}

/// A workspace document was rejected: every problem found, in document order.
public struct DocumentError: Error, Sendable, Equatable, CustomStringConvertible {
    public var issues: [ValidationIssue]

    public init(issues: [ValidationIssue]) {
        self.issues = issues
    }

    /// The paths of the issues, in order.
    public var paths: [String] { issues.map(\.path) }

    public var description: String {
        switch issues.count {
        case 0:
            return "invalid workspace document"
        case 1:
            return "invalid workspace document: \(issues[0])"
        default:
            var text = "invalid workspace document: \(issues.count) problems"
            for issue in issues {
                text += "\n  \(issue)"
            }
            return text
        }
    }
}

/// Collects issues.
struct IssueList {
    private(set) var issues: [ValidationIssue] = []

    var isEmpty: Bool { issues.isEmpty }

    mutating func add(_ path: String, _ reason: String) {
        issues.append(ValidationIssue(path: path, reason: reason))
    }

    /// The issues without exact repeats, grouped by document section and entry (top-level
    /// fields, `workspace`, `users`, `groups`, `assets`, `projects`; then by entry index),
    /// keeping the order in which they were found within an entry.
    func ordered() -> [ValidationIssue] {
        var seen = Set<ValidationIssue>()
        var keyed: [(section: Int, entry: Int, order: Int, issue: ValidationIssue)] = []
        for (order, issue) in issues.enumerated() where seen.insert(issue).inserted {
            let (section, entry) = Self.sortKey(issue.path)
            keyed.append((section, entry, order, issue))
        }
        keyed.sort { ($0.section, $0.entry, $0.order) < ($1.section, $1.entry, $1.order) }
        return keyed.map(\.issue)
    }

    private static func sortKey(_ path: String) -> (Int, Int) {
        let utf8 = path.utf8
        let nameEnd = utf8.firstIndex { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "[") } ?? utf8.endIndex
        let section: Int
        switch path[..<nameEnd] {
        case "$": section = 0
        case "workspace": section = 2
        case "users": section = 3
        case "groups": section = 4
        case "assets": section = 5
        case "projects": section = 6
        default: section = 1
        }
        var entry = -1
        if nameEnd < utf8.endIndex, utf8[nameEnd] == UInt8(ascii: "[") {
            var value = 0
            var index = utf8.index(after: nameEnd)
            while index < utf8.endIndex, let digit = asciiDigit(utf8[index]), value < 100_000_000 {
                value = value * 10 + digit
                index = utf8.index(after: index)
            }
            entry = value
        }
        return (section, entry)
    }

    private static func asciiDigit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }
}
