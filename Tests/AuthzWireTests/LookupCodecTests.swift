import AuthzEngine
import AuthzWire
import AuthzWorkloads
import Testing
import WireTestSupport

/// The lookups' requests and listings on the wire (ids and page tokens are `bytes` fields).
@Suite("Lookup codec")
struct LookupCodecTests {
    static let requests: [WireRequest] = [
        WireRequest(callId: 1, method: .lookup(.projects(.init(user: "u-1")))),
        WireRequest(
            callId: 2, minSnapshotVersion: 4, deadlineMs: 9,
            method: .lookup(.projects(.init(user: "", minLevel: .canEdit, pageSize: 1_000, pageToken: "AQEB-_x")))),
        WireRequest(callId: 3, method: .lookup(.projectAccess(.init(project: "p:1", minLevel: .fullAccess, pageSize: 5)))),
        WireRequest(callId: 4, method: .lookup(.assets(.init(user: "u", project: "p", minAccess: .use, pageToken: "t")))),
        WireRequest(callId: 5, method: .lookup(.assets(.init(user: "u")))),
    ]

    @Test(arguments: requests)
    func requestsRoundTrip(request: WireRequest) throws {
        #expect(try decodeRequest(payload(of: request)).get() == request)
    }

    @Test func theWireFormatIsTheHandWrittenOne() throws {
        let request = WireRequest(
            callId: 7,
            method: .lookup(.assets(.init(user: "u", project: "p", minAccess: .view, pageSize: 3, pageToken: "tok"))))
        let expected =
            PB.varint(1, 7)
            + PB.bytes(19, PB.string(1, "u") + PB.string(2, "p") + PB.varint(3, 2) + PB.varint(4, 3) + PB.string(5, "tok"))
        #expect(payload(of: request) == expected)
        // Unset fields are absent; an empty message is the first page for the anonymous viewer.
        #expect(try decodeRequest(PB.bytes(17, [])).get().method == .lookup(.projects(.init(user: ""))))
    }

    /// A lookup request with every id field set to `id` (raw bytes, as any client may send).
    static func payloads(withId id: [UInt8]) -> [(field: String, payload: [UInt8])] {
        [
            ("list_projects.user", PB.bytes(17, PB.bytes(1, id))),
            ("list_project_access.project", PB.bytes(18, PB.bytes(1, id))),
            ("list_assets.user", PB.bytes(19, PB.bytes(1, id))),
            ("list_assets.project", PB.bytes(19, PB.string(1, "u") + PB.bytes(2, id))),
        ].map { (field: $0.0, payload: PB.varint(1, 41) + $0.1) }
    }

    @Test(arguments: [
        Array("alice\u{0}admin".utf8), [0], Array("alice".utf8) + [0], Array("a b".utf8), Array("caf\u{E9}".utf8),
        [0xFF, 0xFE], [UInt8](repeating: UInt8(ascii: "x"), count: 129),
    ])
    func badIdsNameTheirField(id: [UInt8]) throws {
        for (field, payload) in Self.payloads(withId: id) {
            let error = try #require(requestError(payload), "\(field) accepted \(id)")
            #expect(error.callId == 41)
            #expect(error.error.code == .invalidArgument)
            #expect(error.error.message.hasPrefix(field + ": "), "\(error.error.message)")
            if id.contains(0) {
                #expect(error.error.message.contains("0x00"), "a NUL is named, not cut off: \(error.error.message)")
            }
        }
    }

    @Test func emptyIds() throws {
        for (field, payload) in Self.payloads(withId: []) {
            let error = requestError(payload)
            if field == "list_project_access.project" {
                #expect(error?.error.message == "list_project_access.project: the id is empty")
            } else {
                #expect(error == nil, "\(field): the empty user is the anonymous viewer, the empty project none")
            }
        }
        #expect(requestError(PB.bytes(18, []))?.error.code == .invalidArgument)
    }

    @Test func minimumsBelowTheLeastOrUnknownAreInvalid() throws {
        let cases: [([UInt8], String)] = [
            (PB.bytes(17, PB.varint(2, 1)), "list_projects.min_level: LEVEL_NONE is below LEVEL_CAN_VIEW_APP"),
            (PB.bytes(18, PB.string(1, "p") + PB.varint(2, 1)), "list_project_access.min_level: LEVEL_NONE is below"),
            (PB.bytes(19, PB.varint(3, 1)), "list_assets.min_access: ACCESS_NONE is below ACCESS_VIEW"),
            (PB.bytes(17, PB.varint(2, 99)), "list_projects.min_level: 99 is not a known Level value"),
            (PB.bytes(19, PB.enumValue(3, -1)), "list_assets.min_access: -1 is not a known Access value"),
        ]
        for (payload, message) in cases {
            let error = try #require(requestError(PB.varint(1, 6) + payload))
            #expect(error.callId == 6)
            #expect(error.error.code == .invalidArgument)
            #expect(error.error.message.hasPrefix(message), "\(error.error.message)")
        }
        // Every level from can_view_app up, and UNSPECIFIED (nil: the least).
        for level in Level.allCases where level >= .canViewApp {
            let request = WireRequest(callId: 1, method: .lookup(.projects(.init(user: "u", minLevel: level))))
            #expect(try decodeRequest(payload(of: request)).get() == request)
        }
    }

