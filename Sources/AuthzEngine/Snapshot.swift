// The immutable, indexed snapshot every decision is answered from.
//
// Built once from a `Workspace`, then read-only and shared across threads. External ids are
// interned to dense Int32 indexes; relations are stored as CSR arrays (a start offset per
// entity into one flat, sorted list), so a decision is a handful of array reads, a binary
// search and a merge of two short sorted lists — no hashing beyond the id lookups, no
// allocation. The tables live in huge-page-advised memory (FlatTable.swift).
//
// Layout choices:
// - Every kind of entity (users, groups, assets, projects) is indexed in ascending id byte
//   order, so index order is id order: "the first asset by id order" (RULES.md §4 step 6) is
//   the first asset index in a project's sorted asset list, the group with the smallest id
//   among equal grants is the lowest index, and the lookups (Lookups.swift) walk sorted index
//   lists and seek to an id by binary search. A later copy of a duplicate id is dropped
//   before interning (with a warning naming its document position).
// - A user's custom groups, a project's user grants and group grants, and an asset's custom
//   groups are sorted by index; duplicate grants to one principal keep the highest level.
// - Roles are resolved once here (RULES.md §2): a decision reads one byte.

import Synchronization

public final class Snapshot: Sendable {
    /// Snapshots alive in this process: built and not yet freed. A server holds one in
    /// service, one being built and, briefly, one being retired; more means something
    /// keeps replaced snapshots alive.
    public static var liveCount: Int { live.load(ordering: .relaxed) }
    private static let live = Atomic<Int>(0)

    /// The database snapshot version this was built from.
    public let version: UInt64
    public let plan: Plan
    public let viewerSeatsPaid: Bool
    /// Data problems the build tolerated (for operators; decisions stay well-defined).
    public let warnings: [String]

    public let userIds: IdIndex
    public let groupIds: IdIndex
    public let assetIds: IdIndex
    public let projectIds: IdIndex

    // Everything one decision reads about a user, a project or an asset sits in one record,
    // so a decision touches few cache lines. Grants are packed as `principal << 3 | level`,
    // sorted, so a project's grants are one contiguous run of 32-bit words.

    struct UserRecord {
        var groupStart: Int32 = 0
        var groupEnd: Int32 = 0
        var role: Role = .guest
        var active = false
        var roleSource: RoleSource = .inviteDefault
        var planDowngrade = false
    }

    struct ProjectRecord {
        var owner: Int32 = -1
        var userGrantStart: Int32 = 0
        var userGrantEnd: Int32 = 0
        var groupGrantStart: Int32 = 0
        var groupGrantEnd: Int32 = 0
        var assetStart: Int32 = 0
        var assetEnd: Int32 = 0
        var workspaceAccess: Level = .none
        var publicAccess: Level = .none
    }

    struct AssetRecord {
        var groupStart: Int32 = 0
        var groupEnd: Int32 = 0
        var builtins: UInt8 = 0
    }

    let users: FlatTable<UserRecord>
    /// Each user's custom groups, sorted (slices given by `UserRecord`).
    let userGroups: FlatTable<Int32>
    let assets: FlatTable<AssetRecord>
    /// Each asset's custom groups, sorted.
    let assetGroups: FlatTable<Int32>
    let projects: FlatTable<ProjectRecord>
    /// `user << 3 | level`, sorted per project, one entry per user (the highest level).
    let userGrants: FlatTable<UInt32>
    /// `group << 3 | level`, sorted per project, one entry per group (the highest level).
    let groupGrants: FlatTable<UInt32>
    /// Each project's assets, sorted (= id order).
    let projectAssets: FlatTable<Int32>

    // Reverse indexes for the lookups (Lookups.swift), each list sorted by index (= id order).

    /// Per user (`userProjectStart[u] ..< userProjectStart[u + 1]`): the projects the user owns
    /// (level `full_access`) or holds a direct grant on, as `project << 3 | level`; a project
    /// both owned and granted appears twice.
    let userProjectStart: FlatTable<Int32>
    let userProjects: FlatTable<UInt32>
    /// Per group and grant level (`groupProjectStart[g * 5 + level - 1]` ..< the next): the
    /// projects granting that level to the group.
    let groupProjectStart: FlatTable<Int32>
    let groupProjects: FlatTable<Int32>
    /// Per group: its members.
    let groupMemberStart: FlatTable<Int32>
    let groupMembers: FlatTable<Int32>
    /// `workspaceShared[workspaceSharedStart[L - 1] ..< workspaceSharedStart[L]]`: the projects
    /// whose `workspace_access` is at least level `L` (1 ... 5).
    let workspaceSharedStart: FlatTable<Int32>
    let workspaceShared: FlatTable<Int32>
    /// The projects whose `public_access` is above none (it is capped at `can_view_app`).
    let publicShared: FlatTable<Int32>
    /// The active users whose role is `admin`.
    let admins: FlatTable<Int32>

    /// Grants as given in the workspace (before merging duplicates).
    public let grantCount: Int
    /// Per project: its grants as given (before merging duplicates), so a delta can keep
    /// `grantCount` exact.
    let projectGrantCounts: FlatTable<Int32>

    /// The settings a user's role derives from (RULES.md §2), kept so a delta can resolve
    /// the role of a changed user exactly as the build does (SnapshotDelta.swift).
    let roleRules: RoleRules

