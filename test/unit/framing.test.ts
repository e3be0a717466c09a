import { describe, it, expect } from "vitest"
import fc from "fast-check"
import { JsonSplitter, MAX_FRAME_BYTES, MAX_DEPTH, encodeFrame, type SplitResult } from "../../src/domain/Framing.ts"

const utf8 = new TextEncoder()
const bytes = (s: string): Uint8Array => utf8.encode(s)

/** Push every chunk into a fresh splitter; collect all frames and the first error. */
const run = (chunks: ReadonlyArray<Uint8Array | string>, max?: number) => {
  const splitter = new JsonSplitter(max)
  const frames: string[] = []
  let error: SplitResult["error"]
  for (const c of chunks) {
    const r = splitter.push(typeof c === "string" ? bytes(c) : c)
    frames.push(...r.frames)
    if (r.error !== undefined) {
      error = r.error
      break
    }
  }
  return { frames, error, splitter }
}

/** Cut `data` at the given positions (any order, duplicates allowed). */
const cutAt = (data: Uint8Array, cuts: ReadonlyArray<number>): Uint8Array[] => {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let prev = 0
  for (const p of [...points, data.length]) {
    out.push(data.subarray(prev, p))
    prev = p
  }
  return out
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.length
  }
  return out
}

/** A `{"p":"xxx…"}` object of exactly `size` bytes. */
const objectOfSize = (size: number): string => `{"p":"${"x".repeat(size - 8)}"}`

describe("JsonSplitter: splitting", () => {
  it("splits pretty-printed objects written back to back with no delimiter", () => {
    const a = JSON.stringify({ key: 7, nested: { list: [1, 2, { x: "y" }] } }, null, 2)
    const b = JSON.stringify({ unencrypted_message: "aGk=" }, null, 4)
    const { frames, error } = run([a + b])
    expect(error).toBeUndefined()
    expect(frames).toEqual([a, b])
  })

  it("reassembles one object pushed one byte at a time", () => {
    const text = JSON.stringify({ a: [1, { b: "c" }], d: "e f", g: null }, null, 2)
    const data = bytes(text)
    const splitter = new JsonSplitter()
    const frames: string[] = []
    for (let i = 0; i < data.length; i++) {
      const r = splitter.push(data.subarray(i, i + 1))
      expect(r.error).toBeUndefined()
      frames.push(...r.frames)
      if (i < data.length - 1) expect(splitter.pending()).toBe(i + 1)
    }
    expect(frames).toEqual([text])
    expect(splitter.pending()).toBe(0)
  })

  it("copies a partial frame, so the caller may reuse the chunk's memory after push", () => {
    const splitter = new JsonSplitter()
    const chunk = bytes('{"a":"bc')
    expect(splitter.push(chunk).frames).toEqual([])
    chunk.fill(0x41)
    expect(splitter.push(bytes('d"}')).frames).toEqual(['{"a":"bcd"}'])
  })

  it("returns many objects that arrive in one read, in order", () => {
    const objs = Array.from({ length: 1000 }, (_, i) => ({ id: `m${i}`, text: "x".repeat(i % 50) }))
    const { frames, error } = run([objs.map(encodeFrame).join("")])
    expect(error).toBeUndefined()
    expect(frames.map((f) => JSON.parse(f))).toEqual(objs)
  })

  it("skips space, tab, CR and LF between objects and does not buffer them", () => {
    const { frames, error, splitter } = run([" \t\r\n{}\r\n\n  {\"a\":1}\t \n \r"])
    expect(error).toBeUndefined()
    expect(frames).toEqual(["{}", '{"a":1}'])
    expect(splitter.pending()).toBe(0)
  })

  it("ignores braces, brackets, escaped quotes and backslashes inside strings", () => {
    const obj = {
      a: "}{][",
      b: 'say "}" please',
      c: "ends with backslash \\",
      d: "\\",
      "k}{": "\\\"}",
      e: ["[", "]", "{", "}"],
    }
    const text = JSON.stringify(obj)
    const { frames, error } = run([text + JSON.stringify(obj, null, 2)])
    expect(error).toBeUndefined()
    expect(frames.map((f) => JSON.parse(f))).toEqual([obj, obj])
  })

  it("keeps string/escape state across pushes (split right after a backslash or inside a string)", () => {
    const text = '{"a":"x\\"}y\\\\","b":"{"}'
    const data = bytes(text)
    for (let i = 0; i <= data.length; i++) {
      for (let j = i; j <= data.length; j++) {
        const { frames, error } = run([data.subarray(0, i), data.subarray(i, j), data.subarray(j)])
        expect(error).toBeUndefined()
        expect(frames).toEqual([text])
      }
    }
  })

  it("decodes multi-byte UTF-8 (emoji, CJK, accents) split between reads at every byte position", () => {
    const text = JSON.stringify({ t: "héllo 😀 汉字 👩‍👩‍👧 ok", "键": "値" })
    const data = bytes(text + "\n" + text)
    for (let i = 0; i <= data.length; i++) {
      const { frames, error } = run([data.subarray(0, i), data.subarray(i)])
      expect(error).toBeUndefined()
      expect(frames).toEqual([text, text])
    }
  })

  it("ignores brackets inside strings when counting depth", () => {
    const text = JSON.stringify({ a: "[".repeat(500) + "{".repeat(500) })
    expect(run([text]).frames).toEqual([text])
  })

  it("accepts nesting of exactly 64 levels (objects and arrays)", () => {
    const arrays = `{"a":${"[".repeat(MAX_DEPTH - 1)}${"]".repeat(MAX_DEPTH - 1)}}`
    const objects = `${'{"a":'.repeat(MAX_DEPTH - 1)}{}${"}".repeat(MAX_DEPTH - 1)}`
    const { frames, error } = run([arrays, objects])
    expect(error).toBeUndefined()
    expect(frames).toEqual([arrays, objects])
  })

  it("encodeFrame writes compact JSON followed by a newline, which the splitter reads back", () => {
    const obj = { ack: "m1", n: [1, 2] }
    expect(encodeFrame(obj)).toBe('{"ack":"m1","n":[1,2]}\n')
    expect(run([encodeFrame(obj)]).frames).toEqual(['{"ack":"m1","n":[1,2]}'])
  })
})