    @Test func aPageTokenIsPassedOnAsTextWhateverItsBytes() throws {
        // The engine judges tokens (malformed, foreign, forged); the codec keeps every byte
        // (invalid UTF-8 repaired), so nothing is cut at a NUL.
        let request = try decodeRequest(PB.bytes(17, PB.bytes(4, [0x41, 0, 0x42, 0xFF]))).get()
        #expect(request.method == .lookup(.projects(.init(user: "", pageToken: "A\u{0}B\u{FFFD}"))))
    }

    static let responses: [WireResponse] = [
        WireResponse(
            callId: 1, snapshotVersion: 9,
            answer: .lookup(
                .projects(
                    .init(
                        items: [.init(id: "p-1", level: .canView, reason: .workspaceShare),
                                .init(id: "p-2", level: .fullAccess, reason: .owner)],
                        nextPageToken: "AQEB", snapshotChanged: true, pageSize: 2)))),
        WireResponse(
            callId: 2, snapshotVersion: 9,
            answer: .lookup(.projectAccess(.init(items: [], pageSize: 1_000, pageSizeClamped: true, reason: .unknownProject)))),
        WireResponse(
            callId: 3, snapshotVersion: 1,
            answer: .lookup(
                .assets(.init(items: [.init(id: "a-1", access: .use, reason: .admin)], pageSize: 100, reason: nil)))),
        WireResponse(callId: 4, snapshotVersion: 1, answer: .lookup(.assets(.init(items: [], pageSize: 100, reason: .userInactive)))),
    ]

    @Test(arguments: responses)
    func listingsRoundTrip(response: WireResponse) throws {
        #expect(try decodeResponse(payload(of: response)).get() == response)
    }

    /// The bytes protobuf would write for a listing response (an oracle independent of the
    /// hand-written encoder and of protobuf-c).
    static func oracle(_ response: WireResponse) -> [UInt8] {
        guard case .lookup(let result) = response.answer else { return [] }
        func item(_ id: String, _ value: UInt32, _ reason: UInt32) -> [UInt8] {
            PB.bytes(1, PB.string(1, id) + PB.varint(2, UInt64(value)) + PB.varint(3, UInt64(reason)))
        }
        func trailer<Item>(_ listing: WireResponse.Listing<Item>) -> [UInt8] {
            var bytes: [UInt8] = []
            if !listing.nextPageToken.isEmpty { bytes += PB.string(2, listing.nextPageToken) }
            if listing.snapshotChanged { bytes += PB.varint(3, 1) }
            if listing.pageSize != 0 { bytes += PB.varint(4, UInt64(listing.pageSize)) }
            if listing.pageSizeClamped { bytes += PB.varint(5, 1) }
            if let reason = listing.reason { bytes += PB.varint(6, UInt64(reasonNumber(reason))) }
            return bytes
        }
        let (field, body): (UInt64, [UInt8])
        switch result {
        case .projects(let listing), .projectAccess(let listing):
            let items = listing.items.flatMap { item($0.id, UInt32($0.level.rawValue) + 1, reasonNumber($0.reason)) }
            if case .projects = result { field = 17 } else { field = 18 }
            body = items + trailer(listing)
        case .assets(let listing):
            field = 19
            body = listing.items.flatMap { item($0.id, UInt32($0.access.rawValue) + 1, reasonNumber($0.reason)) } + trailer(listing)
        }
        let status = (response.status.code == .ok ? [] : PB.varint(1, UInt64(response.status.code.rawValue)))
            + (response.status.message.isEmpty ? [] : PB.string(2, response.status.message))
        return (response.callId == 0 ? [] : PB.varint(1, response.callId)) + PB.bytes(2, status)
            + (response.snapshotVersion == 0 ? [] : PB.varint(3, response.snapshotVersion)) + PB.bytes(field, body)
    }

    /// The proto number of a reason: its position in the enum, plus one (UNSPECIFIED is 0).
    static func reasonNumber(_ reason: Reason) -> UInt32 { UInt32(reason.rawValue) + 1 }

