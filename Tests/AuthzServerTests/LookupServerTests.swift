// The lookups over the socket (RULES.md §8): the same pages as the engine, every bad input,
// a listing across a commit, consistency tokens and fail-closed answers, and authzctl
// printing the same bytes from the database and from the socket.

import AuthzClient
import AuthzEngine
import AuthzQuery
import AuthzServer
import AuthzStore
import AuthzWire
import AuthzWorkloads
import Foundation
import Testing
import WireTestSupport

/// A workspace with enough projects and users for several pages, and a known admin.
func lookupWorkspace() -> Workspace {
    var workspace = SyntheticWorkspace.generate(
        .init(users: 120, groups: 12, projects: 60, grantsPerProject: 4, assets: 9, seed: 21))
    workspace.users.append(User(id: "u-boss", email: "boss@example.com", origin: .manual, role: .admin))
    return workspace
}

/// Every page of a listing over the socket, from `token`.
func pagesOverTheSocket(
    _ client: SidecarClient, _ query: LookupQuery, from token: String = ""
) async throws -> [ListingPage] {
    var pages: [ListingPage] = []
    var token = token
    repeat {
        let page = try await client.page(query, token: token).get()
        pages.append(page)
        token = page.nextPageToken
    } while !token.isEmpty && pages.count < 10_000
    return pages
}

/// The same from the engine.
func pagesFromTheEngine(_ snapshot: Snapshot, _ query: LookupQuery) throws -> [ListingPage] {
    var pages: [ListingPage] = []
    var token = ""
    repeat {
        let page = try query.page(snapshot, token: token).get()
        pages.append(page)
        token = page.nextPageToken
    } while !token.isEmpty && pages.count < 10_000
    return pages
}

@Suite("Lookups over the socket")
struct LookupServerTests {
    @Test func everyPageIsTheEnginesPage() async throws {
        try await withServer(workspace: lookupWorkspace()) { server in
            let client = try await server.client()
            let local = try SnapshotLoader.load(path: server.configuration.databasePath)
            var queries: [LookupQuery] = []
            for user in ["u-boss", "u-000001", "u-000007", "u-000042", "", "u-nobody"] {
                queries.append(LookupQuery(.projects(user: user), pageSize: 7))
                queries.append(LookupQuery(.projects(user: user), minLevel: .canEdit, pageSize: 3))
                queries.append(LookupQuery(.assets(user: user, project: nil), pageSize: 2))
                queries.append(LookupQuery(.assets(user: user, project: "p-000003"), minAccess: .use))
            }
            for project in ["p-000000", "p-000005", "p-000017", "p-nowhere"] {
                queries.append(LookupQuery(.projectAccess(project: project), pageSize: 25))
                queries.append(LookupQuery(.projectAccess(project: project), minLevel: .canExplore))
            }
            for query in queries {
                let remote = try await pagesOverTheSocket(client, query)
                let expected = try pagesFromTheEngine(local, query)
                // Byte-identical pages, tokens included (same snapshot version).
                #expect(remote == expected, "\(query.json)")
                #expect(remote.allSatisfy { $0.snapshotVersion == local.version && !$0.snapshotChanged })
            }
            // The typed calls see the same.
            let typed = try await client.listProjects(user: "u-boss", minLevel: .canViewApp, pageSize: 5)
            #expect(typed.result.items.map(\.id) == ["p-000000", "p-000001", "p-000002", "p-000003", "p-000004"])
            #expect(typed.result.items.allSatisfy { $0.level >= .canExplore }, "the admin floor")
            #expect(typed.result.pageSize == 5 && !typed.result.pageSizeClamped && !typed.result.nextPageToken.isEmpty)
            let clamped = try await client.listProjectAccess(project: "p-000000", pageSize: 50_000)
            #expect(clamped.result.pageSize == 1_000 && clamped.result.pageSizeClamped)
            let assets = try await client.listAssets(user: "u-nobody", project: "p-nowhere")
            #expect(assets.result.items.isEmpty && assets.result.reason == .unknownProject)
            await client.close()
        }
    }

    /// Sends one raw lookup payload on `connection` and returns its response.
    func ask(_ connection: RawConnection, callId: UInt64, _ field: UInt64, _ message: [UInt8]) async throws -> WireResponse {
        try connection.send(frame(PB.varint(1, callId) + PB.bytes(field, message)))
        let response = try #require(await connection.readResponse())
        #expect(response.callId == callId)
        return response
    }

