import NIOCore

/// Splits the byte stream into lines (without the newline; a trailing CR is dropped) and refuses
/// a line longer than `maximumLength()` bytes before buffering more of it. The limit is read
/// per line, so a configuration reload reaches connections that are already open.
struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    struct LineTooLong: Error {}

    let maximumLength: () -> Int
    private var scanned = 0

    init(maximumLength: @escaping () -> Int) { self.maximumLength = maximumLength }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        let maximumLength = maximumLength()
        guard let newline = view.dropFirst(scanned).firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = view.count
            if scanned > maximumLength { throw LineTooLong() }
            return .needMoreData
        }
        scanned = 0
        var length = newline - view.startIndex
        if length > maximumLength { throw LineTooLong() }
        if length > 0, view[newline - 1] == UInt8(ascii: "\r") { length -= 1 }
        let line = buffer.getSlice(at: buffer.readerIndex, length: length)!
        buffer.moveReaderIndex(forwardBy: newline - view.startIndex + 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        let state = try decode(context: context, buffer: &buffer)
        if state == .needMoreData, buffer.readableBytes > 0 {
            // A last line without its newline still counts: `printf '{...}' | socat` sends one.
            let line = buffer.readSlice(length: buffer.readableBytes)!
            scanned = 0
            context.fireChannelRead(wrapInboundOut(line))
        }
        return .needMoreData
    }
}