    public var userCount: Int { userIds.count }
    public var groupCount: Int { groupIds.count }
    public var assetCount: Int { assetIds.count }
    public var projectCount: Int { projectIds.count }

    deinit {
        Self.live.subtract(1, ordering: .relaxed)
    }

    // MARK: - Building

    /// A snapshot from its parts (a delta's: SnapshotDelta.swift). Tables passed on from
    /// another snapshot are shared with it, not copied.
    init(
        version: UInt64, plan: Plan, viewerSeatsPaid: Bool, warnings: [String],
        userIds: IdIndex, groupIds: IdIndex, assetIds: IdIndex, projectIds: IdIndex,
        users: FlatTable<UserRecord>, userGroups: FlatTable<Int32>,
        assets: FlatTable<AssetRecord>, assetGroups: FlatTable<Int32>,
        projects: FlatTable<ProjectRecord>, userGrants: FlatTable<UInt32>, groupGrants: FlatTable<UInt32>,
        projectAssets: FlatTable<Int32>,
        userProjectStart: FlatTable<Int32>, userProjects: FlatTable<UInt32>,
        groupProjectStart: FlatTable<Int32>, groupProjects: FlatTable<Int32>,
        groupMemberStart: FlatTable<Int32>, groupMembers: FlatTable<Int32>,
        workspaceSharedStart: FlatTable<Int32>, workspaceShared: FlatTable<Int32>,
        publicShared: FlatTable<Int32>, admins: FlatTable<Int32>,
        grantCount: Int, projectGrantCounts: FlatTable<Int32>, roleRules: RoleRules
    ) {
        Self.live.add(1, ordering: .relaxed)
        self.version = version
        self.plan = plan
        self.viewerSeatsPaid = viewerSeatsPaid
        self.warnings = warnings
        self.userIds = userIds
        self.groupIds = groupIds
        self.assetIds = assetIds
        self.projectIds = projectIds
        self.users = users
        self.userGroups = userGroups
        self.assets = assets
        self.assetGroups = assetGroups
        self.projects = projects
        self.userGrants = userGrants
        self.groupGrants = groupGrants
        self.projectAssets = projectAssets
        self.userProjectStart = userProjectStart
        self.userProjects = userProjects
        self.groupProjectStart = groupProjectStart
        self.groupProjects = groupProjects
        self.groupMemberStart = groupMemberStart
        self.groupMembers = groupMembers
        self.workspaceSharedStart = workspaceSharedStart
        self.workspaceShared = workspaceShared
        self.publicShared = publicShared
        self.admins = admins
        self.grantCount = grantCount
        self.projectGrantCounts = projectGrantCounts
        self.roleRules = roleRules
    }

