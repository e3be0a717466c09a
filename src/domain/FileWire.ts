/**
 * The file session's wire (protocol.md 9): after a Noise XX handshake with proto and
 * prologue `p2pchat-file/1`, both directions are binary messages: a 2-byte big-endian
 * length, then one Noise transport message. The plaintext of each starts with its kind:
 *
 *   0  a JSON control object (UTF-8)
 *   1  data: an 8-byte big-endian offset, then the bytes of the file from there
 *   2  sums: a 4-byte item index, a 4-byte first chunk, then one 4-byte CRC-32 per chunk
 *
 * A file is cut in chunks of CHUNK_BYTES (chunk i: bytes [i*C, (i+1)*C)); a data message
 * carries at most one chunk, never across the grid. Also here: the offer a chat `msg`
 * carries, and the manifest of a folder and its hash. Pure code.
 */
import { createHash } from "node:crypto"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { FileOffer } from "./Transfer.ts"

/** message 1's `proto` and the prologue of a file session. */
export const FILE_PROTO = "p2pchat-file/1"

/** Longest Noise message, and so the longest binary message after its 2-byte length. */
export const MAX_MESSAGE_BYTES = 65_535
/** Longest plaintext of one message (the Noise tag is 16 bytes). */
export const MAX_PLAINTEXT_BYTES = MAX_MESSAGE_BYTES - 16
/** Kind byte and offset before the bytes of a data message. */
export const DATA_HEADER_BYTES = 9
/** Bytes of one chunk: as many as one data message holds (65,510). */
export const CHUNK_BYTES = MAX_PLAINTEXT_BYTES - DATA_HEADER_BYTES
/** Kind, item and first chunk before the CRCs of a sums message. */
export const SUMS_HEADER_BYTES = 9
/** CRCs in one sums message (16,377). */
export const SUMS_PER_MESSAGE = Math.floor((MAX_PLAINTEXT_BYTES - SUMS_HEADER_BYTES) / 4)

export const KIND_CONTROL = 0
export const KIND_DATA = 1
export const KIND_SUMS = 2

/** How many chunks a file of `size` bytes has (0 for an empty file). */
export const chunkCount = (size: number): number => Math.ceil(size / CHUNK_BYTES)

/** The length of chunk `i` of a file of `size` bytes. */
export const chunkLength = (size: number, i: number): number => Math.min(CHUNK_BYTES, size - i * CHUNK_BYTES)

// ---------------------------------------------------------------------------------------------
// The offer

const Sha256Hex = Schema.String.check(Schema.makeFilter((s: string) => /^[0-9a-f]{64}$/.test(s) || "expected a lowercase hex SHA-256"))
const OfferId = Schema.String.check(
  Schema.makeFilter((s: string) => /^[\x21-\x7e]{1,128}$/.test(s) || "expected an offer id of 1-128 printable ASCII characters")
)
const Count = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }))

/** The `file` field of a secure `msg` (protocol.md 9.1). */
export const FileOfferSchema = Schema.Struct({
  id: OfferId,
  name: Schema.String.check(Schema.makeFilter((s: string) => s.length <= 4096 || "expected a name of at most 4096 characters")),
  size: Count,
  count: Count.check(Schema.makeFilter((n: number) => n >= 1 || "expected at least 1 file")),
  sha256: Sha256Hex
})

// compile-time: the Schema and the contract's FileOffer are the same shape
const _sameOffer: (o: typeof FileOfferSchema.Type) => FileOffer = (o) => o
void _sameOffer

// ---------------------------------------------------------------------------------------------
// The manifest

/** One file of an offer, as the manifest lists it: `path` relative, with `/`. */
export const ManifestItem = Schema.Struct({ path: Schema.String, size: Count, sha256: Sha256Hex })
export type ManifestItem = typeof ManifestItem.Type

/**
 * The manifest's canonical text: a JSON array of `{"path","size","sha256"}` (those keys in
 * that order, no spaces) in the manifest's order (paths sorted by their UTF-8 bytes).
 */
export const manifestJson = (items: ReadonlyArray<ManifestItem>): string =>
  JSON.stringify(items.map((i) => ({ path: i.path, size: i.size, sha256: i.sha256 })))

/** A folder's `sha256`: of its manifest's canonical text. */
export const manifestHash = (items: ReadonlyArray<ManifestItem>): string =>
  createHash("sha256").update(manifestJson(items), "utf8").digest("hex")

/** Sorts paths as the manifest orders them: by their UTF-8 bytes. */
export const byPathBytes = (a: string, b: string): number => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"))

// ---------------------------------------------------------------------------------------------
// Controls

const Index = Count
/** What a puller asks (protocol.md 9.3). */
export const Request = Schema.Union([
  Schema.Struct({ type: Schema.Literal("manifest"), offer: OfferId, from: Index }),
  Schema.Struct({ type: Schema.Literal("sums"), offer: OfferId, item: Index, from: Index }),
  Schema.Struct({
    type: Schema.Literal("get"),
    offer: OfferId,
    item: Index,
    offset: Index,
    length: Schema.optionalKey(Index)
  }),
  Schema.Struct({ type: Schema.Literal("done"), offer: OfferId }),
  Schema.Struct({ type: Schema.Literal("decline"), offer: OfferId })
])
export type Request = typeof Request.Type

export const ErrorCode = Schema.Literals(["unknown-offer", "not-yours", "changed", "gone", "io"])
export type ErrorCode = typeof ErrorCode.Type

