import AuthzEngine
import AuthzWire
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

    @Test func aListingOnTheWire() throws {
        let response = Self.responses[0]
        let item1 = PB.string(1, "p-1") + PB.varint(2, 3) + PB.varint(3, 7)
        let item2 = PB.string(1, "p-2") + PB.varint(2, 6) + PB.varint(3, 4)
        let listing = PB.bytes(1, item1) + PB.bytes(1, item2) + PB.string(2, "AQEB") + PB.varint(3, 1) + PB.varint(4, 2)
        let expected = PB.varint(1, 1) + PB.bytes(2, []) + PB.varint(3, 9) + PB.bytes(17, listing)
        #expect(payload(of: response) == expected)
    }
}
