/**
 * Bytes to frames (PROTOCOL: the chat connection), shared by every transport: bytes ->
 * JsonSplitter -> decodeFrame on the way in, one compact frame per write on the way out.
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import { decodeFrame, type Frame } from "../domain/Frames.ts"
import { encodeFrame, JsonSplitter, MAX_FRAME_BYTES } from "../domain/Framing.ts"
import { type FrameChannel, type RawChannel, TransportError } from "./Transport.ts"

/** How a transport gives its bytes: `pull` fails with "Closed" at a clean end of stream. */
export interface ByteStream {
  readonly pull: Effect.Effect<ReadonlyArray<Uint8Array | string>, TransportError>
  readonly write: (bytes: string) => Effect.Effect<void, TransportError>
  /** Binary chunks in order (RawChannel.write): waits while the socket's buffer is full. */
  readonly writeBytes: (chunks: ReadonlyArray<Uint8Array>) => Effect.Effect<void, TransportError>
}

const textEncoder = new TextEncoder()

/**
 * Bytes handed to the splitter at a time. A read can bring many small frames at once; they
 * are split a slice at a time, as `next` needs them, so the frames waiting to be decoded
 * come from at most one slice and the rest stays as compact bytes.
 */
const SCAN_SLICE_BYTES = 8 * 1024

/**
 * What a connection has read but not handed out: frames split but not decoded yet, and
 * bytes not split yet (raw[rawIndex] from rawOffset on, then the rest of raw). `broken` is
 * set when the stream broke after the frames still queued: they are served first.
 */
class Buffered {
  queue: Array<string> = []
  head = 0
  raw: Array<Uint8Array> = []
  rawIndex = 0
  rawOffset = 0
  broken: TransportError | undefined
  /** The last byte handed to the splitter: `}` when the newline ending the last frame is still to come. */
  lastByte = -1

  constructor(readonly splitter: JsonSplitter) {}

  load(chunks: ReadonlyArray<Uint8Array | string>): void {
    this.raw = chunks.map((chunk) => typeof chunk === "string" ? textEncoder.encode(chunk) : chunk)
    this.rawIndex = 0
    this.rawOffset = 0
  }

  /** Splits buffered bytes, a slice at a time, until a frame is ready, the stream breaks or the bytes run out. */
  scan(): void {
    while (this.head >= this.queue.length && this.broken === undefined && this.rawIndex < this.raw.length) {
      const chunk = this.raw[this.rawIndex]!
      const end = Math.min(chunk.length, this.rawOffset + SCAN_SLICE_BYTES)
      const r = this.splitter.push(this.rawOffset === 0 && end === chunk.length ? chunk : chunk.subarray(this.rawOffset, end))
      if (end > this.rawOffset) this.lastByte = chunk[end - 1]!
      if (end === chunk.length) {
        this.rawIndex++
        this.rawOffset = 0
      } else {
        this.rawOffset = end
      }
      for (const f of r.frames) this.queue.push(f)
      if (r.error !== undefined) {
        this.broken = r.error._tag === "FrameTooLarge"
          ? new TransportError({ reason: "FrameTooLarge", message: `frame larger than ${r.error.limit} bytes` })
          : new TransportError({ reason: "NotJson", message: `not JSON: ${r.error.reason}` })
      }
    }
    if (this.broken !== undefined || this.rawIndex >= this.raw.length) this.load([])
  }

  /** Bytes read but not handed out as frames: split frames waiting, an unfinished frame, bytes not split yet. */
  leftover(): number {
    let n = this.splitter.pending()
    for (let i = this.head; i < this.queue.length; i++) n += this.queue[i]!.length
    for (let i = this.rawIndex; i < this.raw.length; i++) n += this.raw[i]!.length - (i === this.rawIndex ? this.rawOffset : 0)
    return n
  }

  /** The next split frame's text, if one is ready. */
  take(): string | undefined {
    if (this.head >= this.queue.length) this.scan()
    if (this.head >= this.queue.length) return undefined
    const text = this.queue[this.head++]!
    if (this.head === this.queue.length) {
      this.queue = []
      this.head = 0
    }
    return text
  }
}

/**
 * The frames of an open connection. One splitter per connection; frames are decoded one at
 * a time as `next` asks, so a session reads exactly as far as it needs.
 *
 * What one connection can hold of the peer's input: the unfinished frame in the splitter
 * (at most `maxFrameBytes`, 64 KiB by default: one byte more ends the connection with
 * FrameTooLarge), the rest of the last read, and the frames split from one slice of it.
 * The next read happens only when all of that is used up: a transport that reads only when
 * pulled (Node's socket is never in flowing mode) gives TCP backpressure.
 */