/** What a server answers in controls. */
export const Reply = Schema.Union([
  Schema.Struct({ type: Schema.Literal("ready") }),
  Schema.Struct({ type: Schema.Literal("manifest"), items: Schema.Array(ManifestItem), next: Schema.NullOr(Index) }),
  Schema.Struct({ type: Schema.Literal("ok") }),
  Schema.Struct({ type: Schema.Literal("error"), code: ErrorCode, message: Schema.String })
])
export type Reply = typeof Reply.Type

// ---------------------------------------------------------------------------------------------
// Plaintexts

const utf8 = new TextEncoder()
const utf8Strict = new TextDecoder("utf-8", { fatal: true })

export const encodeControl = (control: Request | Reply): Uint8Array => {
  const json = utf8.encode(JSON.stringify(control))
  const out = new Uint8Array(1 + json.length)
  out[0] = KIND_CONTROL
  out.set(json, 1)
  return out
}

/** Writes a data message's header into the first DATA_HEADER_BYTES of `buf` (the bytes follow). */
export const writeDataHeader = (buf: Uint8Array, offset: number): void => {
  const view = new DataView(buf.buffer, buf.byteOffset, DATA_HEADER_BYTES)
  view.setUint8(0, KIND_DATA)
  view.setBigUint64(1, BigInt(offset))
}

export const encodeData = (offset: number, bytes: Uint8Array): Uint8Array => {
  const out = new Uint8Array(DATA_HEADER_BYTES + bytes.length)
  writeDataHeader(out, offset)
  out.set(bytes, DATA_HEADER_BYTES)
  return out
}

/** A sums message: `crcs` holds 4 bytes per chunk from `first` on. */
export const encodeSums = (item: number, first: number, crcs: Uint8Array): Uint8Array => {
  const out = new Uint8Array(SUMS_HEADER_BYTES + crcs.length)
  const view = new DataView(out.buffer)
  view.setUint8(0, KIND_SUMS)
  view.setUint32(1, item)
  view.setUint32(5, first)
  out.set(crcs, SUMS_HEADER_BYTES)
  return out
}

export type Message =
  | { readonly _tag: "Control"; readonly json: unknown }
  | { readonly _tag: "Data"; readonly offset: number; readonly bytes: Uint8Array }
  | { readonly _tag: "Sums"; readonly item: number; readonly first: number; readonly crcs: Uint8Array }

/** Splits a plaintext by its kind; controls are parsed JSON, checked by the caller's Schema. */
export const decodeMessage = (plain: Uint8Array): Result.Result<Message, string> => {
  if (plain.length === 0) return Result.fail("an empty message")
  const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength)
  switch (plain[0]) {
    case KIND_CONTROL: {
      try {
        return Result.succeed({ _tag: "Control", json: JSON.parse(utf8Strict.decode(plain.subarray(1))) })
      } catch {
        return Result.fail("a control message that is not UTF-8 JSON")
      }
    }
    case KIND_DATA: {
      if (plain.length < DATA_HEADER_BYTES) return Result.fail("a data message shorter than its header")
      const offset = view.getBigUint64(1)
      if (offset > BigInt(Number.MAX_SAFE_INTEGER)) return Result.fail("a data message with an offset out of range")
      return Result.succeed({ _tag: "Data", offset: Number(offset), bytes: plain.subarray(DATA_HEADER_BYTES) })
    }
    case KIND_SUMS: {
      if (plain.length < SUMS_HEADER_BYTES || (plain.length - SUMS_HEADER_BYTES) % 4 !== 0) {
        return Result.fail("a sums message that is not a header and whole CRCs")
      }
      return Result.succeed({ _tag: "Sums", item: view.getUint32(1), first: view.getUint32(5), crcs: plain.subarray(SUMS_HEADER_BYTES) })
    }
    default:
      return Result.fail(`a message of unknown kind ${plain[0]}`)
  }
}

const decodeRequestResult = Schema.decodeUnknownResult(Request)
const decodeReplyResult = Schema.decodeUnknownResult(Reply)
const firstLine = (s: string) => s.split("\n")[0]!.slice(0, 200)

export const decodeRequest = (json: unknown): Result.Result<Request, string> => {
  const r = decodeRequestResult(json)
  return Result.isSuccess(r) ? Result.succeed(r.success) : Result.fail(`a bad request: ${firstLine(r.failure.message)}`)
}

export const decodeReply = (json: unknown): Result.Result<Reply, string> => {
  const r = decodeReplyResult(json)
  return Result.isSuccess(r) ? Result.succeed(r.success) : Result.fail(`a bad reply: ${firstLine(r.failure.message)}`)
}

/**
 * Manifest items from `from` on that fit one reply with room for its other fields: the
 * index after the last one given (null at the end) and the items.
 */
export const manifestPage = (items: ReadonlyArray<ManifestItem>, from: number): { items: Array<ManifestItem>; next: number | null } => {
  const room = MAX_PLAINTEXT_BYTES - 1 - 64
  const page: Array<ManifestItem> = []
  let used = 0
  let i = from
  for (; i < items.length; i++) {
    const bytes = Buffer.byteLength(JSON.stringify(items[i]), "utf8") + 1
    if (used + bytes > room && page.length > 0) break
    page.push(items[i]!)
    used += bytes
  }
  return { items: page, next: i < items.length ? i : null }
}