    @Test func randomListingsAreEncodedAsProtobufWould() throws {
        var rng = SplitMix64(seed: 5)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-")
        func id() -> String {
            // Up to 128 bytes: items longer than 127 bytes take two length bytes.
            let length = rng.chance(0.2) ? 100 + rng.below(29) : 1 + rng.below(20)
            return String((0 ..< length).map { _ in alphabet[rng.below(alphabet.count)] })
        }
        for round in 0 ..< 200 {
            let count = rng.below(round % 10 == 0 ? 300 : 8)
            let token = rng.chance(0.5) ? "" : String(repeating: "A", count: 1 + rng.below(300))
            let reason: Reason? = rng.chance(0.3) ? Reason.allCases[rng.below(Reason.allCases.count)] : nil
            let pageSize = UInt32(rng.below(2) == 0 ? 0 : rng.below(5_000))
            let answer: WireResponse.LookupResult
            if rng.chance(0.6) {
                let items = (0 ..< count).map { _ in
                    WireResponse.LevelItem(
                        id: id(), level: Level.allCases[rng.below(6)], reason: Reason.allCases[rng.below(Reason.allCases.count)])
                }
                let listing = WireResponse.Listing(
                    items: items, nextPageToken: token, snapshotChanged: rng.chance(0.5), pageSize: pageSize,
                    pageSizeClamped: rng.chance(0.5), reason: reason)
                answer = rng.chance(0.5) ? .projects(listing) : .projectAccess(listing)
            } else {
                let items = (0 ..< count).map { _ in
                    WireResponse.AccessItem(
                        id: id(), access: Access.allCases[rng.below(3)], reason: Reason.allCases[rng.below(Reason.allCases.count)])
                }
                answer = .assets(
                    WireResponse.Listing(
                        items: items, nextPageToken: token, snapshotChanged: rng.chance(0.5), pageSize: pageSize,
                        pageSizeClamped: rng.chance(0.5), reason: reason))
            }
            let response = WireResponse(
                callId: rng.chance(0.2) ? 0 : rng.next(), status: .ok, snapshotVersion: rng.chance(0.2) ? 0 : rng.next() >> UInt64(rng.below(64)),
                answer: .lookup(answer))
            let bytes = payload(of: response)
            #expect(bytes == Self.oracle(response), "round \(round)")
            #expect(try decodeResponse(bytes).get() == response, "round \(round)")
            #expect(frame(response).count == response.encodedSize())
        }
    }

    @Test func aListingFromTheEnginesPageIsTheSameListing() throws {
        var workspace = SyntheticWorkspace.generate(.init(users: 200, groups: 20, projects: 300, grantsPerProject: 3, seed: 4))
        workspace.users.append(User(id: "u-root", email: "root@example.com", origin: .manual, role: .admin))
        let snapshot = Snapshot(workspace: workspace, version: 8)
        for pageSize in [1, 7, 300] {
            let page = try snapshot.listProjects(user: "u-root", pageSize: pageSize)
            let lazy = WireResponse.Listing<WireResponse.LevelItem>(page: page, ids: snapshot.projectIds)
            let spelled = WireResponse.Listing(
                items: page.entries.map { WireResponse.LevelItem(id: snapshot.projectIds.id(at: $0.index), level: $0.level, reason: $0.reason) },
                nextPageToken: page.nextPageToken, snapshotChanged: false, pageSize: UInt32(pageSize), reason: nil)
            #expect(lazy == spelled)
            #expect(lazy.count == page.entries.count && lazy.items.count == pageSize)
            let viaPage = WireResponse(callId: 3, snapshotVersion: 8, answer: .lookup(.projects(lazy)))
            let viaValues = WireResponse(callId: 3, snapshotVersion: 8, answer: .lookup(.projects(spelled)))
            #expect(frame(viaPage) == frame(viaValues))
            #expect(try decodeResponse(payload(of: viaPage)).get() == viaValues)
        }
    }

    @Test func aListingOnTheWire() throws {
        let response = Self.responses[0]
        let item1 = PB.string(1, "p-1") + PB.varint(2, 3) + PB.varint(3, 7)
        let item2 = PB.string(1, "p-2") + PB.varint(2, 6) + PB.varint(3, 4)
        let listing = PB.bytes(1, item1) + PB.bytes(1, item2) + PB.string(2, "AQEB") + PB.varint(3, 1) + PB.varint(4, 2)
        let expected = PB.varint(1, 1) + PB.bytes(2, []) + PB.varint(3, 9) + PB.bytes(17, listing)
        #expect(payload(of: response) == expected)
    }
}