    /// Builds the snapshot. The workspace is expected to be valid (AuthzDocument validates
    /// documents and the store validates imports), but the build never traps on bad data:
    /// dangling references are skipped and reported in `warnings`.
    public init(workspace: Workspace, version: UInt64) {
        Self.live.add(1, ordering: .relaxed)
        var warnings: [String] = []
        self.version = version
        let settings = workspace.settings
        self.plan = settings.plan
        self.viewerSeatsPaid = settings.viewerSeatsPaid

        // Interning, every kind in id byte order; later copies of a duplicate id are dropped.
        let users = Self.intern(workspace.users.map(\.id))
        for position in users.duplicates {
            warnings.append("users[\(position)].id: duplicate id '\(workspace.users[position].id)' ignored")
        }
        let groups = Self.intern(workspace.groups.map(\.id))
        for position in groups.duplicates {
            warnings.append("groups[\(position)].id: duplicate id '\(workspace.groups[position].id)' ignored")
        }
        let assets = Self.intern(workspace.assets.map(\.id))
        for position in assets.duplicates { warnings.append("assets[\(position)].id: duplicate id ignored") }
        let projects = Self.intern(workspace.projects.map(\.id))
        for position in projects.duplicates {
            warnings.append("projects[\(position)].id: duplicate id '\(workspace.projects[position].id)' ignored")
        }
        let userIds = users.index
        let groupIds = groups.index
        let assetIds = assets.index
        let projectIds = projects.index
        self.userIds = userIds
        self.groupIds = groupIds
        self.assetIds = assetIds
        self.projectIds = projectIds

        let userCount = userIds.count
        let groupCount = groupIds.count
        // Grants pack a principal index and a level into 32 bits, so do the lookups' project
        // lists.
        precondition(
            workspace.users.count < 1 << 29 && workspace.groups.count < 1 << 29 && workspace.projects.count < 1 << 29,
            "more than 2^29 users, groups or projects")
        let builtinByName: [String: BuiltinGroup] = Dictionary(uniqueKeysWithValues: BuiltinGroup.allCases.map { ($0.name, $0) })

        // Group memberships, as (user, group) pairs → CSR by user.
        var membership: [UInt64] = []
        membership.reserveCapacity(workspace.groups.reduce(0) { $0 + $1.members.count })
        for (g, original) in groups.order.enumerated() {
            for (m, member) in workspace.groups[original].members.enumerated() {
                let u = userIds.lookup(member)
                if u < 0 {
                    warnings.append("groups[\(original)].members[\(m)]: unknown user '\(member)' skipped")
                    continue
                }
                membership.append(UInt64(UInt32(u)) << 32 | UInt64(UInt32(g)))
            }
        }
        let (userGroupStart, userGroups) = Self.csr(pairs: &membership, rows: userCount)
        self.userGroups = FlatTable(userGroups)

        // Roles (RULES.md §2).
        let roleRules = RoleRules(settings: settings, groupIds: groupIds) { i, group in
            warnings.append("workspace.directory_sync.role_mappings[\(i)].group: unknown group '\(group)' skipped")
        }
        self.roleRules = roleRules
        var userRecords = [UserRecord](repeating: UserRecord(), count: userCount)
        for u in 0 ..< userCount {
            userRecords[u].groupStart = userGroupStart[u]
            userRecords[u].groupEnd = userGroupStart[u + 1]
        }
        // In document order, so warnings come out in the order of the document.
        for (position, user) in workspace.users.enumerated() {
            let u = Int(users.indexOf[position])
            guard u >= 0 else { continue }
            let resolved = roleRules.resolve(user, groups: userGroups[Int(userGroupStart[u]) ..< Int(userGroupStart[u + 1])])
            if resolved.explicitIgnored {
                warnings.append("users[\(position)].role: explicit role of directory user '\(user.id)' ignored while role sync is on")
            }
            if resolved.planDowngrade {
                warnings.append("users[\(position)]: role explorer of '\(user.id)' downgraded to viewer: plan \(plan.name) has no Explorer role")
            }
            userRecords[u].active = user.active
            userRecords[u].role = resolved.role
            userRecords[u].roleSource = resolved.source
            userRecords[u].planDowngrade = resolved.planDowngrade
        }
        self.users = FlatTable(userRecords)

        // Assets.
        var assetBuiltins = [UInt8](repeating: 0, count: assetIds.count)
        var assetGroupPairs: [UInt64] = []
        for (a, original) in assets.order.enumerated() {
            let asset = workspace.assets[original]
            for (k, name) in asset.groups.enumerated() {
                if let builtin = builtinByName[name] {
                    assetBuiltins[a] |= builtin.maskBit
                    continue
                }
                let g = groupIds.lookup(name)
                if g < 0 {
                    warnings.append("assets[\(original)].groups[\(k)]: unknown group '\(name)' skipped")
                    continue
                }
                assetGroupPairs.append(UInt64(a) << 32 | UInt64(UInt32(g)))
            }
        }
        let (assetGroupStart, assetGroups) = Self.csr(pairs: &assetGroupPairs, rows: assetIds.count)
        self.assets = FlatTable((0 ..< assetIds.count).map {
            AssetRecord(groupStart: assetGroupStart[$0], groupEnd: assetGroupStart[$0 + 1], builtins: assetBuiltins[$0])
        })
        self.assetGroups = FlatTable(assetGroups)

        // Projects (in document order, so warnings come out in the order of the document).
        let projectCount = projectIds.count
        var projectOwner = [Int32](repeating: -1, count: projectCount)
        var projectWorkspaceAccess = [Level](repeating: .none, count: projectCount)
        var projectPublicAccess = [Level](repeating: .none, count: projectCount)
        // (project << 32 | principal) << 8 | level would overflow; keep level in a side key:
        // pairs are (project, principal << 3 | level) so sorting orders by principal, then level.
        var userGrantPairs: [UInt64] = []
        var groupGrantPairs: [UInt64] = []
        var projectAssetPairs: [UInt64] = []
        var grantCount = 0
        var projectGrantCounts = [Int32](repeating: 0, count: projectCount)
        for (position, project) in workspace.projects.enumerated() {
            let p = Int(projects.indexOf[position])
            guard p >= 0 else { continue }
            projectGrantCounts[p] = Int32(clamping: project.grants.count)
            if let owner = project.owner {
                let u = userIds.lookup(owner)
                if u < 0 { warnings.append("projects[\(position)].owner: unknown user '\(owner)' ignored") }
                projectOwner[p] = u
            }
            projectWorkspaceAccess[p] = project.workspaceAccess
            projectPublicAccess[p] = min(project.publicAccess, .canViewApp)
            if project.publicAccess > .canViewApp {
                warnings.append("projects[\(position)].public_access: \(project.publicAccess.name) capped at can_view_app")
            }
            for (k, grant) in project.grants.enumerated() {
                grantCount += 1
                switch grant.target {
                case .user(let id):
                    let u = userIds.lookup(id)
                    if u < 0 {
                        warnings.append("projects[\(position)].grants[\(k)].user: unknown user '\(id)' skipped")
                        continue
                    }
                    userGrantPairs.append(UInt64(p) << 32 | UInt64(UInt32(u)) << 3 | UInt64(grant.level.rawValue))
                case .group(let id):
                    let g = groupIds.lookup(id)
                    if g < 0 {
                        warnings.append("projects[\(position)].grants[\(k)].group: unknown or built-in group '\(id)' skipped")
                        continue
                    }
                    groupGrantPairs.append(UInt64(p) << 32 | UInt64(UInt32(g)) << 3 | UInt64(grant.level.rawValue))
                }
            }
            for (k, id) in project.assets.enumerated() {
                let a = assetIds.lookup(id)
                if a < 0 {
                    warnings.append("projects[\(position)].assets[\(k)]: unknown asset '\(id)' skipped")
                    continue
                }
                projectAssetPairs.append(UInt64(p) << 32 | UInt64(UInt32(a)))
            }
        }
        self.grantCount = grantCount
        self.projectGrantCounts = FlatTable(projectGrantCounts)
        let (userGrantStart, userGrants) = Self.grantCSR(pairs: &userGrantPairs, rows: projectCount)
        let (groupGrantStart, groupGrants) = Self.grantCSR(pairs: &groupGrantPairs, rows: projectCount)
        let (projectAssetStart, projectAssets) = Self.csr(pairs: &projectAssetPairs, rows: projectCount)
        self.projects = FlatTable((0 ..< projectCount).map { p in
            ProjectRecord(
                owner: projectOwner[p],
                userGrantStart: userGrantStart[p], userGrantEnd: userGrantStart[p + 1],
                groupGrantStart: groupGrantStart[p], groupGrantEnd: groupGrantStart[p + 1],
                assetStart: projectAssetStart[p], assetEnd: projectAssetStart[p + 1],
                workspaceAccess: projectWorkspaceAccess[p], publicAccess: projectPublicAccess[p]
            )
        })
        self.userGrants = FlatTable(userGrants)
        self.groupGrants = FlatTable(groupGrants)
        self.projectAssets = FlatTable(projectAssets)

        // Reverse indexes for the lookups, by counting sorts over the tables above: walking
        // projects (and users) in index order fills every list in index order.
        do {
            // Owned and directly granted projects, per user.
            var start = [Int32](repeating: 0, count: userCount + 1)
            for p in 0 ..< projectCount {
                if projectOwner[p] >= 0 { start[Int(projectOwner[p]) + 1] += 1 }
                for k in Int(userGrantStart[p]) ..< Int(userGrantStart[p + 1]) where userGrants[k] & 7 != 0 {
                    start[Int(userGrants[k] >> 3) + 1] += 1
                }
            }
            for u in 0 ..< userCount { start[u + 1] += start[u] }
            var fill = start
            var entries = [UInt32](repeating: 0, count: Int(start[userCount]))
            for p in 0 ..< projectCount {
                if projectOwner[p] >= 0 {
                    let u = Int(projectOwner[p])
                    entries[Int(fill[u])] = UInt32(p) << 3 | UInt32(Level.fullAccess.rawValue)
                    fill[u] += 1
                }
                for k in Int(userGrantStart[p]) ..< Int(userGrantStart[p + 1]) where userGrants[k] & 7 != 0 {
                    let u = Int(userGrants[k] >> 3)
                    entries[Int(fill[u])] = UInt32(p) << 3 | (userGrants[k] & 7)
                    fill[u] += 1
                }
            }
            self.userProjectStart = FlatTable(start)
            self.userProjects = FlatTable(entries)
        }
        do {
            // Projects granting each level to each group.
            var start = [Int32](repeating: 0, count: groupCount * 5 + 1)
            for grant in groupGrants where grant & 7 != 0 {
                start[Int(grant >> 3) * 5 + Int(grant & 7)] += 1
            }
            for slot in 0 ..< groupCount * 5 { start[slot + 1] += start[slot] }
            var fill = start
            var entries = [Int32](repeating: 0, count: Int(start[groupCount * 5]))
            for p in 0 ..< projectCount {
                for k in Int(groupGrantStart[p]) ..< Int(groupGrantStart[p + 1]) where groupGrants[k] & 7 != 0 {
                    let slot = Int(groupGrants[k] >> 3) * 5 + Int(groupGrants[k] & 7) - 1
                    entries[Int(fill[slot])] = Int32(p)
                    fill[slot] += 1
                }
            }
            self.groupProjectStart = FlatTable(start)
            self.groupProjects = FlatTable(entries)
        }
        do {
            // Members per group.
            var start = [Int32](repeating: 0, count: groupCount + 1)
            for g in userGroups { start[Int(g) + 1] += 1 }
            for g in 0 ..< groupCount { start[g + 1] += start[g] }
            var fill = start
            var entries = [Int32](repeating: 0, count: userGroups.count)
            for u in 0 ..< userCount {
                for k in Int(userGroupStart[u]) ..< Int(userGroupStart[u + 1]) {
                    let g = Int(userGroups[k])
                    entries[Int(fill[g])] = Int32(u)
                    fill[g] += 1
                }
            }
            self.groupMemberStart = FlatTable(start)
            self.groupMembers = FlatTable(entries)
        }
        do {
            // The workspace and public shares, and the admins.
            var start: [Int32] = [0]
            var shared: [Int32] = []
            for level in 1 ... 5 {
                for p in 0 ..< projectCount where projectWorkspaceAccess[p].rawValue >= level { shared.append(Int32(p)) }
                start.append(Int32(shared.count))
            }
            self.workspaceSharedStart = FlatTable(start)
            self.workspaceShared = FlatTable(shared)
            self.publicShared = FlatTable((0 ..< projectCount).filter { projectPublicAccess[$0] > .none }.map { Int32($0) })
            self.admins = FlatTable((0 ..< userCount).filter { userRecords[$0].active && userRecords[$0].role == .admin }.map { Int32($0) })
        }
        self.warnings = warnings
    }

