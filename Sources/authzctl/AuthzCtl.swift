import ArgumentParser
import AuthzClient
import AuthzDocument
import AuthzEngine
import AuthzQuery
import AuthzStore
import AuthzWire
import AuthzWorkloads
import Dispatch
import Synchronization

@main
struct AuthzCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authzctl",
        abstract: "Operate the authorization sidecar's workspace database and ask it questions.",
        discussion: """
            Write commands (import, apply, demo) print the new snapshot version on stdout: use it \
            as a consistency token. Diagnostics go to stderr.
            """,
        subcommands: [
            Import.self, Apply.self, Export.self, Check.self, Status.self, Reload.self, Demo.self, Generate.self,
            LogRetention.self,
        ]
    )
}

struct DatabaseOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Path of the SQLite workspace database.", valueName: "path"))
    var db: String
}

// MARK: - import

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the workspace in the database equal to a workspace document.",
        discussion: """
            Creates and migrates the database if needed. The document is validated first: if it \
            is invalid, every problem is printed to stderr as `path: reason`, nothing is \
            changed and the exit status is 1. Then only the rows that differ from the stored \
            ones are inserted, updated and deleted (matched by id), in one transaction: the \
            snapshot version and the change log grow by the rows that changed, and importing \
            the same document again changes nothing. The first import into an empty database, \
            a very large difference, or --replace rewrite everything instead (the version goes \
            up by one and the change log restarts there). On success the new snapshot version \
            is printed.
            """
    )

    @OptionGroup var database: DatabaseOption

    @Argument(help: ArgumentHelp("The workspace document (JSON); `-` reads stdin.", valueName: "file.json"))
    var file: String

    @Flag(help: "Replace everything (bulk write) instead of writing the difference.")
    var replace = false

    @Flag(help: "Always write the difference, however large.")
    var diff = false

    @Flag(help: "Print how long each phase took to stderr.")
    var timing = false

    func validate() throws {
        if replace && diff { throw ValidationError("give at most one of --replace and --diff") }
    }

    func run() throws {
        let bytes: [UInt8]
        do {
            bytes = try file == "-" ? IO.readAll(fd: 0) : IO.readFile(file)
        } catch {
            IO.printError("authzctl: cannot read \(file): \(error)")
            throw ExitCode(2)
        }
        let mode: WorkspaceStore.ImportMode = replace ? .replace : diff ? .diff : .automatic
        // An existing database is opened, locked and read while another thread decodes the
        // document (the two take about as long on a large workspace); a new one is created
        // only once the document is known to be valid.
        let decoding = BackgroundDecode(bytes)
        if !IO.fileExists(database.db), case .failure(let error) = decoding.wait() {
            reportInvalid(error)
            throw ExitCode(1)
        }
        let summary: WorkspaceStore.ImportSummary
        do {
            let store = try WorkspaceStore.open(path: database.db, create: true)
            summary = try store.importChanges(mode: mode) { () throws(StoreError) -> Workspace in
                switch decoding.wait() {
                case .success(let workspace): return workspace
                case .failure: throw StoreError(code: .invalidWorkspace([]), message: "the document is not valid")
                }
            }
        } catch {
            if case .failure(let error) = decoding.wait() {
                reportInvalid(error)
            } else {
                IO.printError("authzctl: \(error)")
                for issue in error.issues { IO.printError("  \(issue)") }
            }
            throw ExitCode(1)
        }
        guard case .success(let workspace) = decoding.wait() else { throw ExitCode(1) }
        let how =
            summary.replaced
            ? "replaced everything"
            : "wrote \(summary.rowsWritten) changed row\(summary.rowsWritten == 1 ? "" : "s") (version +\(summary.version - summary.previousVersion))"
        if timing {
            IO.printError("decode (on its own thread): \(decoding.seconds) s")
            for phase in summary.phases { IO.printError("\(phase.name): \(phase.seconds) s") }
        }
        IO.printError("imported \(workspace.users.count) users, \(workspace.groups.count) groups, \(workspace.assets.count) assets, \(workspace.projects.count) projects into \(database.db): \(how)")
        print(summary.version)
    }
}