    @Test func everyBadInputIsInvalidAndTheConnectionStaysUsable() async throws {
        try await withServer(workspace: lookupWorkspace()) { server in
            let client = try await server.client()
            let connection = try RawConnection(path: server.socketPath)
            let first = try await client.listProjects(user: "u-boss", pageSize: 2)
            let token = first.result.nextPageToken
            var forged = Array(token.utf8)
            forged[forged.count / 2] = forged[forged.count / 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            let cases: [(UInt64, [UInt8], String)] = [
                // Ids: a NUL (named, not truncated), a bad byte, too long, an empty project.
                (17, PB.bytes(1, Array("u-boss".utf8) + [0, 0x41]), "list_projects.user: byte 6 of the id is 0x00"),
                (18, PB.bytes(1, Array("p-000001".utf8) + [0]), "list_project_access.project: byte 8 of the id is 0x00"),
                (19, PB.string(1, "u") + PB.bytes(2, [0x70, 0, 0x71]), "list_assets.project: byte 1 of the id is 0x00"),
                (19, PB.bytes(1, [0x75, 0x20]), "list_assets.user: byte 1 of the id is 0x20"),
                (17, PB.string(1, String(repeating: "u", count: 129)), "list_projects.user: the id is longer than 128 bytes"),
                (18, PB.varint(2, 3), "list_project_access.project: the id is empty"),
                // Minimums below the least, unknown minimums.
                (17, PB.string(1, "u-boss") + PB.varint(2, 1), "list_projects.min_level: LEVEL_NONE is below LEVEL_CAN_VIEW_APP"),
                (18, PB.string(1, "p-000001") + PB.varint(2, 1), "list_project_access.min_level: LEVEL_NONE is below"),
                (19, PB.string(1, "u") + PB.varint(3, 1), "list_assets.min_access: ACCESS_NONE is below ACCESS_VIEW"),
                (17, PB.varint(2, 42), "list_projects.min_level: 42 is not a known Level value"),
                // Page tokens: malformed, oversized, forged, foreign (other user, level, listing).
                (17, PB.string(1, "u-boss") + PB.string(4, "garbage!"), "list_projects.page_token: malformed page token"),
                (17, PB.string(1, "u-boss") + PB.bytes(4, [0x41, 0, 0x41, 0x41]), "list_projects.page_token: malformed page token"),
                (17, PB.string(1, "u-boss") + PB.string(4, String(repeating: "A", count: 60_000)), "list_projects.page_token: malformed page token: 60000 characters"),
                (17, PB.string(1, "u-boss") + PB.bytes(4, forged), "list_projects.page_token: the page token is damaged or forged"),
                (17, PB.string(1, "u-000001") + PB.string(4, token), "list_projects.page_token: the page token belongs to another list_projects listing"),
                (17, PB.string(1, "u-boss") + PB.varint(2, 4) + PB.string(4, token), "list_projects.page_token: the page token belongs to another list_projects listing"),
                (19, PB.string(1, "u-boss") + PB.string(5, token), "list_assets.page_token: the page token belongs to a list_projects listing, not list_assets"),
                (18, PB.string(1, "p-000001") + PB.string(4, token), "list_project_access.page_token: the page token belongs to a list_projects listing"),
            ]
            for (index, (field, message, expected)) in cases.enumerated() {
                let response = try await ask(connection, callId: UInt64(100 + index), field, message)
                #expect(response.status.code == .invalidArgument, "case \(index)")
                #expect(response.status.message.hasPrefix(expected), "case \(index): \(response.status.message)")
                #expect(response.answer == nil)
            }
            // The same connection and the token still work.
            let next = try await ask(connection, callId: 7, 17, PB.string(1, "u-boss") + PB.varint(3, 2) + PB.string(4, token))
            #expect(next.status.code == .ok)
            guard case .lookup(.projects(let listing)) = next.answer else { throw TestFailure("\(next)") }
            #expect(listing.items.map(\.id) == ["p-000002", "p-000003"])
            // A page size over the limit is clamped and says so; 0 is the default.
            let huge = try await ask(connection, callId: 8, 18, PB.string(1, "p-000001") + PB.varint(3, 4_000_000_000))
            guard case .lookup(.projectAccess(let clamped)) = huge.answer else { throw TestFailure("\(huge)") }
            #expect(clamped.pageSize == 1_000 && clamped.pageSizeClamped)
            let zero = try await ask(connection, callId: 9, 17, PB.string(1, "u-boss"))
            guard case .lookup(.projects(let standard)) = zero.answer else { throw TestFailure("\(zero)") }
            #expect(standard.pageSize == 100 && !standard.pageSizeClamped && standard.items.count == 60)
            #expect(try await client.seatType(user: "u-boss").result.seat == .paidAuthor, "other connections are served")
            await client.close()
        }
    }

    @Test func aListingAcrossACommitRepeatsAndSkipsNothingAndSaysSo() async throws {
        var workspace = lookupWorkspace()
        for index in workspace.projects.indices { workspace.projects[index].workspaceAccess = .canView }
        try await withServer(workspace: workspace, reloading: .init(), configure: noAutomaticReload) { server in
            let client = try await server.client()
            let path = server.configuration.databasePath
            let before = try SnapshotLoader.load(path: path)
            let user = try #require(before.userIds.ids.first { before.role(before.userKey($0)) == .editor })
            let query = LookupQuery(.projects(user: user), pageSize: 6)
            var pages = [try await client.page(query, token: "").get()]
            pages.append(try await client.page(query, token: pages[0].nextPageToken).get())
            let cursor = try #require(pages[1].items.last?.id)
            #expect(cursor == "p-000011")
            // One commit: drop projects on both sides of the cursor, unshare others, add some.
            let writer = try Writer(path)
            let version = try writer.commit(
                """
                BEGIN;
                DELETE FROM projects WHERE id IN ('p-000003', 'p-000030', 'p-000031');
                UPDATE projects SET workspace_access = 'none' WHERE id IN ('p-000040', 'p-000001');
                INSERT INTO projects (id, workspace_access) VALUES ('p-000012x', 'can_edit'), ('p-zzz', 'can_view'), ('p-000000a', 'can_view');
                COMMIT;
                """)
            #expect(try await client.reload() == version)
            let after = try SnapshotLoader.load(path: path)
            var token = pages[1].nextPageToken
            var index = 0
            while !token.isEmpty {
                let page = try await client.page(query, token: token).get()
                #expect(page.snapshotVersion == version)
                #expect(page.snapshotChanged == (index == 0), "only the page after the change says so")
                pages.append(page)
                token = page.nextPageToken
                index += 1
            }
            let listed = pages.flatMap { $0.items.map(\.id) }
            #expect(listed == listed.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }, "in id order")
            #expect(Set(listed).count == listed.count, "nothing repeated")
            // Up to the cursor the old version decided, after it the new one: so every project
            // the user could open in both versions is listed exactly once.
            let all = Set(before.projectIds.ids).union(after.projectIds.ids)
            for project in all {
                let old = before.effectivePermission(user: user, project: project).level > .none
                let new = after.effectivePermission(user: user, project: project).level > .none
                let beforeCursor = !cursor.utf8.lexicographicallyPrecedes(project.utf8)
                #expect(listed.contains(project) == (beforeCursor ? old : new), "\(project)")
                if old, new { #expect(listed.contains(project), "\(project) skipped") }
            }
            #expect(listed.contains("p-zzz") && listed.contains("p-000012x") && !listed.contains("p-000030"))
            #expect(!listed.contains("p-000000a"), "added before the cursor: the listing has passed it")
            #expect(listed.contains("p-000001") && listed.contains("p-000003"), "listed before the change")
            await client.close()
        }
    }

    @Test func lookupsWaitForTheirSnapshotVersionAndFailClosed() async throws {
        try await withServer(workspace: lookupWorkspace(), reloading: .init(), configure: noAutomaticReload) { server in
            let client = try await server.client()
            let writer = try Writer(server.configuration.databasePath)
            // Read your writes: the request itself makes the server check the database.
            let version = try writer.commit("INSERT INTO projects (id, workspace_access) VALUES ('p-brand-new', 'can_view')")
            let listing = try await client.listProjects(user: "u-boss", pageSize: 1_000, minSnapshotVersion: version)
            #expect(listing.snapshotVersion == version)
            #expect(listing.result.items.contains { $0.id == "p-brand-new" })
            // A version that never comes: FAILED_PRECONDITION at the deadline.
            let response = try await client.call(
                WireRequest(
                    callId: 1, minSnapshotVersion: version + 10, deadlineMs: 100,
                    method: .lookup(.projectAccess(.init(project: "p-brand-new")))))
            #expect(response.status.code == .failedPrecondition)
            #expect(response.snapshotVersion == version)
            await client.close()
        }
        // No snapshot at all: UNAVAILABLE, like a check.
        try await withServer(workspace: nil) { server in
            let client = try await server.client()
            let response = try await client.call(WireRequest(callId: 2, method: .lookup(.assets(.init(user: "u")))))
            #expect(response.status.code == .unavailable)
            await client.close()
        }
    }

    @Test func authzctlPrintsTheSameBytesFromTheDatabaseAndTheSocket() async throws {
        let authzctl = try #require(authzctlPath)
        try await withServer(workspace: lookupWorkspace()) { server in
            let path = server.configuration.databasePath
            let snapshot = try SnapshotLoader.load(path: path)
            let token = try snapshot.listProjects(user: "u-000001", pageSize: 3).nextPageToken
            let queries = [
                #"{"op":"list_projects","user":"u-000001","page_size":3}"#,
                #"{"op":"list_projects","user":"u-000001","page_size":3,"page_token":"\#(token)"}"#,
                #"{"op":"list_projects","user":"u-000001","all":true}"#,
                #"{"op":"list_projects","user":"u-000001","page_size":2,"page_token":"\#(token)","all":true}"#,
                #"{"op":"list_projects","user":"u-boss","min_level":"can_edit","page_size":5000}"#,
                #"{"op":"list_project_access","project":"p-000002","min_level":"can_view","all":true}"#,
                #"{"op":"list_project_access","project":"p-000002"}"#,
                #"{"op":"list_project_access","project":"p-gone","all":true}"#,
                #"{"op":"list_assets","user":"u-000004","project":"p-000002"}"#,
                #"{"op":"list_assets","user":"","all":true,"page_size":1}"#,
                #"{"op":"list_assets","user":"u-nobody","min_access":"use"}"#,
                #"{"op":"list_projects","user":"u-000002","page_token":"\#(token)"}"#,
                #"{"op":"list_projects","user":"u-000001","page_token":"\#(token.dropLast())"}"#,
                #"{"op":"list_projects","user":"u-000001","min_level":"none"}"#,
                #"{"op":"list_assets","user":"u","min_level":"can_view"}"#,
                #"{"op":"effective_permission","user":"u-000001","project":"p-000002"}"#,
            ]
            let input = server.directory.file("queries.jsonl")
            try (queries.joined(separator: "\n") + "\n").write(toFile: input, atomically: true, encoding: .utf8)
            let local = try runCommand(authzctl, ["check", "--db", path], stdin: input)
            let remote = try runCommand(authzctl, ["check", "--socket", server.socketPath], stdin: input)
            #expect(local.status == 0 && remote.status == 0, "\(local.stderr) \(remote.stderr)")
            #expect(local.stdout == remote.stdout)
            let lines = local.stdout.split(separator: "\n")
            #expect(lines.count > queries.count, "the `all` queries print one line per item")
            #expect(lines[0].hasPrefix(#"{"items":[{"id":"#) && lines[0].contains(#""next_page_token":""#))
            #expect(local.stdout.contains(#"{"reason":"unknown_project","snapshot_version":"#))
            #expect(local.stdout.contains(#""page_size_clamped":true"#))
            #expect(local.stdout.contains(#"{"error":"INVALID_ARGUMENT: list_projects.page_token: the page token belongs to another list_projects listing"#))
            #expect(local.stdout.contains(#"{"error":"field 'min_level': none is below can_view_app"#))
            #expect(local.stdout.contains(#"{"error":"unknown field 'min_level' for op 'list_assets'"}"#))
        }
    }
}

/// Runs a command with stdin read from `stdin` (a file); returns its status and output.
func runCommand(
    _ executable: String, _ arguments: [String], stdin: String
) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    guard let input = FileHandle(forReadingAtPath: stdin) else { throw TestFailure("cannot read \(stdin)") }
    process.standardInput = input
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try launch(process)
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}