    /// Interns `ids` in byte order. `order[i]` is the document position of index `i`,
    /// `indexOf[position]` the index of a document position (-1 for a dropped duplicate), and
    /// `duplicates` the document positions of later copies of an id, dropped.
    private static func intern(_ ids: [String]) -> (index: IdIndex, order: [Int], indexOf: [Int32], duplicates: [Int]) {
        // Sort positions by a big-endian 8-byte prefix, then the whole id, then position.
        var arena: [UInt8] = []
        arena.reserveCapacity(ids.count * 12)
        var offsets: [Int] = [0]
        offsets.reserveCapacity(ids.count + 1)
        var prefixes: [UInt64] = []
        prefixes.reserveCapacity(ids.count)
        for id in ids {
            var prefix: UInt64 = 0
            var taken = 0
            for byte in id.utf8 {
                arena.append(byte)
                if taken < 8 {
                    prefix |= UInt64(byte) << (56 - 8 * UInt64(taken))
                    taken += 1
                }
            }
            offsets.append(arena.count)
            prefixes.append(prefix)
        }
        var order = Array(ids.indices)
        var duplicates: [Int] = []
        arena.withUnsafeBufferPointer { bytes in
            func compare(_ a: Int, _ b: Int) -> Int {
                let aStart = offsets[a], aCount = offsets[a + 1] - aStart
                let bStart = offsets[b], bCount = offsets[b + 1] - bStart
                var i = 0
                while i < aCount, i < bCount {
                    let x = bytes[aStart + i], y = bytes[bStart + i]
                    if x != y { return x < y ? -1 : 1 }
                    i += 1
                }
                return aCount == bCount ? 0 : aCount < bCount ? -1 : 1
            }
            order.sort { a, b in
                if prefixes[a] != prefixes[b] { return prefixes[a] < prefixes[b] }
                let order = compare(a, b)
                return order != 0 ? order < 0 : a < b
            }
            var kept: [Int] = []
            kept.reserveCapacity(order.count)
            for position in order {
                if let last = kept.last, prefixes[last] == prefixes[position], compare(last, position) == 0 {
                    duplicates.append(position)
                } else {
                    kept.append(position)
                }
            }
            order = kept
        }
        duplicates.sort()
        var indexOf = [Int32](repeating: -1, count: ids.count)
        for (index, position) in order.enumerated() { indexOf[position] = Int32(index) }
        return (IdIndex(order.map { ids[$0] }), order, indexOf, duplicates)
    }