extension Import {
    func reportInvalid(_ error: DocumentError) {
        IO.printError("authzctl: \(file) is not a valid workspace document (\(error.issues.count) problem\(error.issues.count == 1 ? "" : "s")):")
        for issue in error.issues { IO.printError("  \(issue)") }
    }
}

/// Decodes a workspace document on a thread of its own; `wait()` blocks until it is done.
final class BackgroundDecode: Sendable {
    private let state = Mutex<(result: Result<Workspace, DocumentError>?, seconds: Double)>((nil, 0))
    private let done = DispatchSemaphore(value: 0)

    init(_ bytes: [UInt8]) {
        DispatchQueue.global().async { [self] in
            let start = ContinuousClock.now
            let result = Result { () throws(DocumentError) in try WorkspaceDocument.decode(bytes) }
            let elapsed = ContinuousClock.now - start
            state.withLock {
                $0 = (result, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
            }
            done.signal()
        }
    }

    /// The decoded workspace or the document's problems.
    func wait() -> Result<Workspace, DocumentError> {
        if let result = state.withLock({ $0.result }) { return result }
        done.wait()
        done.signal()  // for the next caller
        return state.withLock { $0.result } ?? .failure(DocumentError(issues: []))
    }

    var seconds: Double { state.withLock { $0.seconds } }
}

// MARK: - apply

struct Apply: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply JSON Lines of fine-grained operations to the workspace in one transaction.",
        discussion: """
            One operation per line, e.g. {"op":"set_role","user":"u-ada","role":"editor"}; the \
            README lists every operation. Each is checked with the document's rules against \
            the state the lines before it leave (so a line may use a user created on an \
            earlier one). If any line has a problem, every problem is printed to stderr as \
            `line N: path: reason`, nothing is changed and the exit status is 1. Otherwise all \
            are applied in one transaction and the new snapshot version is printed.
            """
    )

    @OptionGroup var database: DatabaseOption

    @Argument(help: ArgumentHelp("The operations (JSON Lines); `-` or nothing reads stdin.", valueName: "file.jsonl"))
    var file: String = "-"

    @Flag(help: "Print how long reading and applying the operations took to stderr.")
    var timing = false

    func run() throws {
        let bytes: [UInt8]
        do {
            bytes = try file == "-" ? IO.readAll(fd: 0) : IO.readFile(file)
        } catch {
            IO.printError("authzctl: cannot read \(file): \(error)")
            throw ExitCode(2)
        }
        let start = ContinuousClock.now
        let (operations, issues) = OperationReader.read(bytes)
        let parsed = ContinuousClock.now
        let summary: WorkspaceStore.ApplySummary
        do {
            let store = try WorkspaceStore.open(path: database.db, create: false)
            let opened = ContinuousClock.now
            summary = try store.apply(operations, issues: issues)
            if timing {
                IO.printError("read \(operations.count) operations: \(parsed - start); open: \(opened - parsed); apply and commit: \(ContinuousClock.now - opened)")
            }
        } catch {
            let problems = error.operationIssues
            if problems.isEmpty {
                IO.printError("authzctl: \(error)")
            } else {
                IO.printError("authzctl: \(problems.count) problem\(problems.count == 1 ? "" : "s"); nothing was changed:")
                for issue in problems { IO.printError("  \(issue)") }
            }
            throw ExitCode(1)
        }
        IO.printError("applied \(summary.operations) operation\(summary.operations == 1 ? "" : "s") to \(database.db) (version +\(summary.version - summary.previousVersion))")
        print(summary.version)
    }
}

// MARK: - log-retention

