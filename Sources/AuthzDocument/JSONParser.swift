// A strict RFC 8259 JSON parser over UTF-8 bytes. No Foundation.
//
// - The whole input must be one JSON value surrounded by optional whitespace (space, tab,
//   line feed, carriage return); anything after it is an error. A leading UTF-8 byte order
//   mark is ignored (RFC 8259 §8.1 allows that).
// - Strings must be valid UTF-8 without unescaped control characters; every escape is
//   supported, `\uXXXX` surrogate pairs are combined and a lone surrogate is an error.
// - Numbers follow the RFC grammar exactly (no leading zeros, no `+`, no `.5`, no NaN or
//   Infinity); a number too large for a `Double` is an error.
// - Nesting deeper than `maxDepth` arrays/objects is an error. The parser is iterative, so
//   the limit protects memory and consumers that recurse, not the parser's own stack.
// - Repeated object keys are kept (in order) unless `rejectDuplicateKeys` is set.

/// Why a JSON text could not be parsed, and where.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong, e.g. "expected ',' or '}' after object member".
    public var message: String
    /// Byte offset of the problem, from 0.
    public var offset: Int
    /// Line of the problem, from 1 (lines end at line feeds).
    public var line: Int
    /// Column of the problem, from 1, in Unicode scalars.
    public var column: Int

    public init(message: String, offset: Int, line: Int, column: Int) {
        self.message = message
        self.offset = offset
        self.line = line
        self.column = column
    }

    /// "expected ',' or '}' after object member at line 3 column 7".
    public var description: String { "\(message) at line \(line) column \(column)" }
}

extension JSONValue {
    /// The nesting depth `parse` accepts by default.
    public static let defaultMaxDepth = 512

    /// Parses one JSON text from UTF-8 bytes.
    ///
    /// - Parameters:
    ///   - maxDepth: the deepest nesting of arrays and objects accepted.
    ///   - rejectDuplicateKeys: make a key repeated within one object an error (by default
    ///     both members are kept, in order, and the caller decides).
    public static func parse(
        _ bytes: some Collection<UInt8>,
        maxDepth: Int = defaultMaxDepth,
        rejectDuplicateKeys: Bool = false
    ) throws(JSONParseError) -> JSONValue {
        let result =
            bytes.withContiguousStorageIfAvailable { buffer in
                parseResult(buffer, maxDepth: maxDepth, rejectDuplicateKeys: rejectDuplicateKeys)
            }
            ?? ContiguousArray(bytes).withUnsafeBufferPointer { buffer in
                parseResult(buffer, maxDepth: maxDepth, rejectDuplicateKeys: rejectDuplicateKeys)
            }
        return try result.get()
    }

    /// Parses one JSON text.
    public static func parse(
        _ string: some StringProtocol,
        maxDepth: Int = defaultMaxDepth,
        rejectDuplicateKeys: Bool = false
    ) throws(JSONParseError) -> JSONValue {
        try parse(string.utf8, maxDepth: maxDepth, rejectDuplicateKeys: rejectDuplicateKeys)
    }

    private static func parseResult(
        _ buffer: UnsafeBufferPointer<UInt8>,
        maxDepth: Int,
        rejectDuplicateKeys: Bool
    ) -> Result<JSONValue, JSONParseError> {
        var parser = JSONParser(buffer, maxDepth: maxDepth, rejectDuplicateKeys: rejectDuplicateKeys)
        do {
            return .success(try parser.parseDocument())
        } catch {
            return .failure(error.located(in: buffer))
        }
    }
}

// MARK: - Implementation

/// A parse failure before its line and column are known.
struct JSONParseFailure: Error {
    var message: String
    var offset: Int

    func located(in bytes: UnsafeBufferPointer<UInt8>) -> JSONParseError {
        let end = min(max(offset, 0), bytes.count)
        var line = 1
        var column = 1
        for byte in bytes[0..<end] {
            if byte == 0x0A {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
        }
        return JSONParseError(message: message, offset: end, line: line, column: column)
    }
}

private enum ASCII {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let slash = UInt8(ascii: "/")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")
    static let lineFeed = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
}

/// Exact powers of ten for the fast number path.
private let exactPowersOfTen: [Double] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]

