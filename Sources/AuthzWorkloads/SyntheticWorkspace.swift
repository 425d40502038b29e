public import AuthzEngine

/// A deterministic pseudo-random generator (SplitMix64): the same seed always gives the
/// same workspace, on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// Uniform in 0 ..< bound.
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next() % UInt64(bound))
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Skewed towards 0: index `i` is drawn with density ∝ 1/√i (a few ids are hot).
    public mutating func skewed(_ bound: Int) -> Int {
        let u = unit()
        return min(bound - 1, Int(Double(bound) * u * u))
    }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { unit() < p }
}

/// Synthetic workspaces with realistic shapes, for load tests and property tests.
///
/// Shapes: roles skewed towards viewers and editors; some users come from the directory
/// (roles from two mapped groups), some from the allowed domain, some are invited guests,
/// about 3% are inactive; group sizes follow a power law (a few huge groups such as
/// "everyone in engineering", most small); assets are shared with the workspace, custom
/// groups, guests, the public or Admins only; most projects use one to three assets;
/// grants favour popular users and groups.
public enum SyntheticWorkspace {
    public struct Parameters: Sendable, Equatable {
        public var users: Int
        public var groups: Int
        public var projects: Int
        /// The mean number of grants per project (drawn uniformly in 0 ... 2 × mean).
        public var grantsPerProject: Int
        /// The number of assets; nil means `max(8, groups / 50)`.
        public var assets: Int?
        public var seed: UInt64

        public init(users: Int, groups: Int, projects: Int, grantsPerProject: Int, assets: Int? = nil, seed: UInt64) {
            self.users = users
            self.groups = groups
            self.projects = projects
            self.grantsPerProject = grantsPerProject
            self.assets = assets
            self.seed = seed
        }
    }

    public static func userId(_ i: Int) -> String { "u-" + padded(i, 6) }
    public static func groupId(_ i: Int) -> String { "g-" + padded(i, 5) }
    public static func assetId(_ i: Int) -> String { "a-" + padded(i, 4) }
    public static func projectId(_ i: Int) -> String { "p-" + padded(i, 6) }