struct LogRetention: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log-retention",
        abstract: "Show or set how much of the change log the database keeps, and prune it.",
        discussion: """
            The change log records every row change (version, table, key, operation, time) so \
            that a reader can ask what changed since its version. The database keeps the \
            changes of the last --keep-versions versions and of the last --keep-age (both \
            limits apply; `none` removes one; defaults 100000 versions and 7d). Every import \
            and apply prunes; so does this command. Prints the log's status as JSON: a reader \
            at a version below `floor` must load everything.
            """
    )

    @OptionGroup var database: DatabaseOption

    @Option(help: ArgumentHelp("Keep the changes of this many versions (or `none`).", valueName: "n"))
    var keepVersions: String?

    @Option(help: ArgumentHelp("Keep the changes of this long: 90s, 30m, 12h, 7d, or milliseconds (or `none`).", valueName: "age"))
    var keepAge: String?

    static func setting(_ text: String?, name: String, parse: (String) -> Int64?) throws -> RetentionSetting {
        guard let text else { return .unchanged }
        if text == "none" { return .unlimited }
        guard let value = parse(text), value >= 0 else { throw ValidationError("--\(name): cannot read '\(text)'") }
        return .limit(value)
    }

    static func milliseconds(_ text: String) -> Int64? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Int64(text.dropLast(suffix.count)) else { continue }
            let (product, overflow) = value.multipliedReportingOverflow(by: factor)
            return overflow ? nil : product
        }
        return Int64(text)
    }

    func run() throws {
        let versions = try Self.setting(keepVersions, name: "keep-versions") { Int64($0) }
        let age = try Self.setting(keepAge, name: "keep-age", parse: Self.milliseconds)
        let status = try withStore(database.db) { (store) throws(StoreError) in
            try store.setChangeLogRetention(keepVersions: versions, keepMilliseconds: age)
        }
        let object: JSONObject = [
            "version": .number(Double(status.version)),
            "floor": .number(Double(status.floor)),
            "rows": .number(Double(status.rows)),
            "keep_versions": status.keepVersions.map { .number(Double($0)) } ?? .null,
            "keep_ms": status.keepMilliseconds.map { .number(Double($0)) } ?? .null,
        ]
        print(JSONValue.object(object).serialized(pretty: true))
    }
}

/// Opens the store and runs `body`, turning store errors into a message and exit status 1.
func withStore<T>(_ path: String, _ body: (WorkspaceStore) throws(StoreError) -> T) throws -> T {
    do {
        let store = try WorkspaceStore.open(path: path, create: true)
        return try body(store)
    } catch {
        IO.printError("authzctl: \(error)")
        for issue in error.issues { IO.printError("  \(issue)") }
        throw ExitCode(1)
    }
}

// MARK: - export

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the workspace in the database as a workspace document.",
        discussion: "Import → export → import is a fixed point. The snapshot version goes to stderr."
    )

    @OptionGroup var database: DatabaseOption

    @Flag(help: "Print the document on one line.")
    var compact = false

    func run() throws {
        let (workspace, version) = try withStore(database.db) { (store) throws(StoreError) in try store.exportWorkspace() }
        IO.printError("snapshot version \(version)")
        print(WorkspaceDocument.encode(workspace, pretty: !compact))
    }
}

