import AuthzDocument
import Testing

/// Parses `text` expecting failure; returns the error.
private func parseError(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth, rejectDuplicateKeys: Bool = false)
    -> JSONParseError?
{
    do {
        let value = try JSONValue.parse(text, maxDepth: maxDepth, rejectDuplicateKeys: rejectDuplicateKeys)
        Issue.record("expected a parse error for \(text.debugDescription), got \(value)")
        return nil
    } catch {
        return error
    }
}

private func parseError(bytes: [UInt8]) -> JSONParseError? {
    do {
        let value = try JSONValue.parse(bytes)
        Issue.record("expected a parse error for \(bytes), got \(value)")
        return nil
    } catch {
        return error
    }
}

@Suite("JSON parser")
struct JSONParserTests {
    @Test func scalars() throws {
        #expect(try JSONValue.parse("null") == .null)
        #expect(try JSONValue.parse("true") == .bool(true))
        #expect(try JSONValue.parse("false") == .bool(false))
        #expect(try JSONValue.parse("\"hi\"") == .string("hi"))
        #expect(try JSONValue.parse(" \t\r\n 42 \n") == .number(42))
    }

    @Test func containersKeepOrder() throws {
        let value = try JSONValue.parse(#"{"b": 1, "a": [true, null, {"z": {}, "y": []}], "c": "x"}"#)
        guard case .object(let object) = value else {
            Issue.record("not an object")
            return
        }
        #expect(object.keys == ["b", "a", "c"])
        #expect(object["a"] == [true, .null, ["z": [:], "y": []]])
        #expect(value["c"] == "x")
        #expect(value["missing"] == nil)
        #expect(try JSONValue.parse("[]") == .array([]))
        #expect(try JSONValue.parse("{}") == .object(JSONObject()))
        #expect(try JSONValue.parse("[ [ ] , { } ]") == [[], [:]])
    }

    @Test func repeatedKeysAreKeptUnlessRejected() throws {
        let value = try JSONValue.parse(#"{"a": 1, "b": 2, "a": 3}"#)
        let object = try #require(value.object)
        #expect(object.count == 3)
        #expect(object["a"] == 1)
        #expect(object.duplicateKeyIndices == [2])

        let error = try #require(parseError(#"{"a": 1, "b": 2, "a": 3}"#, rejectDuplicateKeys: true))
        #expect(error.message == "duplicate object key 'a'")
        #expect(error.offset == 17)
        #expect(error.column == 18)
        // Large objects use a set; still detected.
        var members = (0..<40).map { "\"k\($0)\": \($0)" }
        members.append("\"k7\": 0")
        let big = "{" + members.joined(separator: ",") + "}"
        #expect(parseError(big, rejectDuplicateKeys: true)?.message == "duplicate object key 'k7'")
        #expect(try JSONValue.parse(big).object?.count == 41)
        // Same key in different objects is fine.
        #expect(throws: Never.self) { _ = try JSONValue.parse(#"[{"a":1},{"a":2}]"#, rejectDuplicateKeys: true) }
    }

    @Test func escapes() throws {
        #expect(try JSONValue.parse(#""\" \\ \/ \b \f \n \r \t""#) == .string("\" \\ / \u{8} \u{C} \n \r \t"))
        #expect(try JSONValue.parse(#""\u0041\u00e9\u20AC\u0000""#) == .string("Aé€\u{0}"))
        #expect(try JSONValue.parse(#""\ud83d\ude00 and \uD834\uDD1E""#) == .string("😀 and 𝄞"))
        #expect(try JSONValue.parse(#""prefix \n suffix é""#) == .string("prefix \n suffix é"))
        #expect(try JSONValue.parse("\"raw é 😀 中文\"") == .string("raw é 😀 中文"))
    }

    @Test func badEscapes() throws {
        #expect(parseError(#""\x""#)?.message == "invalid escape sequence '\\x'")
        #expect(parseError(#""\u12""#)?.message == "invalid \\u escape: expected 4 hexadecimal digits")
        #expect(parseError(#""\u12G4""#)?.message == "invalid \\u escape: expected 4 hexadecimal digits")
        let lowFirst = try #require(parseError(#""ab\udc00""#))
        #expect(lowFirst.message == "unpaired UTF-16 low surrogate \\uDC00")
        #expect(lowFirst.offset == 3)
        #expect(parseError(#""\ud800""#)?.message.hasPrefix("unpaired UTF-16 high surrogate \\uD800") == true)
        #expect(parseError(#""\ud800\u0041""#)?.message.hasPrefix("unpaired UTF-16 high surrogate \\uD800") == true)
        #expect(parseError(#""\ud800x""#)?.message.hasPrefix("unpaired UTF-16 high surrogate") == true)
        #expect(parseError("\"\\")?.message == "unterminated escape sequence")
    }

    @Test func controlCharactersAndUnterminatedStrings() throws {
        #expect(parseError("\"a\nb\"")?.message == "unescaped control character U+000A in string")
        #expect(parseError("\"a\tb\"")?.message == "unescaped control character U+0009 in string")
        #expect(parseError("\"a\u{0}b\"")?.message == "unescaped control character U+0000 in string")
        #expect(parseError("\"\\n\u{1F}\"")?.message == "unescaped control character U+001F in string")
        let unterminated = try #require(parseError("[\"abc"))
        #expect(unterminated.message == "unterminated string")
        #expect(unterminated.offset == 1)
        #expect(parseError("[\"a\\nbc")?.message == "unterminated string")
    }

    @Test func invalidUTF8() throws {
        let quote = UInt8(ascii: "\"")
        #expect(parseError(bytes: [quote, 0xFF, quote])?.message == "invalid UTF-8 byte 0xFF in string")
        #expect(parseError(bytes: [quote, 0x80, quote])?.message == "invalid UTF-8 byte 0x80 in string")
        // Overlong "/", encoded surrogate, above U+10FFFF, bad continuation.
        #expect(parseError(bytes: [quote, 0xC0, 0xAF, quote])?.message == "invalid UTF-8 byte 0xC0 in string")
        #expect(parseError(bytes: [quote, 0xE0, 0x80, 0xAF, quote])?.message == "invalid UTF-8 sequence in string")
        #expect(parseError(bytes: [quote, 0xED, 0xA0, 0x80, quote])?.message == "invalid UTF-8 sequence in string")
        #expect(parseError(bytes: [quote, 0xF4, 0x90, 0x80, 0x80, quote])?.message == "invalid UTF-8 sequence in string")
        #expect(parseError(bytes: [quote, 0xE2, 0x28, 0xA1, quote])?.message == "invalid UTF-8 sequence in string")
        #expect(parseError(bytes: [quote, 0xE2, 0x82])?.message == "truncated UTF-8 sequence in string")
        // Same checks on the slow (escaped) path.
        #expect(
            parseError(bytes: [quote, UInt8(ascii: "\\"), UInt8(ascii: "n"), 0xED, 0xA0, 0x80, quote])?.message
                == "invalid UTF-8 sequence in string")
        // Outside strings, non-ASCII is just an unexpected byte.
        #expect(parseError(bytes: [0xC3, 0xA9])?.message == "unexpected byte 0xC3, expected a value")
        // Valid multi-byte sequences of every length.
        let valid: [UInt8] = [quote, 0x7F, 0xC2, 0x80, 0xE0, 0xA0, 0x80, 0xED, 0x9F, 0xBF, 0xF0, 0x90, 0x80, 0x80, 0xF4, 0x8F, 0xBF, 0xBF, quote]
        #expect(try JSONValue.parse(valid) == .string("\u{7F}\u{80}\u{800}\u{D7FF}\u{10000}\u{10FFFF}"))
    }

    @Test func byteOrderMarkIsIgnored() throws {
        #expect(try JSONValue.parse([0xEF, 0xBB, 0xBF, UInt8(ascii: "1")]) == 1)
    }

    @Test func numbers() throws {
        let cases: [(String, Double)] = [
            ("0", 0), ("-0", -0.0), ("1", 1), ("-1", -1), ("1.5", 1.5), ("-12.25", -12.25),
            ("1e3", 1000), ("1E3", 1000), ("1e+3", 1000), ("1e-3", 0.001), ("2.5E-3", 0.0025),
            ("0.1", 0.1), ("0.000001", 0.000001), ("123456789.123456789", 123456789.123456789),
            ("1.7976931348623157e308", 1.7976931348623157e308), ("5e-324", .leastNonzeroMagnitude), ("1e-400", 0),
            ("0e99999999999", 0), ("9007199254740992", 9_007_199_254_740_992),
            ("9007199254740993", 9_007_199_254_740_992), ("18446744073709551616", 18_446_744_073_709_551_616),
            ("12345678901234567890123", 1.2345678901234568e22), ("0.30000000000000004", 0.30000000000000004),
            ("100000000000000000000000000000.0", 1e29), ("1.00000000000000000000001", 1),
            ("3.141592653589793238462643383279", 3.141592653589793),
        ]
        for (text, expected) in cases {
            let value = try JSONValue.parse(text)
            #expect(value == .number(expected), "\(text)")
            #expect(value.double?.sign == expected.sign, "\(text)")
        }
    }

    @Test func integersRoundTripUpTo2To53() throws {
        let limit: Int64 = 1 << 53
        for value in [0, 1, -1, 42, 1_000_000, Int64(Int32.max), limit - 1, limit, -limit, 123_456_789_012_345] {
            let parsed = try JSONValue.parse(String(value))
            #expect(parsed.int64 == value)
            #expect(parsed.serialized() == String(value))
        }
        #expect(try JSONValue.parse("1.5").int64 == nil)
        #expect(try JSONValue.parse("1e3").int64 == 1000)
        #expect(try JSONValue.parse("-5").uint64 == nil)
        #expect(try JSONValue.parse("18446744073709549568").uint64 == 18_446_744_073_709_549_568)
        #expect(try JSONValue.parse("18446744073709551616").uint64 == nil)
        #expect(try JSONValue.parse("9223372036854775808").int64 == nil)
        #expect(try JSONValue.parse("-9223372036854775808").int64 == Int64.min)
        #expect(JSONValue.string("1").int64 == nil)
    }

    @Test func invalidNumbers() throws {
        let cases: [(String, String)] = [
            ("01", "invalid number: leading zeros are not allowed"),
            ("-01", "invalid number: leading zeros are not allowed"),
            ("1.", "invalid number: expected a digit after the decimal point"),
            ("1.e5", "invalid number: expected a digit after the decimal point"),
            ("-", "invalid number: expected a digit"),
            ("-a", "invalid number: expected a digit"),
            ("1e", "invalid number: expected a digit in the exponent"),
            ("1e+", "invalid number: expected a digit in the exponent"),
            (".5", "unexpected character '.', expected a value"),
            ("+1", "unexpected character '+', expected a value"),
            ("NaN", "unexpected character 'N', expected a value"),
            ("Infinity", "unexpected character 'I', expected a value"),
            ("1e400", "number out of range"),
            ("-1e400", "number out of range"),
            ("0x10", "unexpected character 'x', expected the end of input after the JSON value"),
        ]
        for (text, message) in cases {
            #expect(parseError(text)?.message == message, "\(text)")
        }
    }

    @Test func structuralErrors() throws {
        let cases: [(String, String)] = [
            ("", "unexpected end of input, expected a value"),
            ("   ", "unexpected end of input, expected a value"),
            ("[1,]", "unexpected character ']', expected a value"),
            ("[1 2]", "expected ',' or ']' after array element, found character '2'"),
            ("[1", "unexpected end of input, expected ',' or ']' after array element"),
            ("{\"a\":1,}", "unexpected character '}', expected '\"' to begin an object key"),
            ("{\"a\" 1}", "unexpected character '1', expected ':' after object key"),
            ("{\"a\"", "unexpected end of input, expected ':' after object key"),
            ("{\"a\":1 \"b\":2}", "expected ',' or '}' after object member, found character '\"'"),
            ("{\"a\":1", "unexpected end of input, expected ',' or '}' after object member"),
            ("{1:2}", "unexpected character '1', expected '\"' to begin an object key"),
            ("{", "unexpected end of input, expected an object key"),
            ("[1]]", "unexpected character ']', expected the end of input after the JSON value"),
            ("{} x", "unexpected character 'x', expected the end of input after the JSON value"),
            ("1 2", "unexpected character '2', expected the end of input after the JSON value"),
            ("tru", "invalid literal, expected 'true'"),
            ("nul", "invalid literal, expected 'null'"),
            ("falsy", "invalid literal, expected 'false'"),
            ("truex", "unexpected character 'x', expected the end of input after the JSON value"),
            ("'a'", "unexpected character ''', expected a value"),
            ("[1,\u{0C}2]", "unexpected byte 0x0C, expected a value"),
        ]
        for (text, message) in cases {
            #expect(parseError(text)?.message == message, "\(text.debugDescription)")
        }
    }

    @Test func errorPositions() throws {
        let text = "{\n  \"a\": 1,\n  \"bé\": 2 \"c\": 3\n}"
        let error = try #require(parseError(text))
        #expect(error.message == "expected ',' or '}' after object member, found character '\"'")
        #expect(error.line == 3)
        #expect(error.column == 11)  // columns count characters, not bytes
        #expect(error.offset == 23)
        #expect(error.description == "expected ',' or '}' after object member, found character '\"' at line 3 column 11")

        let first = try #require(parseError("x"))
        #expect((first.offset, first.line, first.column) == (0, 1, 1))
        let end = try #require(parseError("[\n1,\n"))
        #expect((end.offset, end.line, end.column) == (5, 3, 1))
    }

    @Test func nestingDepth() throws {
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        #expect(throws: Never.self) { _ = try JSONValue.parse(ok) }
        let tooDeep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        let error = try #require(parseError(tooDeep))
        #expect(error.message == "nesting deeper than 512 levels")
        #expect(error.offset == 512)
        let objects = String(repeating: "{\"a\":", count: 600) + "1" + String(repeating: "}", count: 600)
        #expect(parseError(objects)?.message == "nesting deeper than 512 levels")
        #expect(parseError("[[1]]", maxDepth: 1)?.message == "nesting deeper than 1 levels")
        #expect(parseError("{}", maxDepth: 0)?.message == "nesting deeper than 0 levels")
        #expect(try JSONValue.parse("[{}]", maxDepth: 2) == [[:]])
        // Very deep input fails cleanly, without deep recursion.
        let huge = String(repeating: "[{\"a\":", count: 100_000)
        #expect(parseError(huge)?.message == "nesting deeper than 512 levels")
        // The parser itself is iterative: a deeper limit works too (values this deep are
        // still destroyed recursively, so stay well below stack limits here).
        let deep = String(repeating: "[", count: 5_000) + String(repeating: "]", count: 5_000)
        #expect(throws: Never.self) { _ = try JSONValue.parse(deep, maxDepth: 5_000) }
    }

    @Test func nonContiguousAndSliceInputs() throws {
        let text = #"{"k": [1, "two", null]}"#
        let expected: JSONValue = ["k": [1, "two", .null]]
        #expect(try JSONValue.parse(Array(text.utf8)) == expected)
        #expect(try JSONValue.parse(Array(text.utf8)[...]) == expected)
        #expect(try JSONValue.parse(text.utf8.lazy.map { $0 }) == expected)
        let line = "xx" + text + "yy"
        #expect(try JSONValue.parse(line.dropFirst(2).dropLast(2)) == expected)
        #expect(try JSONValue.parse(Substring(line).utf8.dropFirst(2).dropLast(2)) == expected)
    }

    @Test func jsonLines() throws {
        let lines = (0..<1000).map { #"{"op":"check","user":"u-\#($0)","project":"p-1","n":\#($0)}"# }
        let input = lines.joined(separator: "\n")
        var count = 0
        for line in input.utf8.split(separator: UInt8(ascii: "\n")) {
            let value = try JSONValue.parse(line)
            #expect(value["n"]?.int64 == Int64(count))
            count += 1
        }
        #expect(count == 1000)
    }
}