struct JSONParser {
    private struct Frame {
        var isObject: Bool
        /// Where this container's values start in `values`.
        var valueStart: Int
        /// Where this object's keys start in `keys`.
        var keyStart: Int
        /// Keys seen so far, built once an object gets large (duplicate rejection only).
        var keySet: Set<String>?
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private let count: Int
    private var position = 0
    private let maxDepth: Int
    private let rejectDuplicateKeys: Bool

    /// Values of the open containers, flattened.
    private var values: [JSONValue] = []
    /// Keys of the open objects, flattened.
    private var keys: [String] = []
    private var frames: [Frame] = []
    /// Reused buffer for strings with escapes.
    private var scratch: [UInt8] = []

    init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, rejectDuplicateKeys: Bool) {
        self.bytes = bytes
        self.count = bytes.count
        self.maxDepth = max(maxDepth, 0)
        self.rejectDuplicateKeys = rejectDuplicateKeys
        // Room for a typical JSON Lines record without regrowing.
        values.reserveCapacity(16)
        keys.reserveCapacity(16)
        frames.reserveCapacity(4)
    }

    // MARK: Driver

    mutating func parseDocument() throws(JSONParseFailure) -> JSONValue {
        if count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            position = 3
        }
        parsing: while true {
            // Parse the start of a value.
            skipWhitespace()
            guard position < count else {
                throw failure("unexpected end of input, expected a value")
            }
            var value: JSONValue
            let byte = bytes[position]
            switch byte {
            case ASCII.openBrace:
                try checkDepth()
                position += 1
                skipWhitespace()
                if position < count, bytes[position] == ASCII.closeBrace {
                    position += 1
                    value = .object(JSONObject())
                } else {
                    frames.append(Frame(isObject: true, valueStart: values.count, keyStart: keys.count))
                    try parseKey()
                    continue parsing
                }
            case ASCII.openBracket:
                try checkDepth()
                position += 1
                skipWhitespace()
                if position < count, bytes[position] == ASCII.closeBracket {
                    position += 1
                    value = .array([])
                } else {
                    frames.append(Frame(isObject: false, valueStart: values.count, keyStart: keys.count))
                    continue parsing
                }
            case ASCII.quote:
                value = .string(try parseString())
            case UInt8(ascii: "t"):
                try expectLiteral("true")
                value = .bool(true)
            case UInt8(ascii: "f"):
                try expectLiteral("false")
                value = .bool(false)
            case UInt8(ascii: "n"):
                try expectLiteral("null")
                value = .null
            case ASCII.minus, ASCII.zero...ASCII.nine:
                value = .number(try parseNumber())
            default:
                throw unexpected(byte, expected: "a value")
            }

            // A value is complete: store it in its container, closing containers as needed.
            while true {
                guard let frame = frames.last else {
                    skipWhitespace()
                    if position < count {
                        throw unexpected(bytes[position], expected: "the end of input after the JSON value")
                    }
                    return value
                }
                values.append(value)
                skipWhitespace()
                let close = frame.isObject ? ASCII.closeBrace : ASCII.closeBracket
                let expectation =
                    frame.isObject ? "expected ',' or '}' after object member" : "expected ',' or ']' after array element"
                guard position < count else {
                    throw failure("unexpected end of input, \(expectation)")
                }
                let next = bytes[position]
                if next == ASCII.comma {
                    position += 1
                    if frame.isObject {
                        skipWhitespace()
                        try parseKey()
                    }
                    continue parsing
                } else if next == close {
                    position += 1
                    value = closeContainer()
                } else {
                    throw failure(expectation + ", found \(describe(next))")
                }
            }
        }
    }

    private func checkDepth() throws(JSONParseFailure) {
        if frames.count >= maxDepth {
            throw failure("nesting deeper than \(maxDepth) levels")
        }
    }

    /// Parses `"key" :` inside an object (position at the key's quote).
    private mutating func parseKey() throws(JSONParseFailure) {
        guard position < count else {
            throw failure("unexpected end of input, expected an object key")
        }
        guard bytes[position] == ASCII.quote else {
            throw unexpected(bytes[position], expected: "'\"' to begin an object key")
        }
        let keyOffset = position
        let key = try parseString()
        if rejectDuplicateKeys {
            try checkDuplicate(key, at: keyOffset)
        }
        skipWhitespace()
        guard position < count, bytes[position] == ASCII.colon else {
            if position < count {
                throw unexpected(bytes[position], expected: "':' after object key")
            }
            throw failure("unexpected end of input, expected ':' after object key")
        }
        position += 1
        keys.append(key)
    }

    private mutating func checkDuplicate(_ key: String, at offset: Int) throws(JSONParseFailure) {
        let top = frames.count - 1
        let start = frames[top].keyStart
        let duplicate: Bool
        if frames[top].keySet != nil {
            duplicate = frames[top].keySet?.insert(key).inserted == false
        } else if keys.count - start < 16 {
            duplicate = keys[start...].contains(key)
        } else {
            var set = Set(keys[start...])
            duplicate = !set.insert(key).inserted
            frames[top].keySet = set
        }
        if duplicate {
            throw JSONParseFailure(message: "duplicate object key \(quotedForMessage(key))", offset: offset)
        }
    }

    private mutating func closeContainer() -> JSONValue {
        let frame = frames.removeLast()
        let valueCount = values.count - frame.valueStart
        if frame.isObject {
            var members: [JSONObject.Member] = []
            members.reserveCapacity(valueCount)
            for index in 0..<valueCount {
                members.append((key: keys[frame.keyStart + index], value: values[frame.valueStart + index]))
            }
            values.removeSubrange(frame.valueStart...)
            keys.removeSubrange(frame.keyStart...)
            return .object(JSONObject(members))
        } else {
            let elements = Array(values[frame.valueStart...])
            values.removeSubrange(frame.valueStart...)
            return .array(elements)
        }
    }

    // MARK: Tokens

    @inline(__always)
    private mutating func skipWhitespace() {
        while position < count {
            switch bytes[position] {
            case ASCII.space, ASCII.lineFeed, ASCII.carriageReturn, ASCII.tab: position += 1
            default: return
            }
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseFailure) {
        let length = literal.utf8CodeUnitCount
        let matches = literal.withUTF8Buffer { expected in
            guard position + length <= count else { return false }
            for index in 0..<length where bytes[position + index] != expected[index] {
                return false
            }
            return true
        }
        guard matches else {
            throw failure("invalid literal, expected '\(literal)'")
        }
        position += length
    }

    /// Parses a string (position at its opening quote).
    private mutating func parseString() throws(JSONParseFailure) -> String {
        let openingQuote = position
        position += 1
        let start = position
        // Fast path: no escapes.
        while position < count {
            let byte = bytes[position]
            if byte == ASCII.quote {
                let string = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
                position += 1
                return string
            } else if byte == ASCII.backslash {
                break
            } else if byte < 0x20 {
                throw controlCharacter(byte)
            } else if byte < 0x80 {
                position += 1
            } else {
                try skipUTF8Sequence()
            }
        }
        guard position < count else {
            throw JSONParseFailure(message: "unterminated string", offset: openingQuote)
        }
        // Slow path: decode escapes into the scratch buffer.
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<position]))
        while position < count {
            let byte = bytes[position]
            if byte == ASCII.quote {
                position += 1
                return String(decoding: scratch, as: UTF8.self)
            } else if byte == ASCII.backslash {
                try parseEscape()
            } else if byte < 0x20 {
                throw controlCharacter(byte)
            } else if byte < 0x80 {
                scratch.append(byte)
                position += 1
            } else {
                let sequenceStart = position
                try skipUTF8Sequence()
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[sequenceStart..<position]))
            }
        }
        throw JSONParseFailure(message: "unterminated string", offset: openingQuote)
    }

    /// Decodes one escape sequence into `scratch` (position at the backslash).
    private mutating func parseEscape() throws(JSONParseFailure) {
        guard position + 1 < count else {
            throw failure("unterminated escape sequence")
        }
        let escaped = bytes[position + 1]
        switch escaped {
        case ASCII.quote, ASCII.backslash, ASCII.slash: scratch.append(escaped)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            let escapeStart = position
            var scalar = try hex4(at: position + 2)
            position += 6
            if (0xD800...0xDBFF).contains(scalar) {
                guard position + 1 < count, bytes[position] == ASCII.backslash, bytes[position + 1] == UInt8(ascii: "u")
                else {
                    throw JSONParseFailure(
                        message: "unpaired UTF-16 high surrogate \\u\(hex(scalar)) (expected a \\uDC00-\\uDFFF escape after it)",
                        offset: escapeStart)
                }
                let low = try hex4(at: position + 2)
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw JSONParseFailure(
                        message: "unpaired UTF-16 high surrogate \\u\(hex(scalar)) (followed by \\u\(hex(low)))",
                        offset: escapeStart)
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                position += 6
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw JSONParseFailure(
                    message: "unpaired UTF-16 low surrogate \\u\(hex(scalar))", offset: escapeStart)
            }
            appendUTF8(scalar)
            return
        default:
            throw failure("invalid escape sequence '\\\(describeRaw(escaped))'")
        }
        position += 2
    }

    private func hex4(at offset: Int) throws(JSONParseFailure) -> UInt32 {
        guard offset + 4 <= count else {
            throw JSONParseFailure(message: "invalid \\u escape: expected 4 hexadecimal digits", offset: offset - 2)
        }
        var value: UInt32 = 0
        for index in offset..<(offset + 4) {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case ASCII.zero...ASCII.nine: digit = byte - ASCII.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default:
                throw JSONParseFailure(message: "invalid \\u escape: expected 4 hexadecimal digits", offset: offset - 2)
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    private mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case 0..<0x80:
            scratch.append(UInt8(scalar))
        case 0x80..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// Validates and skips one multi-byte UTF-8 sequence (Unicode 15, table 3-7):
    /// rejects overlong forms, surrogates and values above U+10FFFF.
    private mutating func skipUTF8Sequence() throws(JSONParseFailure) {
        let lead = bytes[position]
        let continuationCount: Int
        var secondLow: UInt8 = 0x80
        var secondHigh: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: continuationCount = 1
        case 0xE0: continuationCount = 2; secondLow = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: continuationCount = 2
        case 0xED: continuationCount = 2; secondHigh = 0x9F
        case 0xF0: continuationCount = 3; secondLow = 0x90
        case 0xF1...0xF3: continuationCount = 3
        case 0xF4: continuationCount = 3; secondHigh = 0x8F
        default:
            throw failure("invalid UTF-8 byte 0x\(hex(UInt32(lead), width: 2)) in string")
        }
        guard position + continuationCount < count else {
            throw failure("truncated UTF-8 sequence in string")
        }
        let second = bytes[position + 1]
        guard second >= secondLow, second <= secondHigh else {
            throw failure("invalid UTF-8 sequence in string")
        }
        var index = 2
        while index <= continuationCount {
            guard bytes[position + index] & 0xC0 == 0x80 else {
                throw failure("invalid UTF-8 sequence in string")
            }
            index += 1
        }
        position += continuationCount + 1
    }

    /// Parses a number (position at '-' or its first digit).
    private mutating func parseNumber() throws(JSONParseFailure) -> Double {
        let start = position
        var negative = false
        if bytes[position] == ASCII.minus {
            negative = true
            position += 1
        }
        // Up to 19 significant digits are accumulated exactly; the rest only shift the
        // decimal exponent and send the number to the slow path.
        var mantissa: UInt64 = 0
        var significantDigits = 0
        var exponent = 0
        var truncated = false

        guard position < count, isDigit(bytes[position]) else {
            throw failure("invalid number: expected a digit")
        }
        if bytes[position] == ASCII.zero {
            position += 1
            if position < count, isDigit(bytes[position]) {
                throw failure("invalid number: leading zeros are not allowed")
            }
        } else {
            while position < count, isDigit(bytes[position]) {
                let digit = UInt64(bytes[position] - ASCII.zero)
                if significantDigits < 19 {
                    mantissa = mantissa * 10 + digit
                    significantDigits += 1
                } else {
                    truncated = truncated || digit != 0
                    exponent += 1
                }
                position += 1
            }
        }
        var isInteger = true
        if position < count, bytes[position] == ASCII.dot {
            isInteger = false
            position += 1
            guard position < count, isDigit(bytes[position]) else {
                throw failure("invalid number: expected a digit after the decimal point")
            }
            while position < count, isDigit(bytes[position]) {
                let digit = UInt64(bytes[position] - ASCII.zero)
                if mantissa == 0 && digit == 0 {
                    exponent -= 1
                } else if significantDigits < 19 {
                    mantissa = mantissa * 10 + digit
                    significantDigits += 1
                    exponent -= 1
                } else {
                    truncated = truncated || digit != 0
                }
                position += 1
            }
        }
        if position < count, bytes[position] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            position += 1
            var exponentNegative = false
            if position < count, bytes[position] == ASCII.minus || bytes[position] == ASCII.plus {
                exponentNegative = bytes[position] == ASCII.minus
                position += 1
            }
            guard position < count, isDigit(bytes[position]) else {
                throw failure("invalid number: expected a digit in the exponent")
            }
            var explicitExponent = 0
            while position < count, isDigit(bytes[position]) {
                // Saturate: anything this large is infinity or zero anyway.
                if explicitExponent < 100_000 {
                    explicitExponent = explicitExponent * 10 + Int(bytes[position] - ASCII.zero)
                }
                position += 1
            }
            exponent += exponentNegative ? -explicitExponent : explicitExponent
        }

        let magnitude: Double
        if mantissa == 0 {
            magnitude = 0
        } else if !truncated, isInteger, exponent == 0, mantissa <= 1 << 53 {
            magnitude = Double(mantissa)
        } else if !truncated, mantissa < 1 << 53, exponent >= -22, exponent <= 22 {
            // Exact mantissa and power of ten: one correctly rounded operation.
            magnitude =
                exponent >= 0
                ? Double(mantissa) * exactPowersOfTen[exponent]
                : Double(mantissa) / exactPowersOfTen[-exponent]
        } else {
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
            guard let parsed = Double(text), parsed.isFinite else {
                throw JSONParseFailure(message: "number out of range", offset: start)
            }
            return parsed
        }
        guard magnitude.isFinite else {
            throw JSONParseFailure(message: "number out of range", offset: start)
        }
        return negative ? -magnitude : magnitude
    }

    @inline(__always)
    private func isDigit(_ byte: UInt8) -> Bool { byte >= ASCII.zero && byte <= ASCII.nine }

    // MARK: Errors

    private func failure(_ message: String) -> JSONParseFailure {
        JSONParseFailure(message: message, offset: position)
    }

    private func unexpected(_ byte: UInt8, expected: String) -> JSONParseFailure {
        failure("unexpected \(describe(byte)), expected \(expected)")
    }

    private func controlCharacter(_ byte: UInt8) -> JSONParseFailure {
        failure("unescaped control character U+\(hex(UInt32(byte))) in string")
    }

    private func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F {
            return "character '\(Character(Unicode.Scalar(byte)))'"
        }
        return "byte 0x\(hex(UInt32(byte), width: 2))"
    }

    private func describeRaw(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F {
            return String(Character(Unicode.Scalar(byte)))
        }
        return "<0x\(hex(UInt32(byte), width: 2))>"
    }
}

/// Upper-case hexadecimal, zero-padded to `width`.
func hex(_ value: UInt32, width: Int = 4) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}

/// A user-supplied string for an error message: JSON-quoted (control characters escaped)
/// and shortened to about 64 characters.
func quotedForMessage(_ text: String) -> String {
    var shown = text
    if text.unicodeScalars.count > 64 {
        shown = String(String.UnicodeScalarView(text.unicodeScalars.prefix(61))) + "..."
    }
    var bytes: [UInt8] = [UInt8(ascii: "'")]
    JSONWriter.appendEscapedContent(shown, to: &bytes)
    bytes.append(UInt8(ascii: "'"))
    return String(decoding: bytes, as: UTF8.self)
}