export const channelOf = (
  bytes: ByteStream,
  remote: { readonly address: string; readonly port: number },
  maxFrameBytes: number = MAX_FRAME_BYTES
): FrameChannel => {
  const buffered = new Buffered(new JsonSplitter(Math.min(maxFrameBytes, MAX_FRAME_BYTES)))

  const ended = (e: TransportError): TransportError => {
    const pending = buffered.splitter.pending()
    return e.reason === "Closed" && pending > 0
      ? new TransportError({
        reason: "ClosedMidFrame",
        message: `connection closed mid-frame (${pending} bytes of an unfinished frame)`
      })
      : e
  }

  const next: Effect.Effect<Frame, TransportError> = Effect.suspend(() => {
    const text = buffered.take()
    if (text !== undefined) {
      const frame = decodeFrame(text)
      return Result.isSuccess(frame)
        ? Effect.succeed(frame.success)
        : Effect.fail(new TransportError({ reason: "BadFrame", message: frame.failure }))
    }
    if (buffered.broken !== undefined) return Effect.fail(buffered.broken)
    return Effect.flatMap(Effect.mapError(bytes.pull, ended), (chunks) => {
      buffered.load(chunks)
      return next
    })
  })

  let taken = false
  const raw: Effect.Effect<RawChannel, TransportError> = Effect.suspend(() => {
    // The bytes not split yet may be the newline that ends the last frame, or whitespace.
    buffered.scan()
    const left = buffered.broken === undefined ? buffered.leftover() : 1
    if (taken || left > 0) {
      return Effect.fail(
        new TransportError({
          reason: "BadFrame",
          message: taken ? "the connection is a byte stream already" : "the peer sent bytes past the last frame before the stream turned binary"
        })
      )
    }
    taken = true
    return Effect.succeed(rawChannel(bytes, buffered.lastByte === 0x7d))
  })

  return {
    address: remote.address,
    port: remote.port,
    label: `${remote.address}:${remote.port}`,
    next,
    send: (frame: object) => bytes.write(encodeFrame(frame)),
    raw
  }
}

/**
 * The connection as bytes (FrameChannel.raw). `newlineDue`: the last frame's `}` was read
 * without the newline after it, which comes first and is dropped (any other byte is a
 * protocol error).
 */
const rawChannel = (bytes: ByteStream, newlineDue: boolean): RawChannel => {
  const chunks: Array<Uint8Array> = []
  let have = 0
  let skipNewline = newlineDue

  const take = (n: number): Uint8Array => {
    const first = chunks[0]!
    if (first.length >= n) {
      const out = first.subarray(0, n)
      if (first.length === n) chunks.shift()
      else chunks[0] = first.subarray(n)
      have -= n
      return out
    }
    const out = Buffer.allocUnsafe(n) // every byte is set below
    let at = 0
    while (at < n) {
      const c = chunks[0]!
      const k = Math.min(c.length, n - at)
      out.set(k === c.length ? c : c.subarray(0, k), at)
      at += k
      if (k === c.length) chunks.shift()
      else chunks[0] = c.subarray(k)
    }
    have -= n
    return out
  }

  const load = (got: ReadonlyArray<Uint8Array | string>): Effect.Effect<void, TransportError> => {
    for (const g of got) {
      let c = typeof g === "string" ? textEncoder.encode(g) : g
      if (skipNewline && c.length > 0) {
        if (c[0] !== 0x0a) {
          return Effect.fail(new TransportError({ reason: "BadFrame", message: "the last frame before the binary stream did not end with a newline" }))
        }
        skipNewline = false
        c = c.subarray(1)
      }
      if (c.length > 0) {
        chunks.push(c)
        have += c.length
      }
    }
    return Effect.void
  }

  const read = (n: number): Effect.Effect<Uint8Array, TransportError> =>
    Effect.suspend(() => {
      if (have >= n) return Effect.succeed(take(n))
      return bytes.pull.pipe(
        Effect.mapError((e) =>
          e.reason === "Closed" && have > 0
            ? new TransportError({ reason: "ClosedMidFrame", message: `connection closed mid-message (${have} of ${n} bytes)` })
            : e
        ),
        Effect.flatMap(load),
        Effect.andThen(read(n))
      )
    })

  return {
    read,
    readBuffered: (n) => (have >= n ? take(n) : undefined),
    write: (out) => out.length === 0 ? Effect.void : bytes.writeBytes(out)
  }
}

/** `::ffff:10.0.0.5` (a dual-stack socket's view of an IPv4 peer) is `10.0.0.5`. */
export const normalizeAddress = (address: string | undefined): string =>
  address === undefined ? "unknown" : address.startsWith("::ffff:") ? address.slice(7) : address