    /// Sorts `(row << 32 | value)` pairs and returns CSR arrays with duplicates removed.
    private static func csr(pairs: inout [UInt64], rows: Int) -> (start: [Int32], values: [Int32]) {
        pairs.sort()
        var start = [Int32](repeating: 0, count: rows + 1)
        var values: [Int32] = []
        values.reserveCapacity(pairs.count)
        var previous: UInt64? = nil
        for pair in pairs where pair != previous {
            previous = pair
            start[Int(pair >> 32) + 1] += 1
            values.append(Int32(truncatingIfNeeded: pair & 0xffff_ffff))
        }
        for row in 0 ..< rows { start[row + 1] += start[row] }
        return (start, values)
    }

    /// Sorts `(row << 32 | principal << 3 | level)` triples and returns CSR arrays holding,
    /// per row, each principal once with its highest level, packed as `principal << 3 | level`.
    private static func grantCSR(pairs: inout [UInt64], rows: Int) -> (start: [Int32], grants: [UInt32]) {
        pairs.sort()
        var start = [Int32](repeating: 0, count: rows + 1)
        var grants: [UInt32] = []
        grants.reserveCapacity(pairs.count)
        var index = 0
        while index < pairs.count {
            let key = pairs[index] >> 3
            // Sorted ascending, so the last entry of a run holds the highest level.
            while index + 1 < pairs.count, pairs[index + 1] >> 3 == key { index += 1 }
            let pair = pairs[index]
            start[Int(pair >> 32) + 1] += 1
            grants.append(UInt32(truncatingIfNeeded: pair & 0xffff_ffff))
            index += 1
        }
        for row in 0 ..< rows { start[row + 1] += start[row] }
        return (start, grants)
    }

    static func emailDomain(_ email: String) -> String {
        guard let at = email.utf8.lastIndex(of: UInt8(ascii: "@")) else { return "" }
        return lowercasedASCII(String(email[email.utf8.index(after: at)...]))
    }