// MARK: - check

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer JSON Lines queries on stdin, one JSON answer per line on stdout.",
        discussion: """
            Queries: {"op":"effective_permission","user":"u","project":"p"}, \
            {"op":"can_use","user":"u","asset":"a","project":"p"} (project optional), \
            {"op":"seat_type","user":"u"}, {"op":"capabilities","user":"u"}; lookups \
            {"op":"list_projects","user":"u"}, {"op":"list_project_access","project":"p"}, \
            {"op":"list_assets","user":"u","project":"p"} (project optional), each with optional \
            "min_level" (or "min_access"), "page_size", "page_token" and "all": one line per \
            page, or with "all":true one line per item of every page. \
            With --db the snapshot is loaded once, read-only, and answered locally; with \
            --socket every query is asked of a running authzd (pipelined on one connection). \
            Both print identical lines. A malformed line gets {"error":"…"} and the rest go \
            on. Blank lines are skipped.
            """
    )

    @Option(name: .long, help: ArgumentHelp("Answer from this SQLite database.", valueName: "path"))
    var db: String?

    @Option(name: .long, help: ArgumentHelp("Ask the authzd listening on this Unix socket.", valueName: "path"))
    var socket: String?

    func validate() throws {
        guard (db == nil) != (socket == nil) else { throw ValidationError("give exactly one of --db and --socket") }
    }

    func run() async throws {
        if let socket {
            try await answerOverSocket(socket)
        } else if let db {
            try await answerLocally(db)
        }
    }

    private func answerLocally(_ path: String) async throws {
        let snapshot: Snapshot
        do {
            snapshot = try SnapshotLoader.load(path: path)
        } catch {
            IO.printError("authzctl: \(error)")
            throw ExitCode(1)
        }
        for warning in snapshot.warnings { IO.printError("warning: \(warning)") }
        var output = IO.Output(fd: 1)
        var lines = IO.LineReader(fd: 0)
        while let chunk = lines.nextChunk() {
            for line in chunk {
                let answers: [JSONValue]
                switch Result(catching: { () throws(QueryError) in try Question(line: line) }) {
                case .success(.check(let query)): answers = [Answer(query, snapshot: snapshot).json]
                case .success(.lookup(let lookup)): answers = await lookup.lines { lookup.page(snapshot, token: $0) }
                case .failure(let error): answers = [errorLine(error.message)]
                }
                for answer in answers {
                    answer.append(to: &output.buffer)
                    output.buffer.append(UInt8(ascii: "\n"))
                }
            }
            output.flush()
        }
        output.flush()
    }

    private func answerOverSocket(_ path: String) async throws {
        let client: SidecarClient
        do {
            client = try await SidecarClient.connect(socketPath: path)
        } catch {
            IO.printError("authzctl: cannot connect to \(path): \(error)")
            throw ExitCode(1)
        }
        var output = IO.Output(fd: 1)
        var pending: [Result<Question, QueryError>] = []
        // Each input chunk's queries are sent together (pipelined) and printed in order; a
        // lookup following its pages asks for them one after the other.
        func answerPending() async {
            let answers = await withTaskGroup(of: (Int, [JSONValue]).self) { group in
                for (index, parsed) in pending.enumerated() {
                    group.addTask {
                        switch parsed {
                        case .failure(let error):
                            return (index, [errorLine(error.message)])
                        case .success(.lookup(let lookup)):
                            return (index, await lookup.lines { await client.page(lookup, token: $0) })
                        case .success(.check(let query)):
                            do {
                                return (index, [try await client.answer(query).json])
                            } catch let error as AuthzClientError {
                                return (index, [errorLine("\(error.code.name): \(error.message)")])
                            } catch {
                                return (index, [errorLine("\(error)")])
                            }
                        }
                    }
                }
                var answers = [[JSONValue]](repeating: [], count: pending.count)
                for await (index, answer) in group { answers[index] = answer }
                return answers
            }
            for answer in answers.joined() {
                answer.append(to: &output.buffer)
                output.buffer.append(UInt8(ascii: "\n"))
            }
            pending.removeAll(keepingCapacity: true)
            output.flush()
        }
        var lines = IO.LineReader(fd: 0)
        while let chunk = lines.nextChunk() {
            for line in chunk {
                pending.append(Result { () throws(QueryError) in try Question(line: line) })
            }
            await answerPending()
        }
        await client.close()
    }
}

