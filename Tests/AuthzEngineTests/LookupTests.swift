import AuthzEngine
import AuthzWorkloads
import CAllocCounter
import Testing

/// Byte order of ids, the order every listing follows (RULES.md §8).
private func byteOrder(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

/// A random workspace whose ids are not in generation order: a third lose their zero padding
/// (`u-12` sorts after `u-100`), some start upper-case (before every lower-case id in byte
/// order), and every list is shuffled, so index order = id order is really tested.
func scrambledWorkspace(_ seed: UInt64, users: Int? = nil, projects: Int? = nil) -> Workspace {
    var rng = SplitMix64(seed: seed &* 0x51ed)
    var workspace = SyntheticWorkspace.generate(SyntheticWorkspace.Parameters(
        users: users ?? 30 + rng.below(50), groups: 5 + rng.below(10), projects: projects ?? 15 + rng.below(25),
        grantsPerProject: 1 + rng.below(5), assets: 3 + rng.below(8), seed: seed
    ))
    func rename(_ id: String) -> String {
        // "x-000123": prefix letter, dash, digits.
        let parts = id.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let number = Int(parts[1]) else { return id }
        var prefix = String(parts[0])
        if number % 3 == 1 { prefix = prefix.uppercased() }
        return number % 2 == 1 ? "\(prefix)-\(number)" : "\(prefix)-\(parts[1])"
    }
    func renameGroup(_ id: String) -> String { BuiltinGroup(name: id) != nil ? id : rename(id) }
    for i in workspace.users.indices { workspace.users[i].id = rename(workspace.users[i].id) }
    for i in workspace.groups.indices {
        workspace.groups[i].id = rename(workspace.groups[i].id)
        workspace.groups[i].members = workspace.groups[i].members.map(rename)
    }
    for i in workspace.settings.directorySync.roleMappings.indices {
        workspace.settings.directorySync.roleMappings[i].group = rename(workspace.settings.directorySync.roleMappings[i].group)
    }
    for i in workspace.assets.indices {
        workspace.assets[i].id = rename(workspace.assets[i].id)
        workspace.assets[i].groups = workspace.assets[i].groups.map(renameGroup)
    }
    for i in workspace.projects.indices {
        workspace.projects[i].id = rename(workspace.projects[i].id)
        workspace.projects[i].owner = workspace.projects[i].owner.map(rename)
        workspace.projects[i].assets = workspace.projects[i].assets.map(rename)
        workspace.projects[i].grants = workspace.projects[i].grants.map { grant in
            switch grant.target {
            case .user(let id): Grant(.user(rename(id)), level: grant.level)
            case .group(let id): Grant(.group(rename(id)), level: grant.level)
            }
        }
    }
    workspace.users.shuffle(using: &rng)
    workspace.groups.shuffle(using: &rng)
    workspace.assets.shuffle(using: &rng)
    workspace.projects.shuffle(using: &rng)
    return workspace
}

/// One listed item, by id.
struct Listed: Equatable, CustomStringConvertible {
    var id: String
    var value: String
    var reason: Reason
    var description: String { "\(id):\(value):\(reason.name)" }
}

/// Every page of a listing concatenated, checking each page on the way.
func allPages<Entry>(
    pageSize: Int, maxPages: Int, _ page: (String) throws -> LookupPage<Entry>, _ listed: (Entry) -> Listed
) throws -> (items: [Listed], pages: Int, reason: Reason?) {
    var items: [Listed] = []
    var token = ""
    var pages = 0
    var reason: Reason?
    while true {
        let result = try page(token)
        pages += 1
        #expect(result.entries.count <= pageSize)
        #expect(result.pageSize == pageSize)
        #expect(!result.snapshotChanged)
        if pages == 1 { reason = result.reason } else { #expect(result.reason == reason) }
        items += result.entries.map(listed)
        token = result.nextPageToken
        if token.isEmpty { break }
        if pages > maxPages {
            Issue.record("more than \(maxPages) pages")
            break
        }
    }
    return (items, pages, reason)
}

@Suite("Lookups (RULES.md §8) on random workspaces")
struct LookupPropertyTests {
    static let seeds: [UInt64] = Array(1 ... 12)
    static let minLevels: [Level] = [.canViewApp, .canView, .canExplore, .canEdit, .fullAccess]

    @Test("ListProjects: all pages = EffectivePermission over all projects, every page size", arguments: seeds)
    func listProjectsMatchesEffectivePermission(seed: UInt64) throws {
        let workspace = scrambledWorkspace(seed)
        let snapshot = Snapshot(workspace: workspace, version: 3)
        let projects = workspace.projects.map(\.id).sorted(by: byteOrder)
        let users = workspace.users.map(\.id) + ["", "u-nobody"]
        for user in users {
            for minLevel in Self.minLevels {
                let expected = projects.compactMap { project -> Listed? in
                    let decision = snapshot.effectivePermission(user: user, project: project)
                    return decision.level >= minLevel ? Listed(id: project, value: decision.level.name, reason: decision.reason) : nil
                }
                let sizes = user.hasSuffix("1") || user.isEmpty ? Array(1 ... projects.count + 1) : [1, 2, 3, 5, 8, 0, 1_000]
                for pageSize in sizes {
                    let (items, pages, reason) = try allPages(pageSize: pageSize == 0 ? 100 : pageSize, maxPages: projects.count + 2) { token in
                        try snapshot.listProjects(user: user, minLevel: minLevel, pageSize: pageSize, pageToken: token)
                    } _: { Listed(id: snapshot.projectIds.id(at: $0.index), value: $0.level.name, reason: $0.reason) }
                    #expect(items == expected, "seed \(seed) user '\(user)' min \(minLevel.name) page size \(pageSize)")
                    let effective = pageSize == 0 ? 100 : pageSize
                    #expect(pages == max(1, (expected.count + effective - 1) / effective), "no empty trailing page (\(pages) pages)")
                    let single = snapshot.effectivePermission(user: user, project: projects[0]).reason
                    if single == .unknownUser || single == .userInactive {
                        #expect(reason == single)
                    } else {
                        #expect(reason == nil)
                    }
                }
            }
        }
    }

    @Test("ListProjectAccess: all pages = EffectivePermission over all users, every page size", arguments: seeds)
    func listProjectAccessMatchesEffectivePermission(seed: UInt64) throws {
        let workspace = scrambledWorkspace(seed)
        let snapshot = Snapshot(workspace: workspace, version: 3)
        let users = workspace.users.map(\.id).sorted(by: byteOrder)
        for project in workspace.projects.map(\.id) + ["p-nowhere"] {
            for minLevel in Self.minLevels {
                let expected = users.compactMap { user -> Listed? in
                    let decision = snapshot.effectivePermission(user: user, project: project)
                    return decision.level >= minLevel ? Listed(id: user, value: decision.level.name, reason: decision.reason) : nil
                }
                let sizes = project.hasSuffix("3") ? Array(1 ... users.count + 1) : [1, 2, 7, 0, 5_000]
                for pageSize in sizes {
                    let effective = pageSize == 0 ? 100 : min(pageSize, 1_000)
                    let (items, _, reason) = try allPages(pageSize: effective, maxPages: users.count + 2) { token in
                        try snapshot.listProjectAccess(project: project, minLevel: minLevel, pageSize: pageSize, pageToken: token)
                    } _: { Listed(id: snapshot.userIds.id(at: $0.index), value: $0.level.name, reason: $0.reason) }
                    #expect(items == expected, "seed \(seed) project '\(project)' min \(minLevel.name) page size \(pageSize)")
                    #expect(reason == (project == "p-nowhere" ? .unknownProject : nil))
                }
            }
        }
    }

    @Test("ListAssets: all pages = CanUse over all assets, with and without a project", arguments: seeds)
    func listAssetsMatchesCanUse(seed: UInt64) throws {
        let workspace = scrambledWorkspace(seed)
        let snapshot = Snapshot(workspace: workspace, version: 3)
        let assets = workspace.assets.map(\.id).sorted(by: byteOrder)
        let projects: [String?] = [nil, "p-nowhere"] + workspace.projects.map(\.id)
        for user in workspace.users.map(\.id) + ["", "u-nobody"] {
            for project in projects {
                for minAccess in [Access.view, .use] {
                    let expected = assets.compactMap { asset -> Listed? in
                        let decision = snapshot.canUse(user: user, asset: asset, project: project)
                        return decision.access >= minAccess ? Listed(id: asset, value: decision.access.name, reason: decision.reason) : nil
                    }
                    for pageSize in project == nil ? Array(1 ... assets.count + 1) : [1, 3, 0] {
                        let (items, _, reason) = try allPages(pageSize: pageSize == 0 ? 100 : pageSize, maxPages: assets.count + 2) { token in
                            try snapshot.listAssets(user: user, project: project, minAccess: minAccess, pageSize: pageSize, pageToken: token)
                        } _: { Listed(id: snapshot.assetIds.id(at: $0.index), value: $0.access.name, reason: $0.reason) }
                        #expect(items == expected, "seed \(seed) user '\(user)' project \(project ?? "-") min \(minAccess.name) page size \(pageSize)")
                        let single = snapshot.canUse(user: user, asset: assets[0], project: project).reason
                        if [.unknownUser, .userInactive, .unknownProject].contains(single) {
                            #expect(reason == single)
                        } else {
                            #expect(reason == nil)
                        }
                    }
                }
            }
        }
    }

    @Test("a listing across a snapshot change neither repeats nor skips an id present in both", arguments: seeds)
    func listingAcrossAChange(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed ^ 0x1157)
        let before = scrambledWorkspace(seed, users: 60, projects: 40)
        var after = before
        // Remove some projects, add others, change shares and grants.
        after.projects.removeAll { _ in rng.chance(0.2) }
        for i in 0 ..< 8 {
            after.projects.append(Project(id: "p-new-\(i)", workspaceAccess: .canView, publicAccess: i % 2 == 0 ? .canViewApp : .none))
        }
        for i in after.projects.indices where rng.chance(0.3) {
            after.projects[i].workspaceAccess = Level.allCases[rng.below(Level.allCases.count)]
        }
        let old = Snapshot(workspace: before, version: 10)
        let new = Snapshot(workspace: after, version: 11)
        let admin = before.users.first { user in old.seatType(user: user.id).role == .admin }?.id
        for user in [admin, before.users[0].id, ""].compactMap({ $0 }) {
            for switchAt in 1 ... 4 {
                var seen: [String] = []
                var token = ""
                var page = 0
                repeat {
                    let snapshot = page < switchAt ? old : new
                    let result = try snapshot.listProjects(user: user, pageSize: 3, pageToken: token)
                    #expect(result.snapshotChanged == (page == switchAt && !token.isEmpty))
                    #expect(result.snapshotVersion == snapshot.version)
                    seen += result.entries.map { snapshot.projectIds.id(at: $0.index) }
                    token = result.nextPageToken
                    page += 1
                } while !token.isEmpty && page < 100
                #expect(seen == seen.sorted(by: byteOrder) && Set(seen).count == seen.count, "ids in order, none repeated")
                // Every project listed by both snapshots is listed exactly once.
                let both = Set(before.projects.map(\.id)).intersection(after.projects.map(\.id)).filter { project in
                    old.effectivePermission(user: user, project: project).level > .none
                        && new.effectivePermission(user: user, project: project).level > .none
                }
                for project in both { #expect(seen.contains(project), "\(project) skipped (user '\(user)', switch at page \(switchAt))") }
            }
        }
    }
}

@Suite("Lookup pages, tokens and limits")
struct LookupPageTests {
    static let workspace: Workspace = {
        var workspace = scrambledWorkspace(99, users: 80, projects: 40)
        workspace.users.append(User(id: "u-the-admin", email: "admin@example.com", origin: .manual, role: .admin))
        workspace.users.append(User(id: "u-gone", email: "gone@example.com", origin: .manual, role: .editor, active: false))
        return workspace
    }()
    static let snapshot = Snapshot(workspace: workspace, version: 5)
    static let admin = "u-the-admin"

    @Test func pageSizeDefaultAndClamp() throws {
        var workspace = SyntheticWorkspace.generate(.init(users: 50, groups: 5, projects: 2_500, grantsPerProject: 1, seed: 3))
        workspace.users.append(User(id: "u-the-admin", email: "admin@example.com", origin: .manual, role: .admin))
        let big = Snapshot(workspace: workspace, version: 1)
        let admin = "u-the-admin"
        let defaultPage = try big.listProjects(user: admin)
        #expect(defaultPage.entries.count == LookupLimits.defaultPageSize && defaultPage.pageSize == 100 && !defaultPage.pageSizeClamped)
        let clamped = try big.listProjects(user: admin, pageSize: 5_000)
        #expect(clamped.entries.count == LookupLimits.maxPageSize && clamped.pageSize == 1_000 && clamped.pageSizeClamped)
        let exact = try big.listProjects(user: admin, pageSize: 1_000)
        #expect(!exact.pageSizeClamped && exact.entries == clamped.entries)
    }

    @Test func minimumsBelowTheLeastAreInvalid() {
        #expect(throws: LookupError(.minLevel, "none is below can_view_app, the least a listing can ask for")) {
            try Self.snapshot.listProjects(user: Self.admin, minLevel: .none)
        }
        #expect(throws: LookupError.self) { try Self.snapshot.listProjectAccess(project: "p-000001", minLevel: .none) }
        #expect(throws: LookupError(.minAccess, "none is below view, the least a listing can ask for")) {
            try Self.snapshot.listAssets(user: Self.admin, minAccess: .none)
        }
    }

    private func tokenError(_ body: () throws -> Void) -> LookupError? {
        do {
            try body()
            return nil
        } catch let error as LookupError {
            return error
        } catch {
            Issue.record("unexpected \(error)")
            return nil
        }
    }

    @Test func malformedForeignAndForgedTokensAreRejected() throws {
        let snapshot = Self.snapshot
        let first = try snapshot.listProjects(user: Self.admin, pageSize: 2)
        let token = first.nextPageToken
        #expect(!token.isEmpty)
        // The token continues its own listing.
        #expect(try snapshot.listProjects(user: Self.admin, pageSize: 2, pageToken: token).entries.count == 2)
        // Malformed: not base64url, a truncated token, an impossible length, a huge one.
        for bad in ["not a token!", String(token.dropLast(5)), "A", "AAAA", String(repeating: "A", count: 100_000), token + "\u{0}"] {
            let error = tokenError { _ = try snapshot.listProjects(user: Self.admin, pageSize: 2, pageToken: bad) }
            #expect(error?.field == .pageToken, "\(bad.prefix(20))")
            #expect(error?.message.contains("malformed") == true || error?.message.contains("damaged") == true, "\(error?.message ?? "")")
        }
        // Forged: every single-character change is caught by the checksum (or the format).
        let characters = Array(token)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for position in characters.indices {
            var forged = characters
            forged[position] = alphabet[(alphabet.firstIndex(of: forged[position])! + 17) % alphabet.count]
            let error = tokenError { _ = try snapshot.listProjects(user: Self.admin, pageSize: 2, pageToken: String(forged)) }
            #expect(error?.field == .pageToken, "a change at \(position) went through")
        }
        // Foreign: another user, another minimum, another listing.
        let otherUser = tokenError { _ = try snapshot.listProjects(user: "", pageSize: 2, pageToken: token) }
        #expect(otherUser?.message.contains("another list_projects listing") == true)
        let otherLevel = tokenError { _ = try snapshot.listProjects(user: Self.admin, minLevel: .canView, pageSize: 2, pageToken: token) }
        #expect(otherLevel?.message.contains("another list_projects listing") == true)
        let otherKind = tokenError { _ = try snapshot.listAssets(user: Self.admin, pageSize: 2, pageToken: token) }
        #expect(otherKind?.message == "the page token belongs to a list_projects listing, not list_assets; start the listing again without a token")
        let assetsToken = try snapshot.listAssets(user: Self.admin, pageSize: 1).nextPageToken
        let inProject = tokenError { _ = try snapshot.listAssets(user: Self.admin, project: "p-000002", pageSize: 1, pageToken: assetsToken) }
        #expect(inProject?.field == .pageToken)
        // The page size may change between pages.
        #expect(try snapshot.listProjects(user: Self.admin, pageSize: 7, pageToken: token).entries.count == 7)
    }

    @Test func unknownAndInactiveSubjectsListNothingAndSaySo() throws {
        let snapshot = Self.snapshot
        let inactive = "u-gone"
        #expect(try snapshot.listProjects(user: "u-ghost").reason == .unknownUser)
        #expect(try snapshot.listProjects(user: inactive).entries.isEmpty)
        #expect(try snapshot.listProjects(user: inactive).reason == .userInactive)
        #expect(try snapshot.listProjectAccess(project: "p-ghost").reason == .unknownProject)
        #expect(try snapshot.listAssets(user: "u-ghost").reason == .unknownUser)
        // RULES.md §5 step 1: an unknown project is answered before anything about the user.
        #expect(try snapshot.listAssets(user: "u-ghost", project: "p-ghost").reason == .unknownProject)
        #expect(try snapshot.listAssets(user: Self.admin, project: "p-ghost").entries.isEmpty)
        #expect(try snapshot.listProjects(user: "").reason == nil)
    }

    @Test func duplicateIdsAreListedOnce() throws {
        var workspace = Workspace(settings: WorkspaceSettings(plan: .enterprise), users: [
            User(id: "u-b", email: "b@x.io", origin: .manual, role: .admin),
            User(id: "u-a", email: "a@x.io", origin: .manual, role: .editor),
            User(id: "u-b", email: "b2@x.io", origin: .manual, role: .guest),
        ], assets: [
            Asset(id: "a-1", kind: .secret, name: "one"), Asset(id: "a-1", kind: .secret, name: "again", groups: []),
        ], projects: [
            Project(id: "p-2", workspaceAccess: .canView), Project(id: "p-1", owner: "u-a"), Project(id: "p-2", owner: "u-a"),
        ])
        workspace.groups = []
        let snapshot = Snapshot(workspace: workspace, version: 1)
        #expect(snapshot.warnings.count == 3, "\(snapshot.warnings)")
        #expect(snapshot.warnings.contains("users[2].id: duplicate id 'u-b' ignored"))
        #expect(snapshot.warnings.contains("projects[2].id: duplicate id 'p-2' ignored"))
        #expect(snapshot.seatType(user: "u-b").role == .admin, "the first copy wins")
        #expect(try snapshot.listProjects(user: "u-b").entries.map { snapshot.projectIds.id(at: $0.index) } == ["p-1", "p-2"])
        #expect(try snapshot.listProjects(user: "u-a").entries.map(\.reason) == [.owner, .workspaceShare])
        #expect(try snapshot.listProjectAccess(project: "p-2").entries.map { snapshot.userIds.id(at: $0.index) } == ["u-a", "u-b"])
        #expect(try snapshot.listAssets(user: "u-b").entries.count == 1)
    }

    @Test func pagesDoNotAllocatePerItem() throws {
        let workspace = SyntheticWorkspace.generate(.init(users: 3_000, groups: 300, projects: 3_000, grantsPerProject: 10, assets: 1_500, seed: 11))
        let snapshot = Snapshot(workspace: workspace, version: 1)
        let admin = workspace.users.first { snapshot.role(snapshot.userKey($0.id)) == .admin }!.id
        let typical = workspace.users.first { snapshot.role(snapshot.userKey($0.id)) == .editor }!.id
        let shared = workspace.projects.first { $0.workspaceAccess >= .canView }!.id
        func allocations(_ body: () throws -> Int) rethrows -> (allocations: Int, items: Int) {
            _ = try body()
            let before = authz_thread_allocations()
            let items = try body()
            return (Int(authz_thread_allocations() - before), items)
        }
        for (name, page) in [
            ("admin", { (size: Int) in try snapshot.listProjects(user: admin, pageSize: size).entries.count }),
            ("typical user", { (size: Int) in try snapshot.listProjects(user: typical, pageSize: size).entries.count }),
            ("can_edit", { (size: Int) in try snapshot.listProjects(user: typical, minLevel: .canEdit, pageSize: size).entries.count }),
            ("workspace-shared project", { (size: Int) in try snapshot.listProjectAccess(project: shared, pageSize: size).entries.count }),
            ("assets in a project", { (size: Int) in try snapshot.listAssets(user: typical, project: shared, pageSize: size).entries.count }),
        ] as [(String, (Int) throws -> Int)] {
            let small = try allocations { try page(2) }
            let large = try allocations { try page(1_000) }
            #expect(large.items > small.items, "\(name): \(large.items) items")
            #expect(large.allocations <= small.allocations, "\(name): \(small.allocations) allocations for \(small.items) items, \(large.allocations) for \(large.items)")
            #expect(large.allocations <= 8, "\(name): \(large.allocations) allocations per page")
        }
    }
}