    static func lowercasedASCII(_ text: String) -> String {
        String(decoding: text.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
    }

    // MARK: - Touching (memory-level parallelism for a batch of decisions)

    /// Loads the index slots of a check's ids (see `IdIndex.touch`): call for every check of
    /// a batch, then look them all up, then `touch` their records, then decide. Returns a
    /// value the caller should combine and keep, so the loads are not optimised away.
    public func touch(userUTF8 user: UnsafeRawBufferPointer, projectUTF8 project: UnsafeRawBufferPointer) -> UInt64 {
        (user.isEmpty ? 0 : userIds.touch(user)) &+ (project.isEmpty ? 0 : projectIds.touch(project))
    }

    public func touch(userUTF8 user: UnsafeRawBufferPointer, assetUTF8 asset: UnsafeRawBufferPointer) -> UInt64 {
        (user.isEmpty ? 0 : userIds.touch(user)) &+ assetIds.touch(asset)
    }

    /// Loads the records a decision about `user` and `project` starts from.
    public func touch(_ user: UserKey, _ project: EntityKey?) -> UInt64 {
        var word: UInt64 = 0
        if user.isKnownUser { word &+= UInt64(bitPattern: Int64(users[Int(user.raw)].groupStart)) }
        if let project, project.isKnown {
            word &+= UInt64(bitPattern: Int64(projects[Int(project.raw)].userGrantStart))
        }
        return word
    }

    // MARK: - Keys

    /// The key of a user id; the empty id is the anonymous web viewer.
    public func userKey(_ id: String) -> UserKey {
        if id.isEmpty { return .anonymous }
        let index = userIds.lookup(id)
        return index >= 0 ? UserKey(raw: index) : .unknown
    }

    /// The key of a user id given as UTF-8 bytes; empty is the anonymous web viewer.
    public func userKey(utf8 bytes: UnsafeRawBufferPointer) -> UserKey {
        if bytes.isEmpty { return .anonymous }
        let index = userIds.lookup(bytes)
        return index >= 0 ? UserKey(raw: index) : .unknown
    }

    public func projectKey(_ id: String) -> EntityKey { EntityKey(raw: projectIds.lookup(id)) }
    public func projectKey(utf8 bytes: UnsafeRawBufferPointer) -> EntityKey { EntityKey(raw: projectIds.lookup(bytes)) }
    public func assetKey(_ id: String) -> EntityKey { EntityKey(raw: assetIds.lookup(id)) }
    public func assetKey(utf8 bytes: UnsafeRawBufferPointer) -> EntityKey { EntityKey(raw: assetIds.lookup(bytes)) }

    // MARK: - EffectivePermission (RULES.md §4)

    public func effectivePermission(user: String, project: String) -> PermissionDecision {
        effectivePermission(userKey(user), projectKey(project))
    }

    public func effectivePermission(_ user: UserKey, _ project: EntityKey) -> PermissionDecision {
        effectivePermission(user, project, memo: nil)
    }

    /// What a listing of one user's projects works out once per page instead of once per
    /// project: the user's groups and the assets the user may access (RULES.md §5 step 3),
    /// as bitsets over group and asset indexes. The decision reads a bit where it would
    /// otherwise merge two sorted lists; it is the same decision.
    struct UserMemo {
        let groups: UnsafePointer<UInt64>
        let assets: UnsafePointer<UInt64>

        @inline(__always) func inGroup(_ g: UInt32) -> Bool { groups[Int(g >> 6)] >> UInt64(g & 63) & 1 != 0 }
        @inline(__always) func mayAccess(_ a: Int32) -> Bool { assets[Int(a >> 6)] >> UInt64(a & 63) & 1 != 0 }
    }

    /// Words of a `UserMemo`: the group bitset, then the asset bitset.
    var userMemoWords: (groups: Int, assets: Int) { ((groupCount + 63) / 64, (assetCount + 63) / 64) }

    /// Fills `words` (`userMemoWords` long) with the memo of a known, active user and calls
    /// `body` with it.
    func withUserMemo<R>(_ user: UserKey, _ body: (UserMemo) -> R) -> R {
        let (groupWords, assetWords) = userMemoWords
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: max(1, groupWords + assetWords)) { words in
            words.initialize(repeating: 0)
            let member = users[Int(user.raw)]
            for k in Int(member.groupStart) ..< Int(member.groupEnd) {
                let g = Int(userGroups[k])
                words[g >> 6] |= 1 << UInt64(g & 63)
            }
            for a in 0 ..< assetCount where isInAssetGroups(member, asset: a) {
                words[groupWords + (a >> 6)] |= 1 << UInt64(a & 63)
            }
            let base = UnsafePointer(words.baseAddress!)
            return body(UserMemo(groups: base, assets: base + groupWords))
        }
    }

