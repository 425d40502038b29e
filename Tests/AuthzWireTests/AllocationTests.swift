import AuthzEngine
import AuthzWire
import CAllocCounter
import Testing

/// The hot paths the server runs per frame must not touch the heap: finding a frame, and
/// encoding an answer into an output buffer (the message is built in stack scratch memory).
@Suite("Allocations", .enabled(if: authz_alloc_counter_enabled() != 0, "allocations are not counted under a sanitizer"))
struct AllocationTests {
    /// Heap allocations `body` makes on this thread once warmed up: the first run may fill
    /// the runtime's one-time caches (type metadata), so it runs once unmeasured.
    func allocations(_ body: () -> Void) -> UInt64 {
        body()
        let before = authz_thread_allocations()
        body()
        return authz_thread_allocations() - before
    }

    @Test func findingFramesDoesNotAllocate() {
        let bytes = frame(
            WireRequest(callId: 1, method: .check(.canUse(.init(user: "u-1", asset: "a-1", project: "p-1")))))
        bytes.withUnsafeBytes { buffer in
            let parser = FrameParser()
            var frames = 0
            let count = allocations {
                frames = 0
                for length in 0...buffer.count {
                    if case .frame = parser.parse(UnsafeRawBufferPointer(rebasing: buffer[..<length])) { frames += 1 }
                }
            }
            #expect(count == 0)
            #expect(frames == 1)
        }
    }

    @Test func encodingAnswersDoesNotAllocate() {
        let responses = [
            WireResponse(
                callId: 1, snapshotVersion: 7, answer: .check(.canUse(.init(access: .use, reason: .groupAccess)))),
            WireResponse(
                callId: 2, snapshotVersion: 7,
                answer: .check(
                    .effectivePermission(
                        .init(
                            level: .canView, reason: .assetDowngrade,
                            steps: [
                                .init(reason: .groupGrant, level: .canEdit, subject: "group-with-a-long-identifier"),
                                .init(reason: .assetDowngrade, level: .canView, subject: "secret:warehouse-prod"),
                            ])))),
            WireResponse(
                callId: 3, snapshotVersion: 7,
                answer: .check(.seatType(.init(seat: .viewer, paid: false, role: .viewer, roleSource: .explicit)))),
            WireResponse(callId: 4, snapshotVersion: 7, answer: .check(.capabilities(Capability.allCases))),
            WireResponse(
                callId: 5, snapshotVersion: 7,
                answer: .batch(Array(repeating: .canUse(.init(access: .view, reason: .roleCannotUse)), count: 8))),
            WireResponse(callId: 6, error: WireError(.invalidArgument, "batch.checks[3].can_use.asset: the id is empty")),
        ]
        var output = [UInt8](repeating: 0, count: 4096)
        output.withUnsafeMutableBytes { buffer in
            var written = 0
            let count = allocations {
                written = 0
                // Indices, not `for response in responses`: an unoptimised for-in over
                // an array of structs this size allocates per element itself.
                for index in responses.indices {
                    let response = responses[index]
                    written += response.withFrameWriter { _, write in write(buffer) }
                    written += response.encode(into: buffer) - response.encodedSize()
                }
            }
            #expect(count == 0)
            #expect(written == responses.map { $0.encodedSize() }.reduce(0, +))
        }
    }
}
