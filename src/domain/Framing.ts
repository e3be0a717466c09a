/**
 * Framing (PROTOCOL.md §2): split a TCP byte stream into the texts of top-level JSON objects
 * by matching braces/brackets outside strings. Pure code, no I/O. The splitter does not
 * JSON.parse: callers decode each frame with Schema. It scans every byte exactly once,
 * keeping its state across pushes, and copies bytes only when a frame spans pushes.
 */

/** Largest accepted frame, counted in bytes from its opening `{` to its closing `}`. */
export const MAX_FRAME_BYTES = 64 * 1024
/** Deepest accepted nesting of objects/arrays (the top-level object is level 1). */
export const MAX_DEPTH = 64

export type FramingError =
  | { readonly _tag: "FrameTooLarge"; readonly limit: number }
  | { readonly _tag: "NotJson"; readonly reason: string }

export interface SplitResult {
  /** Complete frames, in stream order (each the exact UTF-8 text from `{` to `}`). */
  readonly frames: string[]
  /** Set once the stream is broken; the splitter then stays dead. */
  readonly error?: FramingError
}

/** p2pchat writes each object compact, followed by a newline. */
export const encodeFrame = (obj: unknown): string => JSON.stringify(obj) + "\n"

const TAB = 0x09, LF = 0x0a, CR = 0x0d, SP = 0x20, QUOTE = 0x22, BSLASH = 0x5c
const LBRACK = 0x5b, RBRACK = 0x5d, LBRACE = 0x7b, RBRACE = 0x7d
const hex = (b: number): string => "0x" + b.toString(16).padStart(2, "0")
const notJson = (reason: string): FramingError => ({ _tag: "NotJson", reason })

export class JsonSplitter {
  private readonly decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
  /** Expected closing byte per open level; index = depth. */
  private readonly closers = new Uint8Array(MAX_DEPTH + 1)
  private depth = 0
  private inString = false
  private escaped = false
  /** Copied bytes of the frame in progress from earlier pushes (reused, grows up to maxBytes). */
  private buf = new Uint8Array(0)
  private partLen = 0
  private dead: FramingError | undefined = undefined

  constructor(readonly maxBytes: number = MAX_FRAME_BYTES) {}

  /** Bytes buffered for a frame that is not complete yet. */
  pending(): number {
    return this.partLen
  }

  push(chunk: Uint8Array): SplitResult {
    const frames: string[] = []
    if (this.dead !== undefined) return { frames, error: this.dead }
    const closers = this.closers
    let depth = this.depth, inString = this.inString, escaped = this.escaped
    // `start`: index in `chunk` where the current frame's bytes begin; `limit`: first index
    // whose byte would make the frame larger than maxBytes.
    let start = 0
    let limit = this.maxBytes - this.partLen
    const n = chunk.length
    // Cached indexes of the next quote and backslash in `chunk` (n if none), so that a
    // string full of escapes is scanned once, not once per escape.
    let nextQuote = -1
    let nextBackslash = -1
    for (let i = 0; i < n; i++) {
      const b = chunk[i]!
      if (depth === 0) {
        if (b === SP || b === LF || b === CR || b === TAB) continue
        if (b !== LBRACE) return this.fail(frames, notJson(`expected '{' at top level, got ${hex(b)}`))
        depth = 1
        closers[1] = RBRACE
        start = i
        limit = i + this.maxBytes
        continue
      }
      if (i >= limit) return this.fail(frames, { _tag: "FrameTooLarge", limit: this.maxBytes })
      if (inString) {
        if (escaped) escaped = false
        else if (b === BSLASH) escaped = true
        else if (b === QUOTE) inString = false
        else {
          // Fast path: jump (natively) to just before the next quote or backslash.
          if (nextQuote <= i) {
            nextQuote = chunk.indexOf(QUOTE, i + 1)
            if (nextQuote < 0) nextQuote = n
          }
          if (nextBackslash <= i) {
            nextBackslash = chunk.indexOf(BSLASH, i + 1)
            if (nextBackslash < 0) nextBackslash = n
          }
          i = (nextQuote < nextBackslash ? nextQuote : nextBackslash) - 1
          if (i >= limit) return this.fail(frames, { _tag: "FrameTooLarge", limit: this.maxBytes })
        }
        continue
      }
      if (b === QUOTE) {
        inString = true
      } else if (b === LBRACE || b === LBRACK) {
        if (++depth > MAX_DEPTH) return this.fail(frames, notJson(`nested too deeply (more than ${MAX_DEPTH} levels)`))
        closers[depth] = b + 2 // '{'+2 = '}', '['+2 = ']'
      } else if (b === RBRACE || b === RBRACK) {
        if (b !== closers[depth]) {
          return this.fail(frames, notJson(`mismatched '${String.fromCharCode(b)}', expected '${String.fromCharCode(closers[depth]!)}'`))
        }
        if (--depth === 0) {
          const text = this.decode(chunk.subarray(start, i + 1))
          if (text === undefined) return this.fail(frames, notJson("frame is not valid UTF-8"))
          frames.push(text)
        }
      }
    }
    if (depth > 0) {
      // Frame continues in a later push: keep a copy of its bytes (the caller may reuse `chunk`).
      this.append(chunk.subarray(start))
    }
    this.depth = depth
    this.inString = inString
    this.escaped = escaped
    return { frames }
  }

  private append(bytes: Uint8Array): void {
    const need = this.partLen + bytes.length
    if (need > this.buf.length) {
      const grown = new Uint8Array(Math.max(need, Math.min(2 * this.buf.length, this.maxBytes), 1024))
      grown.set(this.buf.subarray(0, this.partLen))
      this.buf = grown
    }
    this.buf.set(bytes, this.partLen)
    this.partLen = need
  }

  /** Decode the finished frame (buffered bytes + `last`) and empty the buffer. */
  private decode(last: Uint8Array): string | undefined {
    let bytes = last
    if (this.partLen > 0) {
      this.append(last)
      bytes = this.buf.subarray(0, this.partLen)
      this.partLen = 0
    }
    try {
      return this.decoder.decode(bytes)
    } catch {
      return undefined
    }
  }

  private fail(frames: string[], error: FramingError): SplitResult {
    this.dead = error
    this.buf = new Uint8Array(0)
    this.partLen = 0
    return { frames, error }
  }
}