    func effectivePermission(_ user: UserKey, _ project: EntityKey, memo: UserMemo?) -> PermissionDecision {
        // Step 1: unknown ids, inactive users, the anonymous viewer.
        guard project.isKnown else { return PermissionDecision(.unknownProject, .none) }
        let record = projects[Int(project.raw)]
        if user == .unknown { return PermissionDecision(.unknownUser, .none) }
        if user == .anonymous {
            let level = record.publicAccess
            return level > .none ? PermissionDecision(.publicShare, level) : PermissionDecision(.noGrant, .none)
        }
        let member = users[Int(user.raw)]
        guard member.active else { return PermissionDecision(.userInactive, .none) }
        let role = member.role

        // Step 2: the granted level; ties keep the earlier source.
        var level = Level.none
        var reason = Reason.noGrant
        var subject: Int32 = -1
        if record.owner == user.raw {
            level = .fullAccess
            reason = .owner
        }
        if level < .fullAccess, let granted = userGrant(record, user: user.raw), granted > level {
            level = granted
            reason = .userGrant
        }
        if role != .guest {
            if level < .fullAccess {
                let (granted, group) = memo.map { groupGrant(record, $0) } ?? groupGrant(record, member)
                if granted > level {
                    level = granted
                    reason = .groupGrant
                    subject = group
                }
            }
            if record.workspaceAccess > level {
                level = record.workspaceAccess
                reason = .workspaceShare
                subject = -1
            }
        }
        if record.publicAccess > level {
            level = record.publicAccess
            reason = .publicShare
            subject = -1
        }
        var trace = Trace()
        trace.append(TraceStep(reason: reason, level: level, subject: subject))

        // Step 3: the admin floor.
        if role == .admin, level < .canExplore {
            level = .canExplore
            reason = .adminFloor
            trace.append(TraceStep(reason: reason, level: level))
        }
        // Step 4: role caps.
        let cap = role.levelCap
        if level > cap {
            level = cap
            reason = .roleCap
            trace.append(TraceStep(reason: reason, level: level))
        }
        // Step 5: exploring needs the build_explorations capability.
        if level == .canExplore, !role.has(.buildExplorations) {
            level = .canView
            reason = .exploreNeedsRole
            trace.append(TraceStep(reason: reason, level: level))
        }
        // Step 6: an asset the user cannot access caps the level at can_view.
        if level > .canView, role != .admin {
            for k in Int(record.assetStart) ..< Int(record.assetEnd) {
                let a = projectAssets[k]
                if !(memo?.mayAccess(a) ?? isInAssetGroups(member, asset: Int(a))) {
                    level = .canView
                    reason = .assetDowngrade
                    trace.append(TraceStep(reason: reason, level: level, subject: a))
                    break
                }
            }
        }
        return PermissionDecision(level: level, reason: reason, trace: trace)
    }

    /// The explanation of `decision` with group and asset ids spelled out.
    public func explain(_ decision: PermissionDecision) -> [ExplanationStep] {
        decision.trace.map { step in
            var subject: String? = nil
            if step.subject >= 0 {
                switch step.reason {
                case .groupGrant where Int(step.subject) < groupIds.count: subject = groupIds.id(at: step.subject)
                case .assetDowngrade where Int(step.subject) < assetIds.count: subject = assetIds.id(at: step.subject)
                default: break
                }
            }
            return ExplanationStep(reason: step.reason, level: step.level, subject: subject)
        }
    }

    /// The level of a packed grant's low bits (built from `Level` raw values, so at most 5).
    @inline(__always)
    private static func level(_ bits: UInt32) -> Level {
        switch bits {
        case 1: .canViewApp
        case 2: .canView
        case 3: .canExplore
        case 4: .canEdit
        case 5: .fullAccess
        default: .none
        }
    }

    /// The level granted to `user` directly on the project, by binary search.
    @inline(__always)
    private func userGrant(_ record: ProjectRecord, user: Int32) -> Level? {
        // Branch-free: halve the range with a conditional move (the outcome of each compare is
        // unpredictable, so branches would mispredict about half the time).
        var base = Int(record.userGrantStart)
        var count = Int(record.userGrantEnd) - base
        guard count > 0 else { return nil }
        let key = UInt32(bitPattern: user)
        let grants = userGrants.base  // the record's range lies inside the table
        while count > 1 {
            let half = count >> 1
            base = grants[base + half] >> 3 <= key ? base + half : base
            count -= half
        }
        let grant = grants[base]
        return grant >> 3 == key ? Self.level(grant & 7) : nil
    }

    /// The highest level granted on the project to a group the user belongs to, and that
    /// group (the lowest index among equals), by merging two sorted lists.
    @inline(__always)
    private func groupGrant(_ record: ProjectRecord, _ member: UserRecord) -> (Level, Int32) {
        var i = Int(record.groupGrantStart)
        let iEnd = Int(record.groupGrantEnd)
        var j = Int(member.groupStart)
        let jEnd = Int(member.groupEnd)
        var best: UInt32 = 0
        var group: Int32 = -1
        while i < iEnd, j < jEnd {
            let grant = groupGrants[i]
            let granted = Int32(bitPattern: grant >> 3)
            let belongs = userGroups[j]
            if granted == belongs {
                if grant & 7 > best {
                    best = grant & 7
                    group = granted
                }
                i += 1
                j += 1
            } else if granted < belongs {
                i += 1
            } else {
                j += 1
            }
        }
        return (Self.level(best), group)
    }

    /// `groupGrant` with the user's groups as a bitset: the same best level, and the same
    /// group (the lowest index among equals: grants are walked in index order and only a
    /// strictly higher level replaces the best).
    @inline(__always)
    private func groupGrant(_ record: ProjectRecord, _ memo: UserMemo) -> (Level, Int32) {
        var best: UInt32 = 0
        var group: Int32 = -1
        for i in Int(record.groupGrantStart) ..< Int(record.groupGrantEnd) {
            let grant = groupGrants[i]
            if grant & 7 > best, memo.inGroup(grant >> 3) {
                best = grant & 7
                group = Int32(bitPattern: grant >> 3)
            }
        }
        return (Self.level(best), group)
    }

