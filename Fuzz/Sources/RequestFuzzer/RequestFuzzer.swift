import LockProtocol

/// libFuzzer entry point: one request line. The decoder must answer every input with a request
/// or a `LockError` (never crash, hang or leak), and whatever JSON it accepts must survive a
/// round trip through lockd's own serializer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    _ = try? Request.decode(bytes)
    if let value = try? JSONValue.parse(bytes) {
        let again = try? JSONValue.parse(Array(value.serialized.utf8))
        precondition(
            again.map { same($0, value) } == true,
            "serializer round trip changed \(value) into \(String(describing: again))")
    }
    return 0
}

/// Whether two values are the same JSON. Members are compared sorted, since Foundation's decoder
/// keeps no order. JSON has one number type, and that decoder reads an integral number as `.int`
/// even in exponent form (`-4.444444444414444e+17`), so an int and a double are compared by
/// their double value; two ints must be equal exactly.
private func same(_ lhs: JSONValue, _ rhs: JSONValue) -> Bool {
    switch (lhs, rhs) {
    case (.int(let integer), .double(let double)), (.double(let double), .int(let integer)):
        return Double(integer) == double
    case (.array(let left), .array(let right)):
        return left.count == right.count && zip(left, right).allSatisfy(same)
    case (.object(let left), .object(let right)):
        let (sortedLeft, sortedRight) = (left.sorted { $0.key < $1.key }, right.sorted { $0.key < $1.key })
        return sortedLeft.count == sortedRight.count
            && zip(sortedLeft, sortedRight).allSatisfy { $0.key == $1.key && same($0.value, $1.value) }
    default:
        return lhs == rhs
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ body: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's entry point as `<module>_main`; hand it to libFuzzer's driver.
@_cdecl("RequestFuzzer_main")
public func fuzzerMain(
    _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> CInt {
    var count = argc
    var arguments = argv
    return runDriver(&count, &arguments) { data, size in fuzz(data, size) }
}