describe("JsonSplitter: size limit", () => {
  it("accepts an object of exactly 64 KiB", () => {
    const text = objectOfSize(MAX_FRAME_BYTES)
    expect(bytes(text).length).toBe(64 * 1024)
    const { frames, error } = run([text + "\n"])
    expect(error).toBeUndefined()
    expect(frames).toEqual([text])
  })

  it("accepts an object of exactly 64 KiB split over many reads", () => {
    const text = objectOfSize(MAX_FRAME_BYTES)
    const data = bytes(text)
    const chunks = Array.from({ length: 70 }, (_, i) => data.subarray(i * 1000, (i + 1) * 1000))
    const { frames, error } = run(chunks)
    expect(error).toBeUndefined()
    expect(frames).toEqual([text])
  })

  it("rejects an object of 64 KiB + 1 with FrameTooLarge", () => {
    const { frames, error } = run([objectOfSize(MAX_FRAME_BYTES + 1)])
    expect(frames).toEqual([])
    expect(error).toEqual({ _tag: "FrameTooLarge", limit: MAX_FRAME_BYTES })
  })

  it("rejects an incomplete object as soon as it exceeds 64 KiB, across reads, without waiting for its end", () => {
    const splitter = new JsonSplitter()
    expect(splitter.push(bytes('{"p":"' + "x".repeat(40_000))).error).toBeUndefined()
    expect(splitter.pending()).toBe(40_006)
    const r = splitter.push(bytes("x".repeat(30_000)))
    expect(r.error).toEqual({ _tag: "FrameTooLarge", limit: MAX_FRAME_BYTES })
    expect(splitter.pending()).toBe(0)
  })

  it("returns the frames completed before an oversized one in the same read", () => {
    const { frames, error } = run(['{"a":1}\n' + objectOfSize(MAX_FRAME_BYTES + 1)])
    expect(frames).toEqual(['{"a":1}'])
    expect(error?._tag).toBe("FrameTooLarge")
  })

  it("honours a custom maxBytes: accepted iff the object's UTF-8 size is at most the limit", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: "grapheme" }), fc.jsonValue({ maxDepth: 3 })), fc.integer({ min: 2, max: 300 }), (obj, max) => {
        const text = JSON.stringify(obj)
        const { frames, error } = run([text + "\n"], max)
        if (bytes(text).length <= max) {
          expect(error).toBeUndefined()
          expect(frames).toEqual([text])
        } else {
          expect(error).toEqual({ _tag: "FrameTooLarge", limit: max })
        }
      }),
      { numRuns: 200 },
    )
  })
})