    /// RULES.md §5 step 3 for an active, known user: membership of at least one of the
    /// asset's groups, built-in or custom.
    @inline(__always)
    private func isInAssetGroups(_ member: UserRecord, asset a: Int) -> Bool {
        let asset = assets[a]
        if asset.builtins & BuiltinGroup.public.maskBit != 0 { return true }
        let roleGroup = member.role == .guest ? BuiltinGroup.workspaceGuests : BuiltinGroup.workspace
        if asset.builtins & roleGroup.maskBit != 0 { return true }
        var i = Int(asset.groupStart)
        let iEnd = Int(asset.groupEnd)
        var j = Int(member.groupStart)
        let jEnd = Int(member.groupEnd)
        while i < iEnd, j < jEnd {
            let allowed = assetGroups[i]
            let belongs = userGroups[j]
            if allowed == belongs { return true }
            if allowed < belongs { i += 1 } else { j += 1 }
        }
        return false
    }

    // MARK: - CanUse (RULES.md §5)

    public func canUse(user: String, asset: String, project: String? = nil) -> AccessDecision {
        canUse(userKey(user), assetKey(asset), project: project.map { projectKey($0) })
    }

    public func canUse(_ user: UserKey, _ asset: EntityKey, project: EntityKey? = nil) -> AccessDecision {
        // Step 1: an unknown asset, then an unknown project, before anything about the user.
        guard asset.isKnown else { return AccessDecision(.none, .unknownAsset) }
        if let project, !project.isKnown { return AccessDecision(.none, .unknownProject) }
        return canUse(user, knownAsset: Int(asset.raw), inProject: project != nil) {
            effectivePermission(user, project ?? .unknown).level
        }
    }

    /// RULES.md §5 for a known asset (and, `inProject`, a known project whose
    /// `EffectivePermission` for the user `projectLevel` gives, asked only when step 5 needs
    /// it): shared by `canUse` and the asset lookup, which asks for the project's level once.
    @inline(__always)
    func canUse(_ user: UserKey, knownAsset a: Int, inProject: Bool, projectLevel: () -> Level) -> AccessDecision {
        var decision: AccessDecision
        if user == .unknown { return AccessDecision(.none, .unknownUser) }
        if user == .anonymous {
            decision = assets[a].builtins & BuiltinGroup.public.maskBit != 0
                ? AccessDecision(.view, .anonymousPublic) : AccessDecision(.none, .notInAssetGroups)
        } else {
            let member = users[Int(user.raw)]
            guard member.active else { return AccessDecision(.none, .userInactive) }
            if member.role == .admin {
                // Step 2.
                decision = AccessDecision(.use, .admin)
            } else if !isInAssetGroups(member, asset: a) {
                // Step 3.
                return AccessDecision(.none, .notInAssetGroups)
            } else {
                // Step 4: roles that can hold can_edit use; explorers and viewers view.
                decision = member.role.levelCap >= .canEdit ? AccessDecision(.use, .groupAccess) : AccessDecision(.view, .roleCannotUse)
            }
        }
        guard decision.access > .none, inProject else { return decision }
        // Step 5: using an asset in a project needs can_edit on it (an unknown project was
        // answered in step 1).
        if decision.access == .use, projectLevel() < .canEdit {
            return AccessDecision(.view, .projectNeedsCanEdit)
        }
        return decision
    }

    // MARK: - SeatType (RULES.md §6) and capabilities (§3)

    public func seatType(user: String) -> SeatDecision { seatType(userKey(user)) }

    public func seatType(_ user: UserKey) -> SeatDecision {
        guard user.isKnownUser else { return .none }
        let member = users[Int(user.raw)]
        guard member.active else { return .none }
        let seat: Seat
        let paid: Bool
        switch member.role {
        case .admin, .manager, .editor: (seat, paid) = (.paidAuthor, true)
        case .explorer: (seat, paid) = (.paidExplorer, true)
        case .viewer: (seat, paid) = (.viewer, viewerSeatsPaid)
        case .guest: (seat, paid) = (.guest, false)
        }
        return SeatDecision(seat: seat, paid: paid, role: member.role, roleSource: member.roleSource, planDowngrade: member.planDowngrade)
    }

    public func capabilities(user: String) -> CapabilitySet { capabilities(userKey(user)) }

    /// The capabilities of the user's resolved role; none for unknown, inactive or anonymous.
    public func capabilities(_ user: UserKey) -> CapabilitySet {
        role(user).map { CapabilitySet(role: $0) } ?? .empty
    }

    /// The resolved role of an active, known user.
    public func role(_ user: UserKey) -> Role? {
        guard user.isKnownUser else { return nil }
        let member = users[Int(user.raw)]
        return member.active ? member.role : nil
    }

    // MARK: - Footprint

    /// Approximate heap bytes held by the snapshot's tables. A snapshot built by a delta
    /// shares its unchanged tables with the snapshot it was built from: each snapshot's
    /// footprint counts them, so two live snapshots' footprints overstate the memory held.
    public var footprint: Int {
        userIds.footprint + groupIds.footprint + assetIds.footprint + projectIds.footprint
            + users.footprint + userGroups.footprint + assets.footprint + assetGroups.footprint
            + projects.footprint + userGrants.footprint + groupGrants.footprint + projectAssets.footprint
            + userProjectStart.footprint + userProjects.footprint + groupProjectStart.footprint
            + groupProjects.footprint + groupMemberStart.footprint + groupMembers.footprint
            + workspaceSharedStart.footprint + workspaceShared.footprint + publicShared.footprint + admins.footprint
            + projectGrantCounts.footprint
    }
}