    public static func generate(_ parameters: Parameters) -> Workspace {
        var rng = SplitMix64(seed: parameters.seed)
        let userCount = max(1, parameters.users)
        let groupCount = max(2, parameters.groups)
        let assetCount = max(1, parameters.assets ?? max(8, groupCount / 50))
        let projectCount = max(0, parameters.projects)

        // Groups 0 and 1 are the directory groups mapped to admin and editor.
        let settings = WorkspaceSettings(
            plan: .enterprise,
            allowedDomains: ["example.com"],
            defaultDomainRole: .viewer,
            viewerSeatsPaid: false,
            directorySync: DirectorySync(enabled: true, roleSync: true, roleMappings: [
                RoleMapping(group: groupId(0), role: .admin),
                RoleMapping(group: groupId(1), role: .editor),
            ])
        )

        // Users.
        var users: [User] = []
        users.reserveCapacity(userCount)
        var directoryUsers: [Int] = []
        for i in 0 ..< userCount {
            let id = userId(i)
            let draw = rng.unit()
            var user: User
            if draw < 0.15 {
                user = User(id: id, email: "\(id)@example.com", origin: .directory)
                directoryUsers.append(i)
            } else if draw < 0.65 {
                let r = rng.unit()
                let role: Role = r < 0.01 ? .admin : r < 0.04 ? .manager : r < 0.34 ? .editor : r < 0.49 ? .explorer : .viewer
                user = User(id: id, email: "\(id)@example.com", origin: .manual, role: role)
            } else if draw < 0.90 {
                user = User(id: id, email: "\(id)@Example.com", origin: .domain)
            } else {
                user = User(id: id, email: "\(id)@partner-\(rng.below(50)).io", origin: .invite)
            }
            user.active = !rng.chance(0.03)
            users.append(user)
        }

        // Groups: power-law sizes; members are distinct (a random start and an odd stride
        // over a power-of-two-free walk modulo the user count).
        var groups: [Group] = []
        groups.reserveCapacity(groupCount)
        for g in 0 ..< groupCount {
            var members: [String] = []
            if g < 2, !directoryUsers.isEmpty {
                // Mapped directory groups: ~5% (admins) and ~35% (editors) of directory users.
                let share = g == 0 ? 0.05 : 0.35
                for u in directoryUsers where rng.chance(share) { members.append(userId(u)) }
            } else {
                let rank = max(1, g - 1)
                let size = min(userCount, max(3, Int(Double(userCount) * 0.4 / Double(rank))))
                let start = rng.below(userCount)
                let stride = coprimeStride(userCount, &rng)
                members.reserveCapacity(size)
                for k in 0 ..< size { members.append(userId((start + k * stride) % userCount)) }
            }
            let source: GroupSource = g < 2 || rng.chance(0.3) ? .directory : .workspace
            groups.append(Group(id: groupId(g), name: "Group \(g)", source: source, members: members))
        }

        // Assets.
        var assets: [Asset] = []
        assets.reserveCapacity(assetCount)
        for a in 0 ..< assetCount {
            let kind = AssetKind.allCases[a % AssetKind.allCases.count]
            let draw = rng.unit()
            var groupsWithAccess: [String]
            if draw < 0.40 {
                groupsWithAccess = [BuiltinGroup.workspace.name]
            } else if draw < 0.80 {
                groupsWithAccess = []
                for _ in 0 ..< 1 + rng.below(3) {
                    let id = groupId(2 + rng.skewed(max(1, groupCount - 2)))
                    if !groupsWithAccess.contains(id) { groupsWithAccess.append(id) }
                }
            } else if draw < 0.90 {
                groupsWithAccess = [BuiltinGroup.workspace.name, BuiltinGroup.workspaceGuests.name]
            } else if draw < 0.95 {
                groupsWithAccess = [BuiltinGroup.public.name]
            } else {
                groupsWithAccess = []
            }
            assets.append(Asset(id: assetId(a), kind: kind, name: "\(kind.name) \(a)", groups: groupsWithAccess))
        }

        // Projects.
        let grantLevels: [Level] = [.canViewApp, .canView, .canView, .canExplore, .canEdit, .canEdit, .fullAccess]
        var projects: [Project] = []
        projects.reserveCapacity(projectCount)
        for p in 0 ..< projectCount {
            var project = Project(id: projectId(p))
            if rng.chance(0.7) { project.owner = userId(rng.below(userCount)) }
            let access = rng.unit()
            project.workspaceAccess = access < 0.40 ? .none : access < 0.70 ? .canView : access < 0.85 ? .canViewApp : access < 0.95 ? .canEdit : .canExplore
            project.publicAccess = rng.chance(0.05) ? .canViewApp : .none
            let grantCount = parameters.grantsPerProject > 0 ? rng.below(2 * parameters.grantsPerProject + 1) : 0
            project.grants.reserveCapacity(grantCount)
            for _ in 0 ..< grantCount {
                let level = grantLevels[rng.below(grantLevels.count)]
                if rng.chance(0.7) {
                    project.grants.append(.user(userId(rng.skewed(userCount)), level))
                } else {
                    project.grants.append(.group(groupId(2 + rng.skewed(max(1, groupCount - 2))), level))
                }
            }
            if rng.chance(0.8) {
                for _ in 0 ..< 1 + rng.below(3) {
                    let id = assetId(rng.skewed(assetCount))
                    if !project.assets.contains(id) { project.assets.append(id) }
                }
            }
            projects.append(project)
        }
        return Workspace(settings: settings, users: users, groups: groups, assets: assets, projects: projects)
    }

    private static func coprimeStride(_ n: Int, _ rng: inout SplitMix64) -> Int {
        guard n > 2 else { return 1 }
        while true {
            let candidate = 1 + rng.below(n - 1)
            if gcd(candidate, n) == 1 { return candidate }
        }
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    private static func padded(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}
