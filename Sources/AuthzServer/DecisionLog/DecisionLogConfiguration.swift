// What the decision log records and where (authzd --decision-log and its filters).

/// The decision log's settings. The log is JSON Lines: one line per decision answered (each
/// check of a batch is a decision of its own), written by a background thread from bounded
/// per-loop buffers; see `DecisionLog`.
public struct DecisionLogConfiguration: Sendable, Equatable {
    public enum Destination: Sendable, Equatable {
        /// A file, appended to and rotated by size.
        case file(String)
        /// The process's standard output (`-`): never rotated.
        case standardOutput
    }

    public var destination: Destination
    /// The fraction of decisions recorded, in 0...1 (1: every one). Sampling happens before
    /// anything is copied, so a small rate costs almost nothing.
    public var sampleRate: Double
    /// Record only denials: a yes/no question answered no, an answer of `none`, or an error.
    public var denialsOnly: Bool
    /// The methods recorded; nil: all of them.
    public var methods: Set<DecisionMethod>?
    /// Rotate the file when it would grow past this many bytes; nil: never.
    public var maxFileBytes: Int?
    /// Rotated files kept beside the log: `PATH.1` (the newest) … `PATH.N`.
    public var keepFiles: Int
    /// Decisions buffered per event loop; when a buffer is full, new decisions are dropped
    /// (and counted), never waited for.
    public var bufferSize: Int
    /// How often the writer drains the buffers.
    public var flushInterval: Duration

    public init(
        destination: Destination, sampleRate: Double = 1, denialsOnly: Bool = false,
        methods: Set<DecisionMethod>? = nil, maxFileBytes: Int? = 100 << 20, keepFiles: Int = 5,
        bufferSize: Int = 16384, flushInterval: Duration = .milliseconds(20)
    ) {
        self.destination = destination
        self.sampleRate = sampleRate
        self.denialsOnly = denialsOnly
        self.methods = methods
        self.maxFileBytes = maxFileBytes
        self.keepFiles = keepFiles
        self.bufferSize = bufferSize
        self.flushInterval = flushInterval
    }

    /// The destination named on the command line: `-` is standard output.
    public static func destination(_ text: String) -> Destination {
        text == "-" ? .standardOutput : .file(text)
    }

    /// Parses a comma-separated list of method names (`can_use,effective_permission`).
    public static func methods(_ text: String) throws(ConfigurationError) -> Set<DecisionMethod> {
        var methods: Set<DecisionMethod> = []
        for name in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name = name.trimmingSpaces()
            guard let method = DecisionMethod(name: name) else {
                throw ConfigurationError(
                    "'\(name)' is not a method the decision log records (one of: \(DecisionMethod.allCases.map(\.name).joined(separator: ", ")))"
                )
            }
            methods.insert(method)
        }
        return methods
    }

    /// The problems with these settings, each a sentence; empty when they are usable.
    public var problems: [String] {
        var problems: [String] = []
        if !(sampleRate >= 0 && sampleRate <= 1) { problems.append("the sample rate must be between 0 and 1, not \(sampleRate)") }
        if let maxFileBytes, maxFileBytes < 4096 { problems.append("the rotation size must be at least 4096 bytes, not \(maxFileBytes)") }
        if keepFiles < 0 || keepFiles > 1000 { problems.append("the number of rotated files kept must be 0 to 1000, not \(keepFiles)") }
        if bufferSize < 16 || bufferSize > 1 << 22 { problems.append("the buffer must hold 16 to 4194304 decisions, not \(bufferSize)") }
        if case .file(let path) = destination, path.isEmpty { problems.append("the decision log path is empty") }
        if methods?.isEmpty == true { problems.append("the list of methods to record is empty") }
        return problems
    }
}

/// The methods whose answers are decisions.
public enum DecisionMethod: UInt8, CaseIterable, Sendable, Hashable {
    case canUse = 0, effectivePermission, seatType, capabilities, listProjects, listProjectAccess, listAssets

    public var name: String {
        switch self {
        case .canUse: "can_use"
        case .effectivePermission: "effective_permission"
        case .seatType: "seat_type"
        case .capabilities: "capabilities"
        case .listProjects: "list_projects"
        case .listProjectAccess: "list_project_access"
        case .listAssets: "list_assets"
        }
    }

    public init?(name: some StringProtocol) {
        guard let method = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = method
    }

    /// The JSON names of the ids a decision of this method records, in order.
    var idNames: [String] {
        switch self {
        case .canUse: ["user", "asset", "project"]
        case .effectivePermission: ["user", "project"]
        case .seatType, .capabilities: ["user"]
        case .listProjects: ["user"]
        case .listProjectAccess: ["project"]
        case .listAssets: ["user", "project"]
        }
    }
}

extension StringProtocol {
    fileprivate func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
