// What every fuzz target shares: failing loudly on a broken invariant, deterministic
// randomness derived from the input (so a crash reproduces from its input file alone), and
// writing the target's seed corpus.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum Fuzz {
    /// Stops the run when `condition` is false: prints the broken invariant and aborts, which
    /// libFuzzer reports as a crash and saves the input as `crash-…`.
    @inlinable
    public static func require(
        _ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line
    ) {
        if !condition { fail(message(), file: file, line: line) }
    }

    public static func fail(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
        var text = "\n==fuzz== invariant broken at \(file):\(line): \(message)\n"
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        abort()
    }

    /// Called from `LLVMFuzzerInitialize`. With `AUTHZ_FUZZ_WRITE_SEEDS=DIR` in the
    /// environment, writes `seeds` as `DIR/NAME` files (after checking each passes
    /// `test`) and exits: `scripts/fuzz.sh --write-seeds` regenerates the committed corpus
    /// this way, with the Swift encoder of this very build.
    public static func initialize(seeds: @autoclosure () -> [(name: String, bytes: [UInt8])], test: ([UInt8]) -> Void) {
        guard let directory = getenv("AUTHZ_FUZZ_WRITE_SEEDS").map({ String(cString: $0) }) else { return }
        var names = Set<String>()
        for seed in seeds() {
            precondition(names.insert(seed.name).inserted, "two seeds named \(seed.name)")
            test(seed.bytes)
            let path = directory + "/" + seed.name
            guard let file = fopen(path, "wb") else { fail("cannot write \(path)") }
            let written = seed.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            fclose(file)
            require(written == seed.bytes.count, "short write to \(path)")
        }
        print("wrote \(names.count) seeds to \(directory)")
        exit(0)
    }
}

/// SplitMix64: a small, fast generator seeded from the input.
public struct FuzzRandom {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// Seeded by a hash (FNV-1a) of `bytes`.
    public init(hashing bytes: UnsafeRawBufferPointer) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        state = hash
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in `0..<bound` (bound > 0).
    public mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }
}

/// An exactly sized heap copy of some bytes: reading one byte past its end is an
/// AddressSanitizer report (a slice of a larger buffer would hide such an over-read).
public struct ExactBuffer: ~Copyable {
    public let bytes: UnsafeMutableRawBufferPointer

    public init(_ parts: UnsafeRawBufferPointer...) {
        let count = parts.reduce(0) { $0 + $1.count }
        bytes = .allocate(byteCount: count, alignment: 1)
        var offset = 0
        for part in parts where !part.isEmpty {
            UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<offset + part.count]).copyMemory(from: part)
            offset += part.count
        }
    }

    public var view: UnsafeRawBufferPointer { UnsafeRawBufferPointer(bytes) }

    deinit { bytes.deallocate() }
}