// MARK: - status

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the status of a running authzd as JSON.",
        discussion: """
            Snapshot version and age, counts, the last load error, uptime, connections and \
            requests served. Exit status 1 if the daemon cannot be asked. With --ready (for \
            readiness and startup probes), exit status 3 after printing the status unless a \
            snapshot is loaded, that is unless the daemon answers checks: while it has never \
            loaded the database it answers them UNAVAILABLE.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The authzd Unix socket.", valueName: "path"))
    var socket: String

    @Flag(help: "Exit with status 3 unless a snapshot is loaded (a readiness check).")
    var ready = false

    func run() async throws {
        let status: WireResponse.StatusResult
        do {
            let client = try await SidecarClient.connect(socketPath: socket)
            status = try await client.status()
            await client.close()
        } catch {
            IO.printError("authzctl: \(socket): \(error)")
            throw ExitCode(1)
        }
        let object: JSONObject = [
            "snapshot_version": .number(Double(status.snapshotVersion)),
            "loaded_at_unix_ms": .number(Double(status.loadedAtUnixMs)),
            "users": .number(Double(status.users)),
            "groups": .number(Double(status.groups)),
            "assets": .number(Double(status.assets)),
            "projects": .number(Double(status.projects)),
            "grants": .number(Double(status.grants)),
            "last_load_error": .string(status.lastLoadError),
            "last_load_attempt_unix_ms": .number(Double(status.lastLoadAttemptUnixMs)),
            "stale_for_ms": .number(Double(status.staleForMs)),
            "uptime_ms": .number(Double(status.uptimeMs)),
            "connections_open": .number(Double(status.connectionsOpen)),
            "requests_served": .number(Double(status.requestsServed)),
            "last_load_method": .string(status.lastLoadMethod),
            "watching": .bool(status.watching),
        ]
        print(JSONValue.object(object).serialized(pretty: true))
        if ready && status.loadedAtUnixMs == 0 {
            let reason = status.lastLoadError.isEmpty ? "no load attempted yet" : "last load error: \(status.lastLoadError)"
            IO.printError("authzctl: not ready: \(socket) has no workspace snapshot loaded (\(reason))")
            throw ExitCode(3)
        }
    }
}

// MARK: - reload

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a running authzd reload its snapshot now; print the version it serves.",
        discussion: """
            Loads the database even if its version did not change. Allowed to the daemon's own \
            Unix user and root (others get PERMISSION_DENIED). Exit status 1 if the reload \
            failed (the daemon keeps serving its last good snapshot; the error says which).
            """
    )

    @Option(name: .long, help: ArgumentHelp("The authzd Unix socket.", valueName: "path"))
    var socket: String

    func run() async throws {
        do {
            let client = try await SidecarClient.connect(socketPath: socket)
            let version = try await client.reload()
            await client.close()
            print(version)
        } catch {
            IO.printError("authzctl: \(socket): \(error)")
            throw ExitCode(1)
        }
    }
}

// MARK: - demo

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the demo workspace (Acme Analytics) into the database.",
        discussion: "Replaces any workspace already there. Prints the new snapshot version."
    )

    @OptionGroup var database: DatabaseOption

    func run() throws {
        let workspace = DemoWorkspace.workspace
        let version = try withStore(database.db) { (store) throws(StoreError) in try store.importWorkspace(workspace) }
        IO.printError("wrote the demo workspace (\(workspace.users.count) users, \(workspace.groups.count) groups, \(workspace.assets.count) assets, \(workspace.projects.count) projects) into \(database.db)")
        print(version)
    }
}

// MARK: - generate

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a deterministic synthetic workspace document for load tests.",
        discussion: """
            The same options always give the same document. Shapes are realistic: skewed group \
            sizes with a few huge groups, directory-synced roles, guests, ~3% inactive users, \
            assets on most projects. `--grants-per-project` is a mean.
            """
    )

    @Option(help: "Number of users.") var users: Int
    @Option(help: "Random seed.") var seed: UInt64
    @Option(help: "Number of custom groups (default: users / 10).") var groups: Int?
    @Option(help: "Number of projects (default: users / 2).") var projects: Int?
    @Option(help: "Mean grants per project.") var grantsPerProject: Int = 20
    @Option(help: "Number of assets (default: max(8, groups / 50)).") var assets: Int?
    @Flag(help: "Pretty-print the document.") var pretty = false

    func validate() throws {
        guard users > 0 else { throw ValidationError("--users must be at least 1") }
        if let groups, groups < 2 { throw ValidationError("--groups must be at least 2 (two are mapped directory groups)") }
        if let projects, projects < 0 { throw ValidationError("--projects must not be negative") }
        if let assets, assets < 1 { throw ValidationError("--assets must be at least 1") }
        guard grantsPerProject >= 0 else { throw ValidationError("--grants-per-project must not be negative") }
    }

    func run() throws {
        let parameters = SyntheticWorkspace.Parameters(
            users: users, groups: groups ?? max(2, users / 10), projects: projects ?? users / 2,
            grantsPerProject: grantsPerProject, assets: assets, seed: seed
        )
        var output = IO.Output(fd: 1)
        WorkspaceDocument.encodeValue(SyntheticWorkspace.generate(parameters)).append(to: &output.buffer, pretty: pretty)
        output.buffer.append(UInt8(ascii: "\n"))
        output.flush()
    }
}