describe("JsonSplitter: not JSON", () => {
  it("rejects a non-'{' byte at top level with NotJson naming the byte", () => {
    const { frames, error } = run(["ABC"])
    expect(frames).toEqual([])
    expect(error).toEqual({ _tag: "NotJson", reason: "expected '{' at top level, got 0x41" })
  })

  it("rejects top-level arrays, strings and numbers (only objects are frames)", () => {
    for (const s of ["[1]", '"hi"', "42", "null"]) expect(run([s]).error?._tag).toBe("NotJson")
  })

  it("rejects garbage after a valid object but still returns that object", () => {
    const { frames, error } = run(['{"a":1}\nGET / HTTP/1.1'])
    expect(frames).toEqual(['{"a":1}'])
    expect(error).toEqual({ _tag: "NotJson", reason: "expected '{' at top level, got 0x47" })
  })

  it("rejects a lone '}' at top level", () => {
    expect(run(["}"]).error).toEqual({ _tag: "NotJson", reason: "expected '{' at top level, got 0x7d" })
    expect(run(["{}}"]).error?._tag).toBe("NotJson")
  })

  it("rejects brackets that do not match their opener", () => {
    expect(run(['{"a":[1}']).error).toEqual({ _tag: "NotJson", reason: "mismatched '}', expected ']'" })
    expect(run(['{"a":1]']).error?._tag).toBe("NotJson")
  })

  it("rejects invalid UTF-8 inside a string", () => {
    const bad = concat([bytes('{"a":"'), new Uint8Array([0xff, 0xfe]), bytes('"}')])
    expect(run([bad]).error).toEqual({ _tag: "NotJson", reason: "frame is not valid UTF-8" })
    const truncated = concat([bytes('{"a":"'), new Uint8Array([0xe6, 0xb1]), bytes('"}')])
    expect(run([truncated]).error?._tag).toBe("NotJson")
    const surrogate = concat([bytes('{"a":"'), new Uint8Array([0xed, 0xa0, 0x80]), bytes('"}')])
    expect(run([surrogate]).error?._tag).toBe("NotJson")
  })

  it("rejects nesting of 65 levels as nested too deeply", () => {
    const arrays = `{"a":${"[".repeat(MAX_DEPTH)}${"]".repeat(MAX_DEPTH)}}`
    const objects = `${'{"a":'.repeat(MAX_DEPTH)}{}${"}".repeat(MAX_DEPTH)}`
    for (const text of [arrays, objects]) {
      const { frames, error } = run([text])
      expect(frames).toEqual([])
      expect(error?._tag).toBe("NotJson")
      expect(error?._tag === "NotJson" && error.reason).toMatch(/nested too deeply/)
    }
  })

  it("stays dead after an error: later pushes return the same error and no frames", () => {
    const splitter = new JsonSplitter()
    const first = splitter.push(bytes("x"))
    expect(first.error?._tag).toBe("NotJson")
    const again = splitter.push(bytes('{"a":1}\n'))
    expect(again).toEqual({ frames: [], error: first.error })
  })
})

describe("JsonSplitter: properties", () => {
  const gap = fc.array(fc.constantFrom(" ", "\t", "\r", "\n"), { maxLength: 4 }).map((ws) => ws.join(""))
  const item = fc.record({
    obj: fc.dictionary(fc.string({ unit: "grapheme" }), fc.jsonValue({ maxDepth: 5, stringUnit: "grapheme" })),
    pretty: fc.boolean(),
    gap,
  })

  it("yields exactly the written objects, in order, for any cut of any stream of compact and pretty objects", () => {
    fc.assert(
      fc.property(fc.array(item, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 40 }), (items, cuts) => {
        const texts = items.map(({ obj, pretty }) => (pretty ? JSON.stringify(obj, null, 2) : JSON.stringify(obj)))
        const stream = items.map(({ pretty, gap }, i) => gap + texts[i] + (pretty ? "" : "\n")).join("")
        const { frames, error, splitter } = run(cutAt(bytes(stream), cuts))
        expect(error).toBeUndefined()
        expect(frames).toEqual(texts)
        expect(frames.map((f) => JSON.parse(f))).toEqual(items.map(({ obj }) => JSON.parse(JSON.stringify(obj))))
        expect(splitter.pending()).toBe(0)
      }),
      { numRuns: 200 },
    )
  })

  it("reports as pending exactly the bytes of an unfinished last object", () => {
    fc.assert(
      fc.property(fc.array(item, { minLength: 1, maxLength: 5 }), fc.nat(), (items, cut) => {
        const texts = items.map(({ obj }) => JSON.stringify(obj))
        const last = bytes(texts[texts.length - 1]!)
        const keep = 1 + (cut % (last.length - 1)) // at least '{', never the closing '}'
        const head = bytes(texts.slice(0, -1).map((t) => t + "\n").join(""))
        const { frames, error, splitter } = run([concat([head, last.subarray(0, keep)])])
        expect(error).toBeUndefined()
        expect(frames).toEqual(texts.slice(0, -1))
        expect(splitter.pending()).toBe(keep)
      }),
      { numRuns: 200 },
    )
  })

  it("never throws on arbitrary bytes: every push returns frames and/or an error", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const splitter = new JsonSplitter(256)
        for (const c of chunks) {
          const r = splitter.push(c)
          for (const f of r.frames) expect(f.startsWith("{") && f.endsWith("}")).toBe(true)
        }
      }),
      { numRuns: 200 },
    )
  })
})
